"""Mapped CRM field names must exist: a misspelt name is an error, never silence.

``mapping.fields.<entity>.<canonical key>`` names a CRM field (or an export's column) by
its human name. A name the CRM does not have used to read as "empty" on every record (one
client got 60 false ``no_lead_source`` rows from "Lead sourse"). This module compares the
mapped names with the names the source actually has and names the closest ones.

It runs in two places:

* ``syncd sync``/``run``: after the pull, against the field definitions just stored (the
  ``fields`` stream). A misspelt name stops that tenant's pass with a ``ConfigError``
  before the audit: the pulled data is committed, but no false violation is opened, written
  into the CRM or turned into a task (an audit that is confidently wrong costs more than
  one that waits for a one-line fix). Other tenants are not affected.
* ``syncd check``: offline, for connectors that can read their source without a network
  (a local CSV/XLSX export: its header row is its field list).

An entity whose field list is unknown (the connector gives none) is not checked.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from syncd.errors import ConfigError, ConfigProblem, SourceMappingError, SyncdError

if TYPE_CHECKING:
    from syncd.config import Settings, Tenant, TenantConfig
    from syncd.plugins import ConnectorRegistry
    from syncd.store.db import Database

ENTITIES = ("deal", "company", "contact")


def closest(name: str, known: Iterable[str], limit: int = 3) -> list[str]:
    """The known names closest to ``name`` (case-insensitive, difflib ratio >= 0.6)."""
    names = list(dict.fromkeys(known))
    folded: dict[str, str] = {}
    for candidate in names:
        folded.setdefault(candidate.casefold(), candidate)
    same_but_case = folded.get(name.casefold())
    matches = difflib.get_close_matches(name.casefold(), list(folded), n=limit, cutoff=0.6)
    found = [folded[m] for m in matches]
    if same_but_case is not None and same_but_case not in found[:1]:
        found = [same_but_case, *[f for f in found if f != same_but_case]][:limit]
    return found


def field_problems(config: TenantConfig, known: Mapping[str, Iterable[str]], file: str,
                   source: str = "the CRM") -> list[ConfigProblem]:
    """One error per mapped field name that ``known`` (entity -> field names) lacks."""
    problems = []
    for entity in ENTITIES:
        if entity not in known:
            continue
        names = list(known[entity])
        mapped: dict[str, str | None] = getattr(config.mapping.fields, entity)
        for canonical, name in mapped.items():
            if name is None or name in names:  # None: the CRM has no such field, on purpose
                continue
            hint = closest(name, names)
            if hint:
                advice = "did you mean " + " or ".join(repr(h) for h in hint) + "?"
            else:
                advice = f"its {entity} fields are: {', '.join(sorted(names)) or 'none'}"
            problems.append(ConfigProblem(
                file, f"mapping.fields.{entity}.{canonical}",
                f"{source} has no {entity} field {name!r} (names are exact, case included); "
                + advice))
    return problems


def stored_field_names(session: Session, tenant_id: int) -> dict[str, list[str]]:
    """``entity -> names`` of the field definitions stored for a tenant (not deleted)."""
    from syncd.store import FieldDefRow

    rows = session.execute(select(FieldDefRow.entity, FieldDefRow.name).where(
        FieldDefRow.tenant_id == tenant_id, FieldDefRow.deleted.is_(False)))
    names: dict[str, list[str]] = {}
    for entity, name in rows:
        names.setdefault(entity, []).append(name)
    return names


def check_stored_fields(db: Database, tenant: Tenant, tenant_id: int) -> None:
    """Raise ``ConfigError`` (file and key named) when a mapped field is not among the
    fields the connector stored for this tenant."""
    with db.session() as session:
        known = stored_field_names(session, tenant_id)
    problems = field_problems(tenant.config, known, str(tenant.file),
                              source=f"the {tenant.config.plugin} account")
    if problems:
        raise ConfigError(problems)


def offline_problems(settings: Settings, registry: ConnectorRegistry) -> list[ConfigProblem]:
    """For ``syncd check``: mapped field names against the sources readable offline (a
    connector with an ``offline_fields()`` method, e.g. a local export). Tenants that do
    not load are skipped here (``check_all`` reports them)."""
    from syncd.config import load_tenant

    problems: list[ConfigProblem] = []
    for key, path in settings.tenant_files().items():
        try:
            tenant = load_tenant(settings, key, registry, offline=True)
        except ConfigError:
            continue
        reader = getattr(tenant.connector_class, "offline_fields", None)
        if reader is None:
            continue
        connector = tenant.make_connector()
        try:
            known = reader(connector)  # only file-based connectors have offline_fields
        except SourceMappingError as exc:  # the file is there; the tenant file names wrongly
            problems.append(ConfigProblem(str(path), exc.key, str(exc)))
            continue
        except (SyncdError, OSError, ValueError) as exc:
            problems.append(ConfigProblem(  # may appear later (a nightly export): warn
                str(path), "connection", f"the export cannot be read, so its column names "
                f"were not checked: {exc}", severity="warning"))
            continue
        finally:
            connector.close()
        problems.extend(field_problems(tenant.config, known, str(path),
                                       source="the export"))
    return problems
