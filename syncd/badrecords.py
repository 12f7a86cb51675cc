"""Records a connector could not read: handed to the core's quarantine, not fatal.

A connector's normalizer that meets a record it cannot read (a deal value "abc", an
unreadable date) calls ``reject(stream, payload, problem)``. During a pass the core collects
these (``collecting``) and keeps each record in the quarantine (``syncd.store.quarantine``)
with its raw payload and problem, stores the rest of the page and moves the cursor; the
quarantined record is retried on every later pass. Outside a pass (``syncd inspect``, unit
tests of a client) nobody collects: ``reject`` returns False and the connector raises as it
always did, so a record is never skipped silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BadRecord:
    """One record of ``stream`` that could not be read, with the CRM's raw payload."""

    stream: str
    external_id: str | None
    payload: Any
    problem: str


_collector: ContextVar[list[BadRecord] | None] = ContextVar("syncd_bad_records", default=None)


@contextmanager
def collecting() -> Iterator[list[BadRecord]]:
    """Collect the records rejected while the block runs (generators it drives included)."""
    found: list[BadRecord] = []
    token = _collector.set(found)
    try:
        yield found
    finally:
        _collector.reset(token)


def reject(stream: str, payload: Any, problem: str, *, external_id: Any = None) -> bool:
    """Hand one unreadable record to the quarantine. Returns False when no pass collects
    (then the caller must raise, as before). ``problem`` must already be redacted."""
    found = _collector.get()
    if found is None:
        return False
    if external_id is None and isinstance(payload, dict):
        external_id = payload.get("id", payload.get("ID"))
    found.append(BadRecord(stream, None if external_id in (None, "") else str(external_id),
                           payload, problem))
    return True


def drain(found: list[BadRecord]) -> list[BadRecord]:
    """Take what was collected so far (the list is emptied)."""
    taken = list(found)
    found.clear()
    return taken
