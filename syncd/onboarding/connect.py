"""Reach an account with only a plugin and a connection: no Sales Book, no mapping.

``syncd inspect`` and ``syncd init`` use this, so they work before the mapping exists or
while it is invalid (the tenant loader refuses a tenant whose mapping has errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.config import Settings, _connection_settings
from syncd.connector import ConnectionSettings, Connector, ConnectorState
from syncd.errors import ConfigError, ConfigProblem, PluginError
from syncd.i18n import Text
from syncd.oauth import TokenStore
from syncd.onboarding.matching import match_columns, match_tab
from syncd.plugins import ConnectorRegistry
from syncd.salesbook import read_yaml
from syncd.store.budget import share_rate_budgets
from syncd.store.db import Database


@dataclass
class Account:
    """A tenant's connection, resolved and validated, without the rest of the tenant."""

    key: str
    plugin: str
    connector_class: type[Connector]
    settings: ConnectionSettings

    def connector(self, daemon: Settings, db: Database | None = None) -> Connector:
        connector = self.connector_class(self.settings, tenant=self.key)
        if db is not None:
            connector.state = ConnectorState(tokens=TokenStore(
                db, self.key, self.plugin, daemon.token_cipher))
        share_rate_budgets(connector, db)  # `inspect` shares the CRM budget with syncs
        return connector


def open_account(plugin: str, connection: dict[str, Any], registry: ConnectorRegistry,
                 key: str, file: Path) -> Account:
    """Validate ``connection`` for ``plugin`` (``file`` names where it comes from and
    anchors relative paths); raises ConfigError naming file and key."""
    try:
        connector_class = registry.get(plugin)
    except PluginError as exc:
        raise ConfigError(ConfigProblem(str(file), "plugin", str(exc))) from None
    problems: list[ConfigProblem] = []
    settings = _connection_settings(connector_class, connection, file, problems)
    errors = [p for p in problems if p.severity == "error"]
    if errors or settings is None:
        raise ConfigError(errors or [ConfigProblem(str(file), "connection", "invalid")])
    return Account(key, plugin, connector_class, settings)


def tenant_account(daemon: Settings, key: str, registry: ConnectorRegistry) -> Account:
    """The account of tenant ``key`` from its file's ``plugin`` and ``connection`` only."""
    files = daemon.tenant_files()
    if key not in files:
        known = ", ".join(files) or "none"
        raise ConfigError(ConfigProblem(str(daemon.tenants_dir), "",
                                        f"no tenant {key!r} (known: {known})"))
    path = files[key]
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("plugin"), str):
        raise ConfigError(ConfigProblem(str(path), "plugin", "missing: name the plugin"))
    connection = data.get("connection") or {}
    if not isinstance(connection, dict):
        raise ConfigError(ConfigProblem(str(path), "connection", "must be a mapping"))
    return open_account(data["plugin"], connection, registry, key, path)


def export_tabs(path: Path, delimiter: str = "auto", encoding: str = "utf-8-sig",
                ) -> tuple[dict[str, Any], list[str]]:
    """Draft ``connection.tabs`` of an export from its tab titles and header rows: which
    tab holds which entity and which header holds which standard column. Returns the
    tabs block and notes (what was matched, what not)."""
    from syncd_gsheets.files import read_path  # the export reader of the tabular plugin
    from syncd_gsheets.settings import DEFAULT_TABS

    grids = read_path(path, delimiter=delimiter, encoding=encoding)
    tabs: dict[str, Any] = {}
    notes: list[str] = []
    for title, grid in grids.items():
        entity = match_tab(title)
        if entity is None:
            notes.append(Text("tab {title!r}: not a known entity, not read", title=title))
            continue
        header = next(([str(c).strip() for c in row if c not in (None, "")]
                       for row in grid if any(c not in (None, "") for c in row)), [])
        columns = match_columns(entity, header)
        spec: dict[str, Any] = {}
        if title != DEFAULT_TABS.get(entity):
            spec["tab"] = title
        spec["columns"] = {column: guess.source for column, guess in columns.items()}
        tabs[entity] = spec
        custom = [h for h in header if h not in spec["columns"].values()]
        found = ", ".join(f"{c} <- {g.source!r} ({g.confidence:.2f})"
                          for c, g in columns.items())
        notes.append(Text("tab {title!r} = {entity}: {columns}; custom fields: {custom}",
                          title=title, entity=entity, columns=found,
                          custom=", ".join(custom) or "-"))
    return tabs, notes
