"""End to end: `syncd sync` as a subprocess against the fake amoCRM over HTTP.

The fake enforces amoCRM's 7 requests/second, single-use refresh tokens and expiring
access tokens. Covered: the audit and the write-back a user sees in the CRM, a quiet second
pass, THE token rotation race (two processes refreshing the same tenant at once), a dead
refresh token failing only its tenant, and the HTML ban stopping a tenant without retries.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from support import REPO, report_json, run_syncd, syncd_command, write_config
from syncd_fakes.amocrm.sample import sample_dataset
from syncd_fakes.amocrm.server import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEMO_LONG_LIVED_TOKEN,
    REDIRECT_URI,
    FakeAmoCRM,
    Fault,
)

from syncd import store

EXAMPLE = REPO / "config" / "tenants" / "amocrm.yaml.example"
ENV = {"AMO_TOKEN": DEMO_LONG_LIVED_TOKEN, "AMO_SECRET": CLIENT_SECRET,
       "SYNCD_SECRET_KEY": Fernet.generate_key().decode()}
#: amoCRM's real limit; the first test keeps to it over real time.
AMO_RATE = 7
#: Test speed where the limit is not the point: the fake and the tenant agree on more.
FAST_RATE = 50


def tenant(base_url: str, rate_limit: int = FAST_RATE, **connection: Any) -> dict[str, Any]:
    """The shipped example tenant pointed at the fake (long-lived token unless OAuth)."""
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["connection"] = {"base_url": base_url, "rate_limit": rate_limit, **(connection or {
        "long_lived_token": {"$env": "AMO_TOKEN"}})}
    return data


def oauth_tenant(base_url: str, seed_env: str, grant: str = "authorization_code",
                 ) -> dict[str, Any]:
    return tenant(base_url, client_id=CLIENT_ID, client_secret={"$env": "AMO_SECRET"},
                  redirect_uri=REDIRECT_URI, **{grant: {"$env": seed_env}})


@pytest.fixture
def fake(request: pytest.FixtureRequest):
    rate = getattr(request, "param", FAST_RATE)
    with FakeAmoCRM(sample_dataset(datetime.now(UTC)), rate_limit=rate) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("fake", [AMO_RATE], indirect=True)
def test_sync_audits_and_writes_back_under_the_rate_limit(tmp_path: Path, db_url: str,
                                                          fake: FakeAmoCRM) -> None:
    config = write_config(tmp_path, db_url, {"northwind": tenant(fake.base_url, AMO_RATE)})
    result = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)[0]["summary"]
    database = store.Database(db_url)
    with database.session() as session:
        deals = session.scalar(select(func.count()).select_from(store.DealRow))
        history = session.scalar(select(func.count()).select_from(store.StageChangeRow))
    assert deals == len(fake.leads.rows) and history == len(fake.events)
    assert fake.rate_limited_count == 0, "the client stays under 7 requests per second"

    report = report_json(config, "northwind", env=ENV)
    rules = report["violations_by_rule"]
    for rule in ("missing_action", "stalled", "no_next_step", "bad_loss_reason",
                 "no_lead_source", "no_contact", "won_no_followup", "skipped_stage"):
        assert rules.get(rule, 0) > 0, (rule, rules)
    unmapped = {v["crm_stage"] for v in report["violations"] if v["rule"] == "unmapped_stage"}
    assert "Partners / Intro" in unmapped
    karma = {row["company_id"]: row["karma"] for row in report["client_karma"]}
    assert karma and summary["writes"]["fields_written"] > 0
    for company_id, value in karma.items():
        written = fake.field_value("companies", int(company_id), "syncd karma")
        assert float(written) == pytest.approx(value, abs=0.01), company_id
    flagged = {v["deal_id"] for v in report["violations"] if v["deal_id"]}
    for deal_id in flagged:
        assert fake.field_value("leads", int(deal_id), "syncd violations").startswith(
            "Sales Book:")
    created = [f for fields in fake.custom_fields.values() for f in fields
               if f["name"].startswith("syncd ")]
    assert len(created) == 2 and all(f["is_api_only"] for f in created), \
        "created fields are read-only in the amoCRM UI"
    patches = [body for method, _, body in fake.writes if method == "PATCH"]
    assert all(len(body) <= 50 for body in patches)
    assert sum(len(body) for body in patches) == summary["writes"]["fields_written"]

    writes_before, requests_before = len(fake.writes), len(fake.requests)
    second = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert second.returncode == 0, second.stderr
    quiet = json.loads(second.stdout)[0]["summary"]
    assert len(fake.writes) == writes_before, "nothing changed: nothing written"
    assert quiet["changed"].get("deals", 0) == 0 and quiet["changed"].get("companies", 0) == 0, \
        "our own writes do not come back as changes"
    assert quiet["violations_opened"] == 0
    assert len(fake.requests) - requests_before <= 20

    moved = next(i for i, r in fake.leads.rows.items() if r["status_id"] == 40001)
    gone = next(i for i, r in fake.leads.rows.items() if r["status_id"] == 40002)
    fake.edit("leads", moved, status_id=40002)
    fake.delete_lead(gone)
    third = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout)[0]["summary"]["changed"]["deals"] >= 1
    with database.session() as session:
        stage = session.scalar(select(store.DealRow.stage_external_id).where(
            store.DealRow.external_id == str(moved)))
        deleted = session.scalar(select(store.DealRow.deleted).where(
            store.DealRow.external_id == str(gone)))
        moves = session.scalars(select(store.StageChangeRow.to_stage_external_id).where(
            store.StageChangeRow.deal_external_id == str(moved))).all()
    assert stage == "3001:40002" and "3001:40002" in moves, "the move and its history"
    assert deleted is True, "a lead deleted in amoCRM is marked deleted"


def _start(config: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(syncd_command(config, *args), env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO)


def test_processes_refreshing_at_once_keep_the_tenant_connected(
        tmp_path: Path, db_url: str, fake: FakeAmoCRM) -> None:
    """Two `syncd sync` and a `syncd inspect` of one tenant start together with an access
    token amoCRM refuses. The tenant lease lets one sync run (the other is told the tenant
    is being synced); the running sync and the inspect both need a refresh: exactly one
    refresh happens, both succeed, and the token chain stays alive."""
    env = {**ENV, "AMO_CODE": fake.issue_code()}
    config = write_config(tmp_path, db_url, {"northwind": oauth_tenant(fake.base_url,
                                                                       "AMO_CODE")})
    first = run_syncd(config, "sync", "--no-write", env=env)
    assert first.returncode == 0, first.stderr
    assert fake.token_exchanges == [("authorization_code", True)]
    assert run_syncd(config, "sync", "--no-write", env=env).returncode == 0
    assert fake.token_exchanges == [("authorization_code", True)], "the code is used once"

    fake.expire_access_tokens()  # every process will hold an access token amoCRM refuses
    expired = set(fake.access_tokens)
    seen = len(fake.requests)
    hold = Fault("block", method="POST", path="/oauth2/access_token")
    fake.faults = [hold]
    sync = ("sync", "--format", "json", "--no-write")
    processes = [_start(config, env, *sync), _start(config, env, "inspect", "northwind"),
                 _start(config, env, *sync)]
    try:
        assert hold.reached.wait(120), "nobody tried to refresh"
        # The winner is inside the refresh, holding the tenant's lock. On PostgreSQL (a row
        # lock) the other one runs into the refused token too and queues on that lock; on
        # SQLite the lock is the database write lock, so it may wait before its request.
        overlapped = not db_url.startswith("postgresql") or fake.wait_for(
            lambda: sum(r.token in expired for r in fake.requests[seen:]) >= 2, timeout=20)
        hold.release.set()
        outputs = [p.communicate(timeout=240) for p in processes]
    finally:
        hold.release.set()
        for process in processes:
            if process.poll() is None:
                process.kill()
    (out_a, err_a), (found, err_i), (out_b, err_b) = outputs
    assert processes[1].returncode == 0, err_i[-2000:]
    assert [p["name"] for p in json.loads(found)["pipelines"]] == ["Projects", "Partners"]
    synced = 0
    for process, stdout, stderr in ((processes[0], out_a, err_a), (processes[2], out_b, err_b)):
        outcome = json.loads(stdout)[0]
        if outcome["ok"]:
            assert process.returncode == 0, stderr[-2000:]
            synced += 1
        else:
            assert "is being synced" in outcome["error"], outcome["error"]
    assert synced >= 1
    assert overlapped, "both processes met the expired token while one was refreshing"
    assert fake.refresh_grants() == [True], "exactly one refresh, and amoCRM accepted it"
    assert fake.chain_alive(), "the newest refresh token is still usable"

    fake.faults = None
    fake.expire_access_tokens()
    third = run_syncd(config, "sync", "--no-write", env=env)
    assert third.returncode == 0, third.stderr
    assert fake.refresh_grants() == [True, True], "the stored chain refreshes again"
    _no_token_in_plain_text(db_url, fake, first.stdout + first.stderr + third.stdout
                            + third.stderr + "".join(o + e for o, e in outputs))


def _no_token_in_plain_text(db_url: str, fake: FakeAmoCRM, output: str) -> None:
    secrets = [*fake.access_tokens, *fake.refresh_tokens, CLIENT_SECRET]
    database = store.Database(db_url)
    with database.engine.connect() as conn:
        for table in store.Base.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                text = repr(tuple(row))
                assert not any(s in text for s in secrets), table.name
    assert not any(s in output for s in secrets)


def test_a_dead_refresh_token_fails_only_that_tenant_with_how_to_reconnect(
        tmp_path: Path, db_url: str, fake: FakeAmoCRM) -> None:
    env = {**ENV, "DEAD_CODE": fake.issue_code()}
    config = write_config(tmp_path, db_url, {
        "dead": oauth_tenant(fake.base_url, "DEAD_CODE"),
        "northwind": tenant(fake.base_url)})
    assert run_syncd(config, "sync", "--no-write", env=env).returncode == 0
    fake.revoke_refresh_tokens()  # e.g. three months without a refresh
    fake.expire_access_tokens()
    result = run_syncd(config, "sync", "--format", "json", "--no-write", env=env)
    assert result.returncode == 1
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["northwind"]["ok"] is True
    assert outcomes["dead"]["ok"] is False
    assert "AuthError" in outcomes["dead"]["error"]
    assert "authorize the integration again" in outcomes["dead"]["error"]
    assert fake.refresh_grants() == [False], "a refused refresh is not retried"

    again = run_syncd(config, "sync", "--format", "json", "--no-write", env=env)
    assert {o["tenant"]: o["ok"] for o in json.loads(again.stdout)} == {
        "dead": False, "northwind": True}
    assert fake.refresh_grants() == [False], "a disconnected tenant does not call amoCRM"

    env["DEAD_CODE"] = fake.issue_code()  # the admin reconnected: a new code in the file
    healed = run_syncd(config, "sync", "--format", "json", "--no-write", env=env)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    _no_token_in_plain_text(db_url, fake, result.stdout + result.stderr + again.stdout
                            + again.stderr)


def test_a_refused_seed_names_what_to_do(tmp_path: Path, db_url: str,
                                         fake: FakeAmoCRM) -> None:
    env = {**ENV, "OLD_CODE": "code-expired-long-ago-77"}
    config = write_config(tmp_path, db_url, {"late": oauth_tenant(fake.base_url,
                                                                  "OLD_CODE")})
    result = run_syncd(config, "sync", "--format", "json", "--no-write", env=env)
    assert result.returncode == 1
    error = json.loads(result.stdout)[0]["error"]
    assert "AuthError" in error and "authorization codes live about 20 minutes" in error
    assert "code-expired-long-ago-77" not in result.stdout + result.stderr


def test_the_html_ban_stops_the_tenant_and_is_never_retried(
        tmp_path: Path, db_url: str, fake: FakeAmoCRM) -> None:
    config = write_config(tmp_path, db_url, {"northwind": tenant(fake.base_url)})
    fake.faults = [Fault("429", method="GET", path="/api/v4/companies", times=2),
                   Fault("503", method="GET", path="/api/v4/contacts", times=1),
                   Fault("empty204", method="GET", path="/api/v4/tasks", times=1)]
    retried = run_syncd(config, "sync", "--no-write", env=ENV)
    assert retried.returncode == 0, retried.stderr
    fake.faults = [Fault("html403", method="GET", path="/api/v4/leads", times=50)]
    seen = len(fake.requests)
    blocked = run_syncd(config, "sync", "--no-write", "--format", "json", env=ENV)
    assert blocked.returncode == 1
    error = json.loads(blocked.stdout)[0]["error"]
    assert "BlockedError" in error and "banned" in error
    hits = [r for r in fake.requests[seen:] if r.path.startswith("/api/v4/leads")]
    assert len(hits) == 1, "a ban page is never retried"
    assert fake.requests[-1] is hits[0], "and nothing is called after it"
