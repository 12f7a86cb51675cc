"""`syncd drift` / `plan` / `apply` (issue 14.5) against the fake Pipedrive and amoCRM on
127.0.0.1: the CRM's own gates are compared with the Sales Book, the plan is applied after
confirmation, a second apply changes nothing, and the recorded changes revert."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from support import REPO, run_syncd, write_config
from syncd_fakes.amocrm.sample import sample_dataset as amo_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store
from syncd.salesbook import load_salesbook

TOKEN = "gates-token-51c2"
ENV = {"GATES_PIPEDRIVE_TOKEN": TOKEN, "AMO_TOKEN": DEMO_LONG_LIVED_TOKEN}


def _pipedrive_tenant(base_url: str) -> dict:
    tenant = yaml.safe_load((REPO / "config" / "demo" / "tenants" / "northwind.yaml")
                            .read_text("utf-8"))
    tenant["connection"].update(base_url=base_url,
                                api_token={"$env": "GATES_PIPEDRIVE_TOKEN"})
    return tenant


def _max_days(tenant: dict) -> dict[str, int]:
    """CRM stage name -> the Sales Book's max_days of the stage it maps onto."""
    book = load_salesbook(REPO / "config" / "salesbooks" / f"{tenant['salesbook']}.yaml")
    days = {s.key: s.max_days for s in book.stages if s.max_days}
    return {crm: days[key] for stages in tenant["mapping"]["stages"].values()
            for crm, key in stages.items() if key in days}


def _rotting(fake: FakePipedrive) -> dict[str, int | None]:
    return {s["name"]: s["days_to_rotten"] if s["is_deal_rot_enabled"] else None
            for s in fake.dataset.stages}


@pytest.fixture
def pipedrive():
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN) as server:
        yield server


def test_pipedrive_rotting_days_are_planned_applied_once_and_reverted(
        tmp_path: Path, db_url: str, pipedrive: FakePipedrive) -> None:
    tenant = _pipedrive_tenant(pipedrive.base_url)
    wanted = _max_days(tenant)
    assert wanted and all(v is None for v in _rotting(pipedrive).values())
    config = write_config(tmp_path, db_url, {"nw": tenant})

    drift = run_syncd(config, "drift", "nw", "--format", "json", env=ENV)
    assert drift.returncode == 0, drift.stderr
    rows = json.loads(drift.stdout)
    rotting = [r for r in rows if r["change"] and r["change"]["kind"] == "stage_rotting"]
    assert {r["change"]["label"].split(" / ")[1] for r in rotting} == set(wanted)
    assert all(r["automatic"] for r in rotting)
    assert any(not r["automatic"] and "loss reasons" in r["what"] for r in rows)

    plan = run_syncd(config, "plan", "nw", env=ENV)
    assert plan.returncode == 0, plan.stderr
    assert f"{len(wanted)} change(s) to apply" in plan.stdout

    refused = run_syncd(config, "apply", "nw", env=ENV)  # no terminal, no --yes: aborted
    assert _rotting(pipedrive) == {name: None for name in _rotting(pipedrive)}
    assert "made" not in refused.stdout

    applied = run_syncd(config, "apply", "nw", "--yes", env=ENV)
    assert applied.returncode == 0, applied.stderr
    after = _rotting(pipedrive)
    assert {name: after[name] for name in wanted} == wanted
    assert all(after[n] is None for n in after if n not in wanted)
    database = store.Database(db_url)
    recorded = database.session
    with recorded() as session:
        rows_stored = session.query(store.GateChangeRow).all()
        assert {(r.kind, r.before, r.after) for r in rows_stored} == {
            ("stage_rotting", None, days) for days in wanted.values()}

    writes = len(pipedrive.writes)
    again = run_syncd(config, "apply", "nw", "--yes", env=ENV)  # idempotent
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert len(pipedrive.writes) == writes
    assert "0 change(s) to apply" in run_syncd(config, "plan", "nw", env=ENV).stdout

    reverted = run_syncd(config, "apply", "nw", "--last", "--yes", env=ENV)
    assert reverted.returncode == 0, reverted.stderr
    assert all(v is None for v in _rotting(pipedrive).values())
    listed = run_syncd(config, "apply", "nw", "--list", env=ENV).stdout
    assert listed.count("reverted") == len(wanted)
    assert "nothing to change" in run_syncd(config, "apply", "nw", "--last", "--yes",
                                            env=ENV).stdout


