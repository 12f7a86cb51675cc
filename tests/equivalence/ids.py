"""Which CRM id stands for which logical key, per source (reports speak CRM ids)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IdMap:
    #: (kind, CRM id as text) -> logical key; kind is "deal", "company" or "user".
    to_key: dict[tuple[str, str], str] = field(default_factory=dict)
    to_crm: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, kind: str, crm_id: object, key: str) -> None:
        self.to_key[kind, str(crm_id)] = key
        self.to_crm[kind, key] = str(crm_id)

    def crm(self, kind: str, key: str) -> str:
        return self.to_crm[kind, key]

    def key(self, kind: str, crm_id: object) -> str:
        """The logical key of a CRM id (an unknown id is shown as ``?<id>``, never dropped)."""
        if crm_id is None:
            return "-"
        return self.to_key.get((kind, str(crm_id)), f"?{crm_id}")
