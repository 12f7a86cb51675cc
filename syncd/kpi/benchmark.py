"""The anonymised cross-tenant benchmark of the canonical funnel.

Every tenant maps its CRM onto canonical Sales Book stages, so tenants on the same Sales
Book can be compared stage by stage — something no single CRM can do. Other tenants'
names never appear: they are "Peer A", "Peer B"... in an order derived from a hash of
their key (stable, but not alphabetical, so the order gives nothing away). Each tenant's
funnel is read by ``syncd.load.tenant_funnel``; this module only compares them.
"""

from __future__ import annotations

import hashlib
import statistics
import string
from collections.abc import Mapping
from typing import Any


def peer_label(index: int) -> str:
    letters = string.ascii_uppercase
    label = letters[index % 26] + (str(index // 26) if index >= 26 else "")
    return f"Peer {label}"


def benchmark(you: str, funnels: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Compare ``you``'s funnel conversion with every tenant on the same Sales Book."""
    mine = funnels[you]
    book = mine["salesbook"]
    peers = sorted((key for key, f in funnels.items() if key != you and f["salesbook"] == book),
                   key=lambda key: hashlib.sha256(key.encode()).hexdigest())
    stages = []
    for row in mine["funnel"]:
        values = [r["conversion"] for key in peers for r in funnels[key]["funnel"]
                  if r["stage"] == row["stage"] and r["conversion"] is not None]
        stages.append({
            "stage": row["stage"], "title": row["title"], "you": row["conversion"],
            "peers": {"median": round(statistics.median(values), 4) if values else None,
                      "min": min(values) if values else None,
                      "max": max(values) if values else None, "count": len(values)},
        })
    return {
        "salesbook": book, "tenants": len(peers) + 1, "stages": stages,
        "peers": [{"tenant": peer_label(i), "deals": funnels[key]["deals"],
                   "stages": {r["stage"]: r["conversion"] for r in funnels[key]["funnel"]}}
                  for i, key in enumerate(peers)],
    }