def test_amocrm_loss_reasons_are_added_and_one_reverted_by_id(tmp_path: Path) -> None:
    example = yaml.safe_load((REPO / "config" / "tenants" / "amocrm.yaml.example")
                             .read_text("utf-8"))
    with FakeAmoCRM(amo_dataset(datetime.now(UTC))) as fake:
        example["connection"] = {"base_url": fake.base_url,
                                 "long_lived_token": {"$env": "AMO_TOKEN"}}
        example["language"] = "ru"
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}",
                              {"amo": example})
        before = {r["name"] for r in fake.dataset.loss_reasons}
        plan = run_syncd(config, "plan", "amo", env=ENV)
        assert plan.returncode == 0, plan.stderr
        titles = [line.split("'")[1] for line in plan.stdout.splitlines()
                  if line.startswith("loss_reason_add")]
        assert titles and not set(titles) & before
        drift = run_syncd(config, "drift", "amo", env=ENV).stdout
        assert "нет причины отказа" in drift  # the tenant's language

        required_before = _required_statuses(fake)
        assert "field_required 'Estimate link'" in plan.stdout
        applied = run_syncd(config, "apply", "amo", "-y", env=ENV)
        assert applied.returncode == 0, applied.stderr
        assert {r["name"] for r in fake.dataset.loss_reasons} == before | set(titles)
        required = _required_statuses(fake)
        # required to enter the stages mapped after the estimate stage, not before it
        pipelines = {p["id"]: {st["id"]: st["name"] for st in p["_embedded"]["statuses"]}
                     for p in fake.dataset.pipelines}
        names = {pipelines[r["pipeline_id"]][r["status_id"]] for r in required["Estimate link"]}
        stages = example["mapping"]["stages"]
        later = {"negotiation", "contract", "in_progress", "final_invoice", "warranty"}
        mapped_later = {crm for p in stages.values() for crm, key in p.items() if key in later}
        assert names == mapped_later and required["Estimate link"] != []
        assert "nothing to change" in run_syncd(config, "apply", "amo", "-y", env=ENV).stdout

        first = next(line.split()[1].rstrip(":") for line in applied.stdout.splitlines()
                     if line.startswith("applied"))
        undo = run_syncd(config, "apply", "amo", "--revert", first, "-y", env=ENV)
        assert undo.returncode == 0, undo.stderr
        assert {r["name"] for r in fake.dataset.loss_reasons} == before | set(titles[1:])
        unknown = run_syncd(config, "apply", "amo", "--revert", first, "-y", env=ENV)
        assert unknown.returncode == 2 and f"gate change {first}" in unknown.stderr

        last = run_syncd(config, "apply", "amo", "--last", "-y", env=ENV)
        assert last.returncode == 0, last.stderr
        assert {r["name"] for r in fake.dataset.loss_reasons} == before
        assert _required_statuses(fake) == required_before


def _required_statuses(fake: FakeAmoCRM) -> dict[str, list]:
    return {d["name"]: d.get("required_statuses") or [] for d in fake.custom_fields["leads"]}


def test_a_connector_without_gates_is_a_clear_error(tmp_path: Path) -> None:
    import copy

    from test_tabular_export import sample

    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    result = run_syncd(config, "drift", "csv")
    assert result.returncode == 2  # docs/cli.md: the command does not apply to this tenant
    said = " ".join(result.stderr.split())
    assert "tenant csv is read from an export or a sheet (spreadsheet)" in said
    assert "so there are no CRM gates to compare with the Sales Book" in said


def test_first_report_opens_with_the_onboarding_summary(
        tmp_path: Path, db_url: str, pipedrive: FakePipedrive) -> None:
    tenant = _pipedrive_tenant(pipedrive.base_url)
    tenant["language"] = "ru"
    config = write_config(tmp_path, db_url, {"nw": tenant})
    (tmp_path / "tenants" / "nw.yaml").write_text(
        (tmp_path / "tenants" / "nw.yaml").read_text("utf-8")
        + "# TODO(syncd init) [mapping.stages.Partners.Intro] decide\n", "utf-8")
    assert run_syncd(config, "sync", "nw", "--no-write", env=ENV).returncode == 0
    report = json.loads(run_syncd(config, "report", "nw", "--format", "json").stdout)
    summary = report["onboarding"]
    coverage = summary["coverage"]
    assert coverage["deals"] == report["counts"]["deals"] > 0
    assert coverage["open"] + coverage["won"] + coverage["lost"] == coverage["deals"]
    assert 0 < coverage["share_with_activities"] <= 1
    assert {"name": "Partners / Intro", "count": 3} in summary["gaps"]["stages"]
    assert summary["gaps"]["todos"][0]["key"] == "mapping.stages.Partners.Intro"
    rules = {v["rule"] for v in report["violations"]}
    assert len(summary["findings"]) == min(5, len(rules))
    assert summary["headline"].startswith("Первый аудит nw")
    page = run_syncd(config, "report", "nw", "--format", "html").stdout
    assert page.index('id="onboarding"') < page.index('id="rules"')  # the rules section
    assert "Первый аудит: итоги" in page and "Partners / Intro (3)" in page

    assert run_syncd(config, "sync", "nw", "--no-write", env=ENV).returncode == 0
    later = json.loads(run_syncd(config, "report", "nw", "--format", "json").stdout)
    assert "onboarding" not in later  # two passes: no longer new
    asked = run_syncd(config, "report", "nw", "--format", "json", "--onboarding").stdout
    assert json.loads(asked)["onboarding"]["coverage"]["deals"] == coverage["deals"]


def test_bitrix24_drift_is_read_only_and_flags_a_closing_stage_mapped_as_work(
        tmp_path: Path) -> None:
    from syncd_fakes.bitrix24.sample import sample_dataset as b24_dataset
    from syncd_fakes.bitrix24.server import FakeBitrix24

    tenant = yaml.safe_load((REPO / "config" / "tenants" / "bitrix24.yaml.example")
                            .read_text("utf-8"))
    with FakeBitrix24(b24_dataset(datetime.now(UTC)), webhook_code="gates77b24hook",
                      rate=50) as fake:
        tenant["connection"].update({"base_url": fake.base_url, "bucket_rate": 50,
                                     "webhook_url": {"$env": "GATES_B24_WEBHOOK"}})
        tenant["mapping"]["stages"]["Projects"]["Deal won"] = "warranty"
        config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"b24": tenant})
        env = {"GATES_B24_WEBHOOK": fake.webhook_url}
        drift = run_syncd(config, "drift", "b24", "--format", "json", env=env)
        assert drift.returncode == 0, drift.stderr
        rows = json.loads(drift.stdout)
        closing = [r for r in rows if "closes the deal" in r["what"]]
        assert len(closing) == 1 and "'Projects / Deal won'" in closing[0]["what"]
        assert closing[0]["manual"] == "mapping.stages.Projects.Deal won: ignore"
        assert not any(r["automatic"] for r in rows)
        applied = run_syncd(config, "apply", "b24", "--yes", env=env)
        assert applied.returncode == 0 and "nothing to change" in applied.stdout
