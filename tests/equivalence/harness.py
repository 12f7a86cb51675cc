"""Run the real CLI on every source and read the reports back in logical keys.

``run(root, db_url)`` serves the logical client from the four fakes on 127.0.0.1 (and
writes the sheet's CSV and XLSX exports), writes one daemon config with one tenant per
source, runs ``syncd sync`` once for all of them and ``syncd report --format json --as-of``
per tenant, and returns an ``Outcome`` per source: the violations, client karma, segment
means and people karma with every CRM id replaced by the dataset's logical key.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import dataset as L
from . import render_amocrm, render_bitrix24, render_pipedrive, render_sheet
from .ids import IdMap

SOURCES = ("pipedrive", "amocrm", "bitrix24", "gsheets", "csv", "xlsx")
TENANTS = Path(__file__).resolve().parent / "tenants"
PIPEDRIVE_TOKEN = "equivalence-pd-token-3f9a"
BITRIX_CODE = "equivalencehook42"
SHEET = "volga-client-crm-sheet"
SHEETS_ACCOUNT = "syncd-equivalence@volga-consult.iam.gserviceaccount.com"

Row = tuple[str, str, str | None, str | None]  # (deal key or CRM stage, rule, stage, action)


@dataclass
class Outcome:
    source: str
    ok: bool
    error: str | None = None
    violations: set[Row] = field(default_factory=set)
    #: row -> the report's one-sentence explanation of it.
    explanations: dict[Row, str] = field(default_factory=dict)
    #: company key -> karma; a company absent from the report is absent here.
    karma: dict[str, float] = field(default_factory=dict)
    #: segment key -> (mean karma, number of companies).
    segments: dict[str, tuple[float, int]] = field(default_factory=dict)
    #: (user key, YYYY-MM) -> employee karma; ("manager", user key, YYYY-MM) for managers.
    people: dict[tuple[str, ...], float] = field(default_factory=dict)
    #: (KPI, ...) -> value: the funnel per stage, win rate, new clients, lead sources,
    #: forward moves per owner and week, revenue by month, repeat clients, up-sales, NPS.
    kpis: dict[tuple[str, ...], Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def tenant_file(source: str) -> dict[str, Any]:
    """``_common.yaml`` merged with ``<source>.yaml`` (mapping sections merged key by key)."""
    common = yaml.safe_load((TENANTS / "_common.yaml").read_text(encoding="utf-8"))
    own = yaml.safe_load((TENANTS / f"{source}.yaml").read_text(encoding="utf-8"))
    merged = {**common, **{k: v for k, v in own.items() if k != "mapping"}}
    merged["mapping"] = {**common["mapping"], **own.get("mapping", {})}
    return merged


@contextmanager
def serve(root: Path, deals: list[L.Deal], sources: tuple[str, ...] = SOURCES,
          ) -> Iterator[tuple[dict[str, dict[str, Any]], dict[str, IdMap], dict[str, str]]]:
    """Start the fakes; yields (tenant files by source, id maps by source, environment)."""
    tenants: dict[str, dict[str, Any]] = {}
    ids: dict[str, IdMap] = {}
    env: dict[str, str] = {}
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if "pipedrive" in sources:
            from syncd_fakes.pipedrive.server import FakePipedrive

            data, ids["pipedrive"] = render_pipedrive.render(deals)
            fake = stack.enter_context(FakePipedrive(data, token=PIPEDRIVE_TOKEN,
                                                     burst_limit=80))
            tenants["pipedrive"] = tenant_file("pipedrive")
            tenants["pipedrive"]["connection"]["base_url"] = fake.base_url
            env["EQUIVALENCE_PIPEDRIVE_TOKEN"] = PIPEDRIVE_TOKEN
        if "amocrm" in sources:
            from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM

            data, ids["amocrm"] = render_amocrm.render(deals)
            amo = stack.enter_context(FakeAmoCRM(data, rate_limit=7))
            tenants["amocrm"] = tenant_file("amocrm")
            tenants["amocrm"]["connection"]["base_url"] = amo.base_url
            env["EQUIVALENCE_AMOCRM_TOKEN"] = DEMO_LONG_LIVED_TOKEN
        if "bitrix24" in sources:
            from syncd_fakes.bitrix24.server import FakeBitrix24

            data, ids["bitrix24"] = render_bitrix24.render(deals)
            bitrix = stack.enter_context(FakeBitrix24(data, webhook_code=BITRIX_CODE, rate=25))
            tenants["bitrix24"] = tenant_file("bitrix24")
            tenants["bitrix24"]["connection"]["base_url"] = bitrix.base_url
            env["EQUIVALENCE_BITRIX24_WEBHOOK"] = bitrix.webhook_url
        if "gsheets" in sources:
            from syncd_fakes.gsheets.server import FakeSheets

            sheets = stack.enter_context(FakeSheets())
            tabs, ids["gsheets"] = render_sheet.sheets_tabs(deals)
            sheets.create(SHEET, tabs, shared_with=[SHEETS_ACCOUNT])
            (root / "tenants" / "sheets-key.json").write_text(
                sheets.service_account_key(SHEETS_ACCOUNT), encoding="utf-8")
            tenants["gsheets"] = tenant_file("gsheets")
            tenants["gsheets"]["connection"]["base_url"] = sheets.base_url
        if "csv" in sources:
            ids["csv"] = render_sheet.write_csv(deals, root / "export-csv")
            tenants["csv"] = tenant_file("csv")
            tenants["csv"]["connection"]["path"] = str(root / "export-csv")
        if "xlsx" in sources:
            ids["xlsx"] = render_sheet.write_xlsx(deals, root / "export.xlsx")
            tenants["xlsx"] = tenant_file("xlsx")
            tenants["xlsx"]["connection"]["path"] = str(root / "export.xlsx")
        yield tenants, ids, env


def run(root: Path, database_url: str, sources: tuple[str, ...] = SOURCES,
        ) -> dict[str, Outcome]:
    """Sync every source once and report each as of ``dataset.AS_OF``."""
    from support import run_syncd, write_config

    deals = L.build()
    with serve(root, deals, sources) as (tenants, ids, env):
        config = write_config(root, database_url, tenants)
        # The fakes' own test credentials, for `syncd report` run by hand in a kept folder
        # (the report reads the store only, but the tenant files name these variables).
        (root / "env.sh").write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()),
                                     encoding="utf-8")
        synced = run_syncd(config, "sync", "--format", "json", env=env, timeout=600)
        passes = _passes(synced.stdout)
        outcomes: dict[str, Outcome] = {}
        for source in sources:
            outcome = passes.get(source) or Outcome(
                source, False, f"no pass result (exit {synced.returncode}): "
                f"{synced.stderr[-2000:]}")
            if outcome.ok:
                result = run_syncd(config, "report", source, "--format", "json",
                                   "--as-of", L.AS_OF, env=env)
                if result.returncode != 0:
                    outcome.ok, outcome.error = False, result.stderr[-2000:]
                else:
                    normalise(outcome, json.loads(result.stdout), ids[source])
            outcomes[source] = outcome
    return outcomes


def _passes(stdout: str) -> dict[str, Outcome]:
    try:
        items = json.loads(stdout)
    except json.JSONDecodeError:
        return {}
    out = {}
    for item in items:
        summary = item.get("summary") or {}
        out[item["tenant"]] = Outcome(item["tenant"], bool(item.get("ok")), item.get("error"),
                                      problems=list(summary.get("problems") or []))
    return out


def segment_key(value: str | None) -> str:
    """The report's segment as a segment key (a CRM label maps to its key)."""
    if value is None:
        return "(none)"
    return L.SEGMENTS.get(value, value)


