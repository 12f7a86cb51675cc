"""Hook implementations of the Pipedrive plugin (entry point ``syncd: pipedrive``)."""

from __future__ import annotations

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry
from syncd_pipedrive.connector import PipedriveConnector


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    registry.add(PipedriveConnector)
