"""Hook implementations of the gsheets plugin (entry point ``syncd: gsheets``)."""

from __future__ import annotations

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    """No connector yet: the plugin is being built."""
