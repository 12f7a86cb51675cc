"""The connector registry: what plugins register through the hooks (``syncd.hookspecs``).

Its own module so that the hook specifications can name it without importing the plugin
manager that loads them (``syncd.plugins``); ``syncd.plugins`` re-exports it.
"""

from __future__ import annotations

from syncd.audit.registry import RuleRegistry
from syncd.connector import Connector
from syncd.errors import PluginError
from syncd.sinks import SinkRegistry


class ConnectorRegistry:
    """Connector classes by name; registering a name twice is an error naming both.

    Tenant loading receives this registry; it also carries what plugins registered that a
    tenant file refers to: report sinks (``sinks``) and custom rules (``rules``)."""

    def __init__(self) -> None:
        self._connectors: dict[str, type[Connector]] = {}
        #: plugin (entry point) name -> why it failed to load
        self.broken: dict[str, str] = {}
        self.sinks = SinkRegistry()
        self.rules = RuleRegistry()

    def add(self, connector: type[Connector]) -> None:
        name = getattr(connector, "name", None)
        if not isinstance(name, str) or not name:
            message = f"{connector!r} has no connector name"
            raise PluginError(message)
        existing = self._connectors.get(name)
        if existing is not None and existing is not connector:
            message = (
                f"connector name {name!r} registered twice: by {existing.__module__} "
                f"and by {connector.__module__}"
            )
            raise PluginError(message)
        self._connectors[name] = connector

    def get(self, name: str) -> type[Connector]:
        try:
            return self._connectors[name]
        except KeyError:
            known = ", ".join(sorted(self._connectors)) or "none"
            message = f"no connector named {name!r} (installed: {known})"
            if name in self.broken:
                message = f"the plugin {name!r} failed to load: {self.broken[name]}"
            raise PluginError(message) from None

    def names(self) -> list[str]:
        return sorted(self._connectors)

    def __contains__(self, name: object) -> bool:
        return name in self._connectors
