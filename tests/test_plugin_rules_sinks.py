"""A consultancy's own rule and report sink, as a pip package outside the core.

The package below (``syncd_acme``) is written to a temporary folder as a module plus a
``.dist-info`` with an ``entry_points.txt``, next to the ``memcrm`` CRM plugin of
test_external_plugin.py, and put on PYTHONPATH of `syncd` subprocesses. It registers the
rule ``big_deal_no_meeting`` and the report sink ``jsonfile``; nothing in syncd knows them.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import BaseModel, ConfigDict
from support import run_syncd, write_config
from test_external_plugin import DATA, install_plugin

from syncd.audit.engine import audit_deals
from syncd.audit.facts import DealFacts
from syncd.audit.registry import CustomRule, Hit, RuleRegistry
from syncd.config import report_problems
from syncd.errors import PluginError
from syncd.render import violation_text
from syncd.salesbook import load_salesbook
from syncd.sinks import ReportSink, SinkRegistry, publish_report

ACME_SOURCE = textwrap.dedent('''
    """syncd-acme: a consultancy's own audit rule and report sink."""
    import json
    from pathlib import Path
    from pydantic import BaseModel, ConfigDict
    from syncd import hookimpl
    from syncd.audit.registry import CustomRule, Hit
    from syncd.errors import SyncdError
    from syncd.sinks import ReportSink

    def big_deal_no_meeting(facts, context):
        if facts.value >= 5000 and not any(a.kind == "meeting" and a.done
                                           for a in facts.activities):
            yield Hit({"value": facts.value})

    RULE = CustomRule(
        code="big_deal_no_meeting",
        title={"en": "big deal without a meeting", "ru": "крупная сделка без встречи"},
        explanation={"en": "Deal '{deal_title}' is worth {value:.0f} and had no meeting.",
                     "ru": "Сделка «{deal_title}» на {value:.0f} прошла без встречи."},
        check=big_deal_no_meeting, severity="error", karma_weight=3.0)

    class JsonFileOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        fail: bool = False

    def publish(tenant, report, options):
        if options.fail:
            raise SyncdError("jsonfile: the disk is full")
        with open(options.path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"tenant": report["tenant"],
                                  "rules": sorted({v["rule"] for v in report["violations"]})})
                      + "\\n")

    @hookimpl
    def syncd_register_rules(registry):
        registry.add(RULE)

    @hookimpl
    def syncd_register_report_sinks(registry):
        registry.add(ReportSink("jsonfile", JsonFileOptions, publish))
