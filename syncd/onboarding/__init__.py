"""Onboarding a client: read an account's vocabulary and draft its tenant file.

* ``vocabulary``: normalised words, transliteration, Russian/English synonyms.
* ``matching``: pure guesses (stage, loss reason, activity kind, field, export column).
* ``usage``: how many records use each stage, reason, type, field and value.
* ``draft``: the commented tenant file, with TODOs for what cannot be decided.
* ``todos``: the TODOs of tenant files, as warnings for ``syncd check``.
* ``connect``: reach an account with only a plugin and a connection (no mapping).
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.connector import Connector, Inspection
from syncd.onboarding.usage import Usage, count_usage


@dataclass
class Vocabulary:
    inspection: Inspection
    usage: Usage | None


def read_vocabulary(connector: Connector, *, counts: bool = True) -> Vocabulary:
    """The account's vocabulary (``inspect()``) and, with ``counts``, its usage."""
    try:
        inspection = connector.inspect()
        usage = count_usage(connector) if counts else None
    finally:
        connector.close()
    return Vocabulary(inspection, usage)
