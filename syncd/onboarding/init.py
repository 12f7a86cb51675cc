"""``syncd init``: from flags (or prompts on a terminal) to a drafted tenant file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

from syncd.config import Settings
from syncd.connector import Inspection
from syncd.errors import ConfigError, ConfigProblem
from syncd.i18n import Text, say
from syncd.onboarding import read_vocabulary
from syncd.onboarding.connect import export_tabs, open_account
from syncd.onboarding.draft import (
    Draft,
    DraftInput,
    draft_connection,
    pick_salesbook,
    render,
)
from syncd.onboarding.vocabulary import has_cyrillic
from syncd.plugins import ConnectorRegistry
from syncd.salesbook import SalesBook, load_salesbook
from syncd.store.db import Database

EXPORT_PLUGIN = "spreadsheet"


@dataclass
class InitOptions:
    tenant: str
    plugin: str | None = None
    connection: list[str] = field(default_factory=list)
    export: str | None = None
    salesbook: str | None = None
    timezone: str | None = None
    currency: str | None = None
    language: str | None = None  # None: from the account's stage names
    output: Path | None = None
    counts: bool = True
    force: bool = False
    interactive: bool = False


@dataclass
class InitResult:
    path: Path
    draft: Draft


def parse_setting(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; ``$env:NAME`` / ``$file:PATH`` become secret references, numbers and
    true/false their YAML values."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--connection {text!r}: expected KEY=VALUE")
    key = key.strip()
    for prefix, ref in (("$env:", "$env"), ("env:", "$env"), ("$file:", "$file")):
        if value.startswith(prefix):
            return key, {ref: value[len(prefix):]}
    import yaml

    parsed = yaml.safe_load(value) if value else ""
    return key, parsed if isinstance(parsed, int | float | bool) else value


def _connection(options: InitOptions, registry: ConnectorRegistry, plugin: str,
                ) -> dict[str, Any]:
    connection = dict(parse_setting(item) for item in options.connection)
    model = registry.get(plugin).settings_model
    for key in model.secret_keys:
        value = connection.get(key)
        if isinstance(value, str) and value:
            message = (f"--connection {key}: a secret is never written into the tenant "
                       "file; export it in an environment variable and pass $env:NAME "
                       "as its value")
            raise ConfigError(message)
    if options.interactive:
        for name, info in model.model_fields.items():
            if name in connection or not info.is_required():
                continue
            if name in model.secret_keys:
                env = click.prompt(f"{name}: the environment variable that holds it")
                connection[name] = {"$env": env}
            else:
                connection[name] = click.prompt(name)
    return connection


def guess_language(inspection: Inspection) -> str:
    """``ru`` when most of the account's stage names are written in Cyrillic."""
    names = [str(s.get("name") or "") for p in inspection.pipelines
             for s in p.get("stages") or []]
    russian = sum(has_cyrillic(n) for n in names)
    return "ru" if names and russian * 2 >= len(names) else "en"


def _books(settings: Settings) -> list[SalesBook]:
    books = []
    for path in sorted(settings.salesbooks_dir.glob("*.yaml")):
        try:
            books.append(load_salesbook(path))
        except ConfigError:
            continue  # `syncd check` reports a broken Sales Book
    if not books:
        raise ConfigError(f"no Sales Book in {settings.salesbooks_dir}")
    return books


def _source(options: InitOptions, plugin: str, connection: dict[str, Any],
            ) -> tuple[list[str], str]:
    """An export's drafted tabs (into ``connection``) and notes; the source's short name."""
    source = str(connection.get("base_url") or "")
    export_path = options.export or (connection.get("path") if plugin == EXPORT_PLUGIN
                                     else None)
    if not export_path:
        return [], (urlsplit(source).hostname or source) if source else source
    export = Path(str(export_path)).expanduser().resolve()
    connection["path"] = str(export)
    if options.timezone:
        connection.setdefault("timezone", options.timezone)
    tabs, notes = export_tabs(export, connection.get("delimiter", "auto"),
                              connection.get("encoding", "utf-8-sig"))
    connection["tabs"] = tabs
    return notes, export.name


def run_init(settings: Settings, registry: ConnectorRegistry, options: InitOptions,
             database: Callable[[], Database] | None = None) -> InitResult:
    path = (options.output or settings.tenants_dir / f"{options.tenant}.yaml").resolve()
    if path.exists() and not options.force and not (
            options.interactive and click.confirm(f"{path} exists; overwrite?")):
        raise ConfigError(ConfigProblem(str(path), "", "exists; give --force to overwrite"))
    plugin = EXPORT_PLUGIN if options.export else options.plugin
    if plugin is None and options.interactive:
        plugin = click.prompt("plugin", type=click.Choice(sorted(registry.names())))
    if plugin is None:
        raise ConfigError("init: give --plugin NAME (see `syncd plugins`) or --export PATH")
    connection = _connection(options, registry, plugin)
    notes, source = _source(options, plugin, connection)
    db = database() if database is not None else None

    def read(connection: dict[str, Any]) -> Any:
        account = open_account(plugin, connection, registry, options.tenant, path)
        return read_vocabulary(account.connector(settings, db), counts=options.counts)

    found = read(connection)
    drafted = draft_connection(plugin, connection, found.inspection)
    if drafted.get("stage_status") != connection.get("stage_status"):
        # an export whose stage column holds the outcome: count its deals as won/lost
        # (the draft's comments say "lost deals: 2", not "open: 2" for a closed stage)
        connection = drafted
        found = read(connection)
    books = _books(settings)
    best, reason = pick_salesbook(books, found.inspection, found.usage)
    if options.salesbook:
        chosen = {b.key: b for b in books}.get(options.salesbook)
        if chosen is None:
            known = ", ".join(b.key for b in books)
            raise ConfigError(f"--salesbook {options.salesbook!r}: no such Sales Book "
                              f"(known: {known})")
        book, reason = chosen, Text("given with --salesbook")
    elif options.interactive:
        key = click.prompt("Sales Book", type=click.Choice([b.key for b in books]),
                           default=best.key)
        book = {b.key: b for b in books}[key]
        reason = reason if book is best else Text("chosen by hand")
    else:
        book = best
    language = options.language or guess_language(found.inspection)
    draft = render(DraftInput(
        tenant=options.tenant, plugin=plugin, book=book, connection=connection,
        inspection=found.inspection, usage=found.usage,
        timezone=options.timezone or ("Europe/Moscow" if language == "ru" else "UTC"),
        currency=options.currency or ("RUB" if language == "ru" else "EUR"),
        language=language, source=source, book_reason=reason,
        timezone_given=bool(options.timezone)))
    text = draft.text
    if notes:
        text += "".join(f"# export: {say(note, language)}\n" for note in notes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return InitResult(path, Draft(text, draft.decided, draft.todos))
