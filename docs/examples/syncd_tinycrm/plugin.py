"""TinyCRM's hook implementations (the entry point: ``tinycrm = "syncd_tinycrm.plugin"``)."""

from __future__ import annotations

from typing import Any

from syncd import hookimpl
from syncd_tinycrm import TinyConnector


@hookimpl
def syncd_register_connectors(registry: Any) -> None:
    registry.add(TinyConnector)
