"""Hook implementations of the Bitrix24 plugin (entry point ``syncd: bitrix24``)."""

from __future__ import annotations

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry
from syncd_bitrix24.connector import Bitrix24Connector


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    registry.add(Bitrix24Connector)
