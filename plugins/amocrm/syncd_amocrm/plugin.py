"""Hook implementations of the amoCRM / Kommo plugin (entry point ``syncd: amocrm``)."""

from __future__ import annotations

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry
from syncd_amocrm.connector import AmoCRMConnector


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    registry.add(AmoCRMConnector)
