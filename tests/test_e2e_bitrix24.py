"""End to end: `syncd sync` as a subprocess against the fake Bitrix24 portal over HTTP.

Webhook and OAuth tenants; the stored result, the report, and what the portal received;
a second pass with nothing changed writes nothing; OAuth tokens rotate through the store.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from support import REPO, report_json, run_syncd, write_config
from syncd_fakes.bitrix24.sample import sample_dataset
from syncd_fakes.bitrix24.server import FakeBitrix24

from syncd import store

EXAMPLE = REPO / "config" / "tenants" / "bitrix24.yaml.example"
CODE = "b24e2ehook77c1d9"
#: Test speed: the fake and the tenant agree on a faster drain than the default 2/s.
RATE = 25


def bitrix_tenant(fake: FakeBitrix24, **connection: Any) -> dict[str, Any]:
    tenant = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    tenant["connection"].update({"base_url": fake.base_url, "bucket_rate": RATE,
                                 "webhook_url": {"$env": "VOLGA_BITRIX24_WEBHOOK"}})
    tenant["connection"].update(connection)
    return tenant


@pytest.fixture
def fake():
    dataset = sample_dataset(datetime.now(UTC))
    with FakeBitrix24(dataset, webhook_code=CODE, rate=RATE) as server:
        yield server


@pytest.fixture
def env(fake: FakeBitrix24) -> dict[str, str]:
    return {"VOLGA_BITRIX24_WEBHOOK": fake.webhook_url}


@pytest.fixture
def config(tmp_path: Path, db_url: str, fake: FakeBitrix24) -> Path:
    return write_config(tmp_path, db_url, {"volga": bitrix_tenant(fake)})


def _uf(fake: FakeBitrix24, entity: str, label: str) -> str:
    return next(code for code, spec in fake.dataset.fields[entity].items()
                if spec.get("formLabel") == label)


def test_sync_stores_audits_and_writes_back(config: Path, db_url: str, fake: FakeBitrix24,
                                            env: dict[str, str]) -> None:
    result = run_syncd(config, "sync", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)[0]["summary"]

    database = store.Database(db_url)
    with database.session() as session:
        deals = session.scalar(select(func.count()).select_from(store.DealRow))
        companies = session.scalar(select(func.count()).select_from(store.CompanyRow))
        managers = dict(session.execute(select(store.UserRow.external_id,
                                               store.UserRow.manager_external_id)).all())
        history = session.scalar(select(func.count()).select_from(store.StageChangeRow))
    assert deals == fake.dataset.deals.count() == summary["pulled"]["deals"]
    assert companies == fake.dataset.companies.count()
    assert history == fake.dataset.history.count()
    # Department heads: Anna heads "Sales"; Dmitry heads "Key accounts" under it.
    assert managers == {"1": None, "2": "1", "3": "1", "4": "1"}

    report = report_json(config, "volga", env=env)
    rules = report["violations_by_rule"]
    for rule in ("no_lead_source", "bad_loss_reason", "unmapped_stage", "no_next_step"):
        assert rules.get(rule, 0) > 0, (rule, rules)
    unmapped = [v["crm_stage"] for v in report["violations"] if v["rule"] == "unmapped_stage"]
    assert unmapped == ["Partners / Intro"], "closed deals count at the stage they left"

    karma_code = _uf(fake, "company", "syncd karma")
    karma = {row["company_id"]: row["karma"] for row in report["client_karma"]}
    assert karma, "some companies have won deals, so karma"
    for company_id, value in karma.items():
        written = fake.record("company", int(company_id))[karma_code]
        assert float(written) == pytest.approx(value, abs=0.01)
    text_code = _uf(fake, "deal", "syncd violations")
    flagged = {v["deal_id"] for v in report["violations"] if v["deal_id"]}
    assert flagged
    for deal_id in flagged:
        assert fake.record("deal", int(deal_id))[text_code].startswith("Sales Book:")
    updates = Counter(m for _, m, _ in fake.writes if m.endswith(".update"))
    batches = [r for r in fake.requests if any(c.endswith(".update") for c in r[1])]
    assert sum(updates.values()) == sum(len(c) - 1 for _, c in batches)
    for _, commands in batches:  # updates travel in batches, each with its read-back
        assert len(commands) <= 50 and commands[-1].endswith(".list"), commands
    assert len(batches) <= -(-sum(updates.values()) // 49) + 1, \
        "the core hands over 49 writes at a time (field_batch_size)"
    assert fake.limit_errors == 0


def test_second_pass_with_nothing_changed_is_cheap_and_writes_nothing(
        config: Path, fake: FakeBitrix24, env: dict[str, str]) -> None:
    first = run_syncd(config, "sync", env=env)
    assert first.returncode == 0, first.stderr
    writes = len(fake.writes)
    before = len(fake.requests)

    second = run_syncd(config, "sync", "--format", "json", env=env)
    assert second.returncode == 0, second.stderr
    assert len(fake.writes) == writes, "nothing changed: nothing written"
    summary = json.loads(second.stdout)[0]["summary"]
    assert summary["changed"].get("deals", 0) == 0, "our own writes are not changes"
    assert summary["violations_opened"] == 0
    requests = fake.requests[before:]
    lists = Counter(c for _, commands in requests for c in set(commands)
                    if c.startswith("crm.") and c.endswith(".list"))
    # One batch request per entity stream (users..activities), nothing else per record.
    assert len(requests) <= 12, [r[0] for r in requests]
    assert lists["crm.deal.list"] == 1


def test_a_change_in_the_portal_is_picked_up(config: Path, db_url: str, fake: FakeBitrix24,
                                             env: dict[str, str]) -> None:
    assert run_syncd(config, "sync", env=env).returncode == 0
    report = report_json(config, "volga", env=env)
    victim = next(v["deal_id"] for v in report["violations"] if v["rule"] == "no_lead_source")
    fake.edit("deal", int(victim), UF_CRM_LEAD_SRC="41")
    moved = next(i for i in fake.dataset.deals.ids_after(0)
                 if fake.record("deal", i)["STAGE_ID"] == "NEW")
    fake.move_deal(moved, "PREPARATION")

    result = run_syncd(config, "sync", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)[0]["summary"]
    assert summary["changed"]["deals"] >= 2
    assert summary["pulled"]["stage_history"] == 1, "history is read after its cursor"
    after = report_json(config, "volga", env=env)
    assert not any(v["deal_id"] == victim and v["rule"] == "no_lead_source"
                   for v in after["violations"])
    database = store.Database(db_url)
    with database.session() as session:
        latest = session.execute(
            select(store.StageChangeRow.from_stage_external_id,
                   store.StageChangeRow.to_stage_external_id)
            .where(store.StageChangeRow.deal_external_id == str(moved))
            .order_by(store.StageChangeRow.at.desc()).limit(1)).one()
    assert tuple(latest) == ("NEW", "PREPARATION"), "the stage it moved from was looked up"


def test_oauth_tenant_rotates_tokens_through_the_store(tmp_path: Path, db_url: str,
                                                       fake: FakeBitrix24) -> None:
    seed = fake.issue_refresh_token()
    tenant = bitrix_tenant(fake, client_id=fake.client_id,
                           client_secret={"$env": "VOLGA_B24_SECRET"},
                           refresh_token={"$env": "VOLGA_B24_REFRESH"},
                           oauth_url=fake.oauth_url)
    del tenant["connection"]["webhook_url"]
    config = write_config(tmp_path, db_url, {"volga": tenant})
    env = {"VOLGA_B24_SECRET": fake.client_secret, "VOLGA_B24_REFRESH": seed,
           "SYNCD_SECRET_KEY": Fernet.generate_key().decode()}

    first = run_syncd(config, "sync", env=env)
    assert first.returncode == 0, first.stderr
    assert fake.refreshes == 1, "the seed was exchanged once"
    fake.expire_tokens()
    second = run_syncd(config, "sync", env=env)
    assert second.returncode == 0, second.stderr
    assert fake.refreshes == 2, "one refresh for the expired token, none on a valid one"
    assert seed not in fake.refresh_tokens, "the seed is spent; the stored pair lives on"
    third = run_syncd(config, "sync", env=env)
    assert third.returncode == 0, third.stderr
    assert fake.refreshes == 2
    issued = [*fake.access_tokens, *fake.refresh_tokens, seed, fake.client_secret]
    for output in (first, second, third):
        for secret in issued:
            assert secret not in output.stdout + output.stderr
    database = store.Database(db_url)
    with database.session() as session:
        for table in store.Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                assert not any(secret in repr(row) for secret in issued), table.name


def test_the_webhook_code_never_reaches_logs_reports_or_the_database(
        config: Path, db_url: str, fake: FakeBitrix24, env: dict[str, str]) -> None:
    fake.faults = []
    from syncd_fakes.bitrix24.server import Fault

    fake.faults = [Fault("500", method="crm.deal.list", times=10)]  # > the 8 attempts
    failed = run_syncd(config, "sync", env={**env, "SYNCD_RETRY_WAIT_SCALE": "0"})
    assert failed.returncode != 0
    assert "crm.deal.list" in failed.stderr or "HTTP 500" in failed.stderr, failed.stderr
    fake.faults = None
    ok = run_syncd(config, "sync", env=env)
    assert ok.returncode == 0, ok.stderr
    report = run_syncd(config, "report", "volga", "--format", "json", env=env)
    for output in (failed.stdout, failed.stderr, ok.stdout, ok.stderr, report.stdout):
        assert CODE not in output
    database = store.Database(db_url)
    with database.session() as session:
        for table in store.Base.metadata.sorted_tables:
            for row in session.execute(select(table)).all():
                assert CODE not in repr(row), table.name


def test_a_broken_answer_keeps_stored_data_and_cursors(config: Path, db_url: str,
                                                       fake: FakeBitrix24,
                                                       env: dict[str, str]) -> None:
    from syncd_fakes.bitrix24.server import Fault

    assert run_syncd(config, "sync", env=env).returncode == 0
    database = store.Database(db_url)

    def state() -> tuple[Any, ...]:
        with database.session() as session:
            cursors = dict(session.execute(select(store.SyncCursorRow.stream,
                                                  store.SyncCursorRow.value)).all())
            deals = session.scalar(select(func.count()).select_from(store.DealRow))
            title = session.scalar(select(store.DealRow.title).where(
                store.DealRow.external_id == "5"))
        return cursors["deals"], cursors["stage_history"], deals, title

    before = state()
    fake.edit("deal", 5, TITLE="Changed while broken")
    # A cut body is retried (weather): it breaks the pass only when all 8 attempts are cut.
    fake.faults = [Fault("truncated", method="crm.deal.list", times=8)]
    broken = run_syncd(config, "sync", env={**env, "SYNCD_RETRY_WAIT_SCALE": "0"})
    assert broken.returncode != 0
    assert "not valid JSON" in broken.stderr and "crm.deal.list" not in broken.stdout
    assert state() == before, "no deal stored, the deals cursor did not move"
    fake.faults = None
    fixed = run_syncd(config, "sync", "--format", "json", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)[0]["summary"]["changed"]["deals"] >= 1


def test_inspect_lists_stages_with_semantics_loss_reasons_and_managers(
        config: Path, env: dict[str, str]) -> None:
    result = run_syncd(config, "inspect", "volga", env=env)
    assert result.returncode == 0, result.stderr
    described = json.loads(result.stdout)
    projects = next(p for p in described["pipelines"] if p["id"] == "0")
    semantics = {s["name"]: s["semantics"] for s in projects["stages"]}
    assert semantics["Briefing"] == "in progress" and semantics["Deal won"] == "success"
    assert semantics["Too expensive"] == semantics["Analysis of failure"] == "failure"
    assert {"Too expensive", "Chose competitor", "No budget"} <= set(described["loss_reasons"])
    assert "Lead source" in described["fields"]["deal"]
    assert {u["id"]: u["manager_id"] for u in described["users"]}["2"] == "1"