''')
RULE = "big_deal_no_meeting"


def install_acme(site: Path) -> None:
    dist = site / "syncd_acme-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "syncd_acme.py").write_text(ACME_SOURCE, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: syncd-acme\nVersion: 1.0\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text("[syncd]\nacme = syncd_acme\n", encoding="utf-8")


def memcrm_tenant(data_file: Path, **extra: Any) -> dict[str, Any]:
    return {
        "plugin": "memcrm", "salesbook": "b2b-services-9", "timezone": "UTC",
        "connection": {"base_url": "mem://", "data_file": str(data_file)},
        "mapping": {"stages": {"Main": {"Talk": "briefing", "Offer": "estimate"}},
                    "fields": {"deal": {"lead_source": "Source", "estimate_link": "Link",
                                        "contract_number": "Contract"}}},
        "writeback": {"enabled": False},
        **extra,
    }


@pytest.fixture
def acme(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    site = install_plugin(tmp_path)
    install_acme(site)
    data_file = tmp_path / "export.json"
    data_file.write_text(json.dumps(DATA), encoding="utf-8")
    return data_file, {"PYTHONPATH": str(site)}


@pytest.mark.slow
def test_custom_rule_and_sink_from_a_package(tmp_path: Path,
                                             acme: tuple[Path, dict[str, str]]) -> None:
    data_file, env = acme
    database = tmp_path / "syncd.db"
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    tenants = {
        "alpha": memcrm_tenant(data_file, reports={"jsonfile": {"path": str(out_a)}}),
        "beta": memcrm_tenant(data_file, reports={"jsonfile": {"path": str(out_b)}},
                              rules={RULE: False}),
        "gamma": memcrm_tenant(data_file, reports={"jsonfile": {"path": "x", "fail": True}}),
    }
    config = write_config(tmp_path, f"sqlite:///{database}", tenants)

    checked = run_syncd(config, "check", env=env)
    assert checked.returncode == 0, checked.stderr
    synced = run_syncd(config, "sync", "--format", "json", env=env)
    assert synced.returncode == 0, synced.stderr
    summaries = {row["tenant"]: row["summary"] for row in json.loads(synced.stdout)}
    assert summaries["alpha"]["violations_by_rule"][RULE] == 1  # d2: 10000, only a call
    assert RULE not in summaries["beta"]["violations_by_rule"]  # switched off by beta
    assert summaries["alpha"]["report_sink_failures"] == []
    assert summaries["gamma"]["report_sink_failures"] == ["jsonfile: jsonfile: the disk is full"]
    assert "tenant gamma: report sink jsonfile failed" in synced.stderr

    # each sink got its own tenant's report, once, and nobody else's
    assert [json.loads(line)["tenant"] for line in out_a.read_text().splitlines()] == ["alpha"]
    assert [json.loads(line)["tenant"] for line in out_b.read_text().splitlines()] == ["beta"]
    assert RULE in json.loads(out_a.read_text())["rules"]
    assert RULE not in json.loads(out_b.read_text())["rules"]

    report = run_syncd(config, "report", "alpha", "--format", "json", env=env)
    assert report.returncode == 0, report.stderr
    custom = [v for v in json.loads(report.stdout)["violations"] if v["rule"] == RULE]
    assert [(v["deal_id"], v["severity"]) for v in custom] == [("d2", "error")]
    assert custom[0]["explanation"] == "Deal 'Won offer' is worth 10000 and had no meeting."

    with sqlite3.connect(database) as conn:  # karma: weight 3 x violation_penalty 2
        lines = conn.execute(
            "select k.quantity, k.amount from karma_lines k join violations v"
            " on k.source_id = cast(v.id as text) join tenants t on t.id = k.tenant_id"
            " where k.criterion = 'violation' and v.rule = ? and t.key = 'alpha'",
            (RULE,)).fetchall()
    assert lines == [(3.0, -6.0)]


def test_check_names_an_unknown_sink_rule_or_bad_option(
        tmp_path: Path, acme: tuple[Path, dict[str, str]]) -> None:
    data_file, env = acme
    tenants = {
        "alpha": memcrm_tenant(data_file, reports={"jsonfiel": {"path": "x"}}),
        "beta": memcrm_tenant(data_file, reports={"jsonfile": {"pth": "x"}},
                              rules={"big_deal_no_meetin": True}),
    }
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", tenants)
    listed = run_syncd(config, "plugins", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert (rows["acme"]["sinks"], rows["acme"]["rules"]) == (["jsonfile"], [RULE])
    assert rows["gsheets"]["sinks"] == ["gsheets"] and rows["gsheets"]["rules"] == []
    checked = run_syncd(config, "check", env=env)
    assert checked.returncode == 2
    assert ("alpha.yaml: reports.jsonfiel: no report sink named 'jsonfiel' (installed: "
            "gsheets, jsonfile); did you mean 'jsonfile'?") in checked.stderr
    assert "beta.yaml: reports.jsonfile.path: Field required" in checked.stderr
    assert "beta.yaml: reports.jsonfile.pth: Extra inputs are not permitted" in checked.stderr
    assert ("beta.yaml: rules.big_deal_no_meetin: no custom rule named 'big_deal_no_meetin' "
            "(installed: big_deal_no_meeting); did you mean 'big_deal_no_meeting'?") \
        in checked.stderr


# -- in-process: the engine, the registry and the CRM texts --------------------------------
BOOK = load_salesbook(Path(__file__).resolve().parents[1] / "config" / "salesbooks"
                      / "b2b-services-9.yaml")


def _rule(**extra: Any) -> CustomRule:
    def check(facts: DealFacts, context: Any) -> list[Hit]:
        return [Hit({"today": context.today.isoformat()})] if facts.value > 100 else []
    return CustomRule(code=extra.pop("code", "pricey"), title={"en": "pricey", "ru": "дорого"},
                      explanation={"en": "{deal_id} costs too much as of {today}",
                                   "ru": "{deal_id} слишком дорогая"}, check=check, **extra)


def test_engine_runs_custom_rules_after_the_built_in_ones() -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    deal = DealFacts(deal_id="d9", title="Big", status="open", stage_key=None,
                     crm_stage="Main / ?", created_at=datetime(2026, 4, 1, tzinfo=UTC),
                     value=500.0, contact_count=1, fields={"lead_source": "web"})
    found = list(audit_deals([deal], BOOK, now, ZoneInfo("UTC"), custom_rules=(_rule(),)))
    assert [f.rule for f in found] == ["pricey", "unmapped_stage"]
    assert found[0].explanation == "d9 costs too much as of 2026-05-01"
    assert found[0].severity == "warning" and found[0].details == {"today": "2026-05-01"}
    assert [f.rule for f in audit_deals([deal], BOOK, now, ZoneInfo("UTC"))] == [
        "unmapped_stage"]


def test_registry_rejects_taken_built_in_and_incomplete_rules() -> None:
    registry = RuleRegistry()
    registry.add(_rule())
    with pytest.raises(PluginError, match="'pricey' registered twice"):
        registry.add(_rule())
    with pytest.raises(PluginError, match="uses a built-in rule code"):
        registry.add(_rule(code="stalled"))
    with pytest.raises(PluginError, match="title needs a text in ru"):
        registry.add(CustomRule(code="half", title={"en": "x"}, explanation={"en": "x",
                                "ru": "x"}, check=lambda f, c: ()))
    assert [r.code for r in registry.for_tenant({})] == ["pricey"]
    assert registry.for_tenant({"pricey": False}) == ()


def test_crm_texts_use_the_rule_title_in_the_tenant_language() -> None:
    registry = RuleRegistry()
    registry.add(_rule())
    registry.activate()
    assert violation_text("pricey", None, None, {}, BOOK, "ru") == "дорого"
    assert violation_text("pricey", None, None, {}, BOOK, "en") == "pricey"


# -- in-process: dispatch by name, and the deprecated broadcast hook -------------------------
class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str


def _plugins(sinks: SinkRegistry, legacy_calls: list[dict[str, Any]]) -> Any:
    hook = SimpleNamespace(syncd_publish_report=lambda **kw: legacy_calls.append(kw))
    return SimpleNamespace(connectors=SimpleNamespace(sinks=sinks), hook=hook)


def _tenant(tmp_path: Path, reports: dict[str, Any]) -> Any:
    return SimpleNamespace(key="acme", file=tmp_path / "acme.yaml",
                           config=SimpleNamespace(reports=reports))


def test_each_reports_entry_goes_only_to_its_sink(tmp_path: Path) -> None:
    got: dict[str, list[Any]] = {"a": [], "b": []}
    sinks = SinkRegistry()
    for name, calls in got.items():
        sinks.add(ReportSink(name, _Options,
                             lambda t, r, o, calls=calls: calls.append((r["tenant"], o.path))))
    sinks.add(ReportSink("broken", _Options, lambda t, r, o: 1 / 0))
    legacy: list[dict[str, Any]] = []
    tenant = _tenant(tmp_path, {"a": {"path": "pa"}, "broken": {"path": "x"},
                                "b": {"path": "pb"}, "nosuch": {}})
    failures = publish_report(_plugins(sinks, legacy), tenant, {"tenant": "acme"})
    assert got == {"a": [("acme", "pa")], "b": [("acme", "pb")]}
    assert failures == ["broken: ZeroDivisionError: division by zero",
                        "nosuch: no report sink named 'nosuch' (installed: a, b, broken)"]
    assert legacy == []  # no plugin implements the deprecated hook: nothing broadcast


def test_deprecated_hook_gets_only_unregistered_names(tmp_path: Path) -> None:
    sinks = SinkRegistry()
    sinks.add(ReportSink("a", _Options, lambda t, r, o: None))
    sinks.legacy = True
    legacy: list[dict[str, Any]] = []
    tenant = _tenant(tmp_path, {"a": {"path": "pa"}, "oldsink": {"token": "t"}})
    assert publish_report(_plugins(sinks, legacy), tenant, {"tenant": "acme"}) == []
    assert [call["options"] for call in legacy] == [{"token": "t", "sink": "oldsink"}]
    config = SimpleNamespace(reports=tenant.config.reports)
    problems = report_problems(config, sinks, tenant.file)
    assert [(p.key, p.severity) for p in problems] == [("reports.oldsink", "warning")]
    sinks.legacy = False
    assert [p.severity for p in report_problems(config, sinks, tenant.file)] == ["error"]


def test_sink_names_are_unique() -> None:
    sinks = SinkRegistry()
    sinks.add(ReportSink("a", _Options, lambda t, r, o: None))
    with pytest.raises(PluginError, match="report sink name 'a' registered twice"):
        sinks.add(ReportSink("a", _Options, lambda t, r, o: None))
    with pytest.raises(PluginError, match="options_model must be a pydantic model class"):
        sinks.add(ReportSink("c", dict, lambda t, r, o: None))  # type: ignore[arg-type]


def test_a_streamed_report_reaches_each_sink_in_the_form_it_takes(tmp_path: Path) -> None:
    """A sink registered ``streamed`` gets the rows as they are (re-iterable, read when
    iterated); the others and the deprecated hook get lists, the report read whole once."""
    from syncd.report_stream import ReportRows

    rows = ReportRows(2, lambda: iter([{"rule": "a"}, {"rule": "b"}]))
    got: dict[str, Any] = {}
    sinks = SinkRegistry()
    sinks.add(ReportSink("live", _Options, lambda t, r, o: got.update(live=r["violations"]),
                         streamed=True))
    sinks.add(ReportSink("old", _Options, lambda t, r, o: got.update(old=r["violations"])))
    sinks.add(ReportSink("old2", _Options, lambda t, r, o: got.update(old2=r["violations"])))
    sinks.legacy = True
    legacy: list[dict[str, Any]] = []
    wholes: list[int] = []

    def whole() -> dict[str, Any]:
        wholes.append(1)
        return {"tenant": "acme", "violations": list(rows)}

    tenant = _tenant(tmp_path, {"live": {"path": "p"}, "old": {"path": "p"},
                                "old2": {"path": "p"}, "hooked": {}})
    assert publish_report(_plugins(sinks, legacy), tenant,
                          {"tenant": "acme", "violations": rows}, whole=whole) == []
    assert got["live"] is rows and list(got["live"]) == [{"rule": "a"}, {"rule": "b"}]
    assert got["old"] == got["old2"] == [{"rule": "a"}, {"rule": "b"}]
    assert legacy[0]["report"]["violations"] == [{"rule": "a"}, {"rule": "b"}]
    assert wholes == [1]
