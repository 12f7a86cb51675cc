"""Hook implementations of the amocrm plugin (entry point ``syncd: amocrm``)."""

from __future__ import annotations

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    """No connector yet: the plugin is being built."""