def normalise(outcome: Outcome, report: dict[str, Any], ids: IdMap) -> None:
    outcome.report = report
    for v in report.get("violations", []):
        if v["rule"] == "unmapped_stage":
            row: Row = (v.get("crm_stage") or "?", v["rule"], None, None)
        else:
            row = (ids.key("deal", v["deal_id"]), v["rule"], v.get("stage_key"),
                   v.get("action_key"))
        outcome.violations.add(row)
        outcome.explanations[row] = v.get("explanation") or ""
    outcome.karma = {ids.key("company", k["company_id"]): round(float(k["karma"]), 2)
                     for k in report.get("client_karma", [])}
    outcome.segments = {segment_key(s["segment"]): (round(float(s["mean_karma"]), 2),
                                                    int(s["companies"]))
                        for s in report.get("segments", [])}
    people = report.get("people") or {}
    for e in people.get("employees", []):
        outcome.people[ids.key("user", e["user_id"]), e["period"]] = round(float(e["karma"]), 2)
    for m in people.get("managers", []):
        outcome.people["manager", ids.key("user", m["user_id"]), m["period"]] = round(
            float(m["karma"]), 2)
    outcome.kpis = kpi_facts(report.get("kpis") or {}, ids)


def kpi_facts(kpis: dict[str, Any], ids: IdMap) -> dict[tuple[str, ...], Any]:
    """The KPIs as flat (name, ...) -> value facts, CRM ids replaced by logical keys."""
    out: dict[tuple[str, ...], Any] = {}
    for row in kpis.get("funnel", []):
        for name in ("entered", "moved_on", "lost", "open_now", "median_days", "mean_days"):
            out["funnel", row["stage"], name] = row.get(name)
    for name in ("won", "lost"):
        out["win_rate", name] = (kpis.get("win_rate") or {}).get(name)
    out["new_clients", "total"] = (kpis.get("new_clients") or {}).get("total")
    for row in kpis.get("lead_sources", []):
        out["lead_sources", row["source"]] = (row.get("deals"), row.get("won"))
    for owner in (kpis.get("forward_moves") or {}).get("owners", []):
        for week, moves in (owner.get("weeks") or {}).items():
            out["forward_moves", ids.key("user", owner["owner_id"]), week] = (
                moves.get("forward"), moves.get("backward"))
    for month, value in (kpis.get("revenue_by_month") or {}).items():
        out["revenue_by_month", month] = value
    for kpi, names in (("repeat_clients", ("clients", "repeat")),
                       ("upsale_revenue", ("deals", "revenue")), ("nps", ("nps", "answers")),
                       ("churn", ("clients_at_start", "lost"))):
        for name in names:
            out[kpi, name] = (kpis.get(kpi) or {}).get(name)
    return out


# --- what most sources say -----------------------------------------------------------------
def consensus_rows(outcomes: dict[str, Outcome]) -> set[Row]:
    """The rows more than half of the sources that ran report."""
    ran = [o for o in outcomes.values() if o.ok]
    seen = Counter(row for o in ran for row in o.violations)
    return {row for row, n in seen.items() if 2 * n > len(ran)}


def consensus_values(maps: list[dict[Any, Any]]) -> dict[Any, Any]:
    """Per key, the value (``None`` = absent) more of the maps give than any other value; a
    tie for the most maps to ``NO_AGREEMENT``. (Several sources may be wrong at once, each in
    its own way: the value most of them share is still the one to name the odd ones by.)"""
    out: dict[Any, Any] = {}
    for key in {k for m in maps for k in m}:
        ranked = Counter(m.get(key) for m in maps).most_common(2)
        tied = len(ranked) > 1 and ranked[0][1] == ranked[1][1]
        out[key] = NO_AGREEMENT if tied else ranked[0][0]
    return {k: v for k, v in out.items() if v is not None}


NO_AGREEMENT = "(no agreement)"
