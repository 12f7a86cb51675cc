"""Crash tests for Bitrix24: `syncd sync` is SIGKILLed while a write-back batch is in flight.

The fake holds the batch until the client is dead, then applies it: the portal did the
writes, syncd never heard back. The rerun must neither repeat a write nor lose one, and
must not create a to-do twice. A first pass killed while pulling reruns to the stored
state (stage history, karma ledgers) of a pass that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ledgers import karma_ledger, stage_history
from support import report_json, run_syncd, syncd_command, write_config
from syncd_fakes.bitrix24.sample import sample_dataset
from syncd_fakes.bitrix24.server import FakeBitrix24, Fault
from test_e2e_bitrix24 import CODE, RATE, bitrix_tenant


@pytest.fixture
def fake():
    with FakeBitrix24(sample_dataset(datetime.now(UTC)), webhook_code=CODE,
                      rate=RATE) as server:
        yield server


def _env(fake: FakeBitrix24) -> dict[str, str]:
    return {**os.environ, "VOLGA_BITRIX24_WEBHOOK": fake.webhook_url}


def _kill_when_reached(config: Path, fault: Fault, env: dict[str, str], *args: str) -> None:
    process = subprocess.Popen(syncd_command(config, "sync", *args), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert fault.reached.wait(timeout=120), "the pass never reached the faulted batch"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        fault.release.set()  # the portal now applies the batch nobody will hear about
    assert fault.finished.wait(timeout=30)


def _updates(fake: FakeBitrix24) -> Counter:
    return Counter((method, params["id"], json.dumps(params["fields"], sort_keys=True))
                   for _, method, params in fake.writes if method.endswith(".update"))


def test_killed_during_a_field_batch(tmp_path: Path, db_url: str, fake: FakeBitrix24) -> None:
    config = write_config(tmp_path, db_url, {"volga": bitrix_tenant(fake)})
    env = _env(fake)
    fault = Fault("block", method="crm.deal.update")
    fake.faults = [fault]
    _kill_when_reached(config, fault, env)
    fake.faults = None
    applied = _updates(fake)
    assert any(m == "crm.deal.update" for m, _, _ in applied), "the held batch was applied"

    rerun = run_syncd(config, "sync", "--format", "json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    repeated = {key: n for key, n in _updates(fake).items() if n > 1}
    assert repeated == {}, f"a write was repeated with the same value: {repeated}"

    report = report_json(config, "volga", env=env)
    karma_code = next(c for c, s in fake.dataset.fields["company"].items()
                      if s.get("formLabel") == "syncd karma")
    for row in report["client_karma"]:
        written = fake.record("company", int(row["company_id"]))[karma_code]
        assert float(written) == pytest.approx(row["karma"], abs=0.01), row
    text_code = next(c for c, s in fake.dataset.fields["deal"].items()
                     if s.get("formLabel") == "syncd violations")
    for deal_id in {v["deal_id"] for v in report["violations"] if v["deal_id"]}:
        assert fake.record("deal", int(deal_id))[text_code].startswith("Sales Book:")

    writes = len(fake.writes)
    third = run_syncd(config, "sync", env=env)
    assert third.returncode == 0, third.stderr
    assert len(fake.writes) == writes, "a converged pass writes nothing"


def test_killed_during_a_todo_batch(tmp_path: Path, db_url: str, fake: FakeBitrix24) -> None:
    config = write_config(tmp_path, db_url, {"volga": bitrix_tenant(fake)})
    env = _env(fake)
    baseline = run_syncd(config, "sync", env=env)
    assert baseline.returncode == 0, baseline.stderr
    assert not any(m == "crm.activity.todo.add" for _, m, _ in fake.writes), \
        "the first audit is a baseline: no tasks"
    for number in range(4):  # four new open deals with no next step: new violations
        fake.add_deal(title=f"New lead {number}", owner=2, company=3, contact=4,
                      UF_CRM_LEAD_SRC="41")
    fault = Fault("block", method="crm.activity.todo.add")
    fake.faults = [fault]
    _kill_when_reached(config, fault, env)
    fake.faults = None
    created_before_rerun = sum(1 for _, m, _ in fake.writes if m == "crm.activity.todo.add")
    assert created_before_rerun >= 4

    rerun = run_syncd(config, "sync", "--format", "json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    markers: Counter[str] = Counter()
    for activity_id in fake.dataset.activities.ids_after(0):
        text = fake.record("activity", activity_id).get("DESCRIPTION") or ""
        for token in text.split("[")[1:]:
            if token.startswith("syncd:v"):
                markers[token.split("]")[0]] += 1
    assert markers and max(markers.values()) == 1, f"duplicate to-dos: {markers}"
    adds = sum(1 for _, m, _ in fake.writes if m == "crm.activity.todo.add")
    assert adds == len(markers), "the to-dos created before the kill were not re-created"
    summary = json.loads(rerun.stdout)[0]["summary"]
    assert summary["writes"]["tasks_recovered"] == created_before_rerun


@pytest.mark.slow
@pytest.mark.parametrize("method", ["crm.stagehistory.list", "crm.activity.list"],
                         ids=["stage_history", "activities"])
def test_a_first_pass_killed_while_pulling_reruns_to_the_uninterrupted_state(
        tmp_path: Path, db_url: str, fake: FakeBitrix24, method: str) -> None:
    env = _env(fake)
    clean_url = f"sqlite:///{tmp_path / 'clean' / 'syncd.db'}"
    clean = write_config(tmp_path / "clean", clean_url, {"volga": bitrix_tenant(fake)})
    assert run_syncd(clean, "sync", "--no-write", env=env).returncode == 0
    config = write_config(tmp_path / "crash", db_url, {"volga": bitrix_tenant(fake)})
    fault = Fault("block", method=method)
    fake.faults = [fault]
    _kill_when_reached(config, fault, env, "--no-write")
    fake.faults = None
    rerun = run_syncd(config, "sync", "--no-write", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert stage_history(db_url) == stage_history(clean_url)
    assert karma_ledger(db_url) == karma_ledger(clean_url), "employee karma as if never killed"
    assert karma_ledger(db_url, "client") == karma_ledger(clean_url, "client")
