"""How many records use each stage, loss reason, activity type, field and field value.

Counted from one full read of the account through the connector's own ``pull`` (the same
normalised records a sync stores), in memory and without a database: nothing is written,
no cursor moves, and the mapping is not needed. ``stage_history`` and ``contacts`` are not
read (nothing here counts them). An account of 50 000 deals is read once, as a first
``syncd sync --full`` would read it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from syncd.connector import Connector, PullContext

SKIPPED_STREAMS = ("stage_history", "contacts")
#: Fields with at most this many distinct values get their values counted.
MAX_VALUES = 25


@dataclass
class Usage:
    deals: int = 0
    activities: int = 0
    companies: int = 0
    #: (pipeline name, stage name) -> deals in it (open / all).
    stages: Counter[tuple[str, str]] = field(default_factory=Counter)
    open_stages: Counter[tuple[str, str]] = field(default_factory=Counter)
    loss_reasons: Counter[str] = field(default_factory=Counter)
    activity_types: Counter[str] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    #: entity -> field name -> records with a value.
    filled: dict[str, Counter[str]] = field(default_factory=dict)
    #: entity -> field name -> value -> records (low-cardinality fields only).
    values: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    #: entity -> field name -> the CRM's type name.
    types: dict[str, dict[str, str]] = field(default_factory=dict)

    def stage_count(self, pipeline: str, stage: str) -> int:
        return self.stages.get((pipeline, stage), 0)

    def as_dict(self) -> dict[str, Any]:
        def top(counter: Counter[Any]) -> dict[str, int]:
            return {str(k): v for k, v in counter.most_common()}

        return {
            "deals": self.deals, "activities": self.activities, "companies": self.companies,
            "stages": {f"{p} / {s}": n for (p, s), n in self.stages.most_common()},
            "open_stages": {f"{p} / {s}": n for (p, s), n in self.open_stages.most_common()},
            "loss_reasons": top(self.loss_reasons),
            "activity_types": top(self.activity_types),
            "owners": top(self.owners),
            "fields": {entity: {name: {"filled": count,
                                       "type": self.types.get(entity, {}).get(name),
                                       "values": top(self.values.get(entity, {}).get(
                                           name, Counter()))}
                                for name, count in counter.most_common()}
                       for entity, counter in self.filled.items()},
        }


def _text(value: Any) -> str | None:
    if value is None or value in ("", [], {}):
        return None
    if isinstance(value, dict):
        value = value.get("value", value.get("name", value))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _count_fields(usage: Usage, entity: str, fields: dict[str, Any] | None) -> None:
    filled = usage.filled.setdefault(entity, Counter())
    values = usage.values.setdefault(entity, {})
    for name, raw in (fields or {}).items():
        text = _text(raw)
        if text is None:
            continue
        filled[name] += 1
        counter = values.setdefault(name, Counter())
        if len(counter) <= MAX_VALUES:
            counter[text[:80]] += 1


class _Counting:
    """Records of one read, stream by stream (stages are named after the read)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.pipelines: dict[str, str] = {}
        self.stages: dict[str, tuple[str | None, str]] = {}
        self.deals: list[tuple[Any, ...]] = []

    def add(self, stream: str, record: Any) -> None:
        usage = self.usage
        if stream == "pipelines":
            self.pipelines[record.external_id] = record.name
        elif stream == "stages":
            self.stages[record.external_id] = (record.pipeline_id, record.name)
        elif stream == "fields":
            usage.types.setdefault(record.entity, {})[record.name] = record.type
        elif stream == "deals":
            self.deals.append((record.status, record.pipeline_id, record.stage_id,
                               record.lost_reason, record.owner_id))
            usage.deals += 1
            _count_fields(usage, "deal", record.fields)
        elif stream == "activities" and not getattr(record, "deleted", False):
            usage.activities += 1
            usage.activity_types[record.type] += 1
        elif stream == "companies":
            usage.companies += 1
            _count_fields(usage, "company", record.fields)

    def finish(self) -> Usage:
        usage = self.usage
        for status, pipeline_id, stage_id, reason, owner in self.deals:
            pipeline_of_stage, stage_name = self.stages.get(str(stage_id),
                                                            (None, str(stage_id)))
            pipeline = self.pipelines.get(str(pipeline_id or pipeline_of_stage),
                                          str(pipeline_id))
            usage.stages[(pipeline, stage_name)] += 1
            if status == "open":
                usage.open_stages[(pipeline, stage_name)] += 1
            if status == "lost" and reason and str(reason).strip():
                usage.loss_reasons[str(reason).strip()] += 1
            if owner:
                usage.owners[str(owner)] += 1
        for per_field in usage.values.values():  # drop high-cardinality value lists
            for name in list(per_field):
                if len(per_field[name]) > MAX_VALUES:
                    per_field[name] = Counter()
        return usage


def count_records(pages: Iterable[tuple[str, list[Any]]]) -> Usage:
    """Count ``(stream, records)`` pages (pure: the tests feed records directly)."""
    counting = _Counting()
    for stream, records in pages:
        for record in records:
            counting.add(stream, record)
    return counting.finish()


def count_usage(connector: Connector) -> Usage:
    """Read the account once through ``connector.pull`` (full, no cursors) and count."""
    context = PullContext(full=True)

    def pages() -> Iterable[tuple[str, list[Any]]]:
        for stream in connector.streams:
            if stream in SKIPPED_STREAMS:
                continue
            for page in connector.pull(stream, None, context):
                yield stream, list(page.records)

    return count_records(pages())
