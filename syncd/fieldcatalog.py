"""One entity's field definitions as a CRM describes them, by key and by name.

Values in ``record.fields`` are keyed by the field's *name* (a tenant's mapping writes
``lead_source: "Lead source"``), never by the CRM's own key (Pipedrive's 40-char hash,
amoCRM's numeric id, Bitrix24's ``UF_CRM_*`` code). A plugin subclasses ``FieldCatalog``
with ``read`` (its definitions answer -> ``FieldInfo``s) and its own ``values``; keeping
both indexes, the first-name-wins rule and the ``FieldDef`` records is done here once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from syncd.records import FieldDef, FieldEntity

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FieldInfo:
    """One field: the CRM's ``key``, the ``name`` people see, its ``type`` in the CRM's own
    words, and the labels of its options (option id -> label)."""

    key: str
    name: str
    type: str
    custom: bool = True
    options: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)


InfoT = TypeVar("InfoT", bound=FieldInfo)


class FieldCatalog(Generic[InfoT]):
    """The fields of one entity, read once per pass."""

    #: The CRM's name, for the log.
    crm: ClassVar[str] = ""

    def __init__(self, entity: FieldEntity, definitions: Any = ()) -> None:
        self.entity = entity
        self.by_key: dict[str, InfoT] = {}
        self._custom_by_name: dict[str, InfoT] = {}
        for info in self.read(definitions):
            self.add(info)

    def read(self, definitions: Any) -> Iterable[InfoT]:
        """The fields of the CRM's answer describing them."""
        raise NotImplementedError

    def add(self, info: InfoT) -> None:
        self.by_key[info.key] = info
        if info.custom:
            existing = self._custom_by_name.setdefault(info.name, info)
            if existing is not info:
                log.warning("two %s %s fields are named %r; using %s", self.crm, self.entity,
                            info.name, existing.key)

    def custom(self, name: str) -> InfoT | None:
        """The custom field of that name (the first one, when two share it)."""
        return self._custom_by_name.get(name)

    def names(self) -> list[str]:
        return [info.name for info in self.by_key.values()]

    def field_defs(self) -> list[FieldDef]:
        return [FieldDef(entity=self.entity, key=i.key, name=i.name, type=i.type,
                         options=dict(i.options), custom=i.custom, raw=i.raw)
                for i in self.by_key.values()]
