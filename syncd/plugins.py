"""Building the plugin manager and the connector registry.

Plugins, built-in and third-party alike, are discovered through the ``syncd`` entry-point
group. Nothing is loaded at import time: ``make_plugin_manager`` does the work, and
``SYNCD_DISABLE_PLUGINS=a,b`` blocks plugins by name.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType
from typing import NotRequired, TypedDict

import pluggy

from syncd import PROJECT_NAME, hookspecs
from syncd.registry import ConnectorRegistry

__all__ = ["ConnectorRegistry", "PluginRow", "Plugins", "entry_point_names",
           "make_plugin_manager"]

log = logging.getLogger(__name__)


class PluginRow(TypedDict):
    """One row of ``syncd plugins``."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]
    connectors: list[str]
    sinks: list[str]
    rules: list[str]
    error: NotRequired[str]  # only for a plugin that failed to load


@dataclass
class Plugins:
    """The plugin manager plus what it registered."""

    manager: pluggy.PluginManager
    connectors: ConnectorRegistry
    #: plugin name -> (distribution name, version) for plugins found via entry points
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.manager.hook

    def describe(self) -> list[PluginRow]:
        """Name, distribution, version and implemented hooks of every plugin."""
        rows: list[PluginRow] = []
        for name, plugin in sorted(self.manager.list_name_plugin(), key=lambda x: x[0]):
            dist = self.distributions.get(name)
            hooks = sorted(h.name for h in self.manager.get_hookcallers(plugin) or [])
            root = _module_root(plugin)
            connectors = [
                c for c in self.connectors.names()
                if self.connectors.get(c).__module__.startswith(root)
            ]
            rows.append({
                "name": name,
                "distribution": dist[0] if dist else None,
                "version": dist[1] if dist else None,
                "hooks": hooks,
                "connectors": connectors,
                "sinks": self.connectors.sinks.names(module_root=root),
                "rules": self.connectors.rules.codes(module_root=root),
            })
        for name, error in sorted(self.connectors.broken.items()):
            rows.append({"name": name, "distribution": None, "version": None, "hooks": [],
                         "connectors": [], "sinks": [], "rules": [], "error": error})
        return rows


def _module_root(plugin: object) -> str:
    name = getattr(plugin, "__name__", type(plugin).__module__)
    return name.split(".")[0]


def make_plugin_manager(
    *,
    load_entrypoints: bool = True,
    extra: tuple[ModuleType | object, ...] = (),
    blocked: tuple[str, ...] = (),
) -> Plugins:
    """Build a fresh plugin manager: specs, blocked names, entry points, extras; validate."""
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    env_blocked = os.environ.get("SYNCD_DISABLE_PLUGINS", "")
    for name in (*blocked, *filter(None, (n.strip() for n in env_blocked.split(",")))):
        manager.set_blocked(name)
    registry = ConnectorRegistry()
    distributions: dict[str, tuple[str, str]] = {}
    if load_entrypoints:
        registry.broken.update(_load_entrypoints(manager, distributions))
    for plugin in extra:
        manager.register(plugin)
    manager.check_pending()
    manager.hook.syncd_register_connectors(registry=registry)
    manager.hook.syncd_register_report_sinks(registry=registry.sinks)
    manager.hook.syncd_register_rules(registry=registry.rules)
    registry.rules.activate()
    registry.sinks.legacy = bool(manager.hook.syncd_publish_report.get_hookimpls())
    if registry.sinks.legacy:
        legacy = [impl.plugin_name for impl in manager.hook.syncd_publish_report.get_hookimpls()]
        log.warning("plugin(s) %s implement the deprecated syncd_publish_report hook; register "
                    "a named sink with syncd_register_report_sinks instead (docs/plugins.md)",
                    ", ".join(legacy))
    return Plugins(manager=manager, connectors=registry, distributions=distributions)


def _load_entrypoints(manager: pluggy.PluginManager,
                      distributions: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Register every ``syncd`` entry point; one that fails to import is logged and left
    out (only the tenants using it fail, naming it), the others load. Returns the failures."""
    broken: dict[str, str] = {}
    for dist in metadata.distributions():
        for entry_point in dist.entry_points:
            name = entry_point.name
            if (entry_point.group != PROJECT_NAME or manager.is_blocked(name)
                    or manager.has_plugin(name) or name in broken):
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin says which one and stops nobody else
                broken[name] = f"{type(exc).__name__}: {exc}"
                log.error("the syncd plugin %r (%s) failed to load: %s",  # noqa: TRY400
                          name, entry_point.value, broken[name])
                continue
            manager.register(plugin, name=name)
            distributions[name] = (dist.metadata["Name"], dist.version)
    return broken


def entry_point_names() -> list[str]:
    """Names declared in the ``syncd`` entry-point group of installed distributions."""
    return sorted(ep.name for ep in metadata.entry_points(group=PROJECT_NAME))
