"""Crash tests: `syncd sync` on amoCRM is killed (SIGKILL) mid-batch, then run again.

The fake holds the chosen batch request until the test has killed the client, then lets it
complete: amoCRM applied the batch, syncd never heard back. Afterwards: no duplicate task,
no lost write, no write repeated with the same value, cursors consistent; a first pass
killed while pulling reruns to the stored state (stage history, karma ledgers) of a pass
that was never interrupted.
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
from cryptography.fernet import Fernet
from ledgers import karma_ledger, stage_history
from sqlalchemy import func, select
from support import REPO, report_json, run_syncd, syncd_command, write_config
from syncd_fakes.amocrm.sample import sample_dataset
from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM, Fault
from test_amocrm_e2e import tenant

from syncd import store
from syncd.streams import watermark_at

ENV = {"AMO_TOKEN": DEMO_LONG_LIVED_TOKEN, "SYNCD_SECRET_KEY": Fernet.generate_key().decode()}


@pytest.fixture
def fake():
    with FakeAmoCRM(sample_dataset(datetime.now(UTC)), rate_limit=20) as server:
        yield server


def _config(tmp_path: Path, db_url: str, fake: FakeAmoCRM) -> Path:
    data = tenant(fake.base_url)
    data["connection"].update(rate_limit=20, batch_size=4)  # several batches per pass
    return write_config(tmp_path, db_url, {"northwind": data})


def _kill_when_reached(config: Path, fault: Fault, *args: str) -> None:
    """Start a pass, SIGKILL it once the fake holds the faulted request, then release it."""
    process = subprocess.Popen(syncd_command(config, "sync", *args), env={**os.environ, **ENV},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               cwd=REPO)
    try:
        assert fault.reached.wait(timeout=120), "the pass never reached the faulted request"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        fault.release.set()  # amoCRM now applies the batch nobody will hear about
    assert fault.finished.wait(timeout=30)


def _patched_items(fake: FakeAmoCRM) -> Counter:
    """(path, record id, field values) of every PATCHed item, counted."""
    return Counter((path, item["id"], json.dumps(item["custom_fields_values"], sort_keys=True))
                   for method, path, body in fake.writes if method == "PATCH" for item in body)


def _cursor_consistent(db_url: str) -> None:
    database = store.Database(db_url)
    with database.session() as session:
        cursor = session.scalar(select(store.SyncCursorRow.value).where(
            store.SyncCursorRow.stream == "deals"))
        newest = session.scalar(select(func.max(store.DealRow.updated_at)))
    at = watermark_at(cursor)
    assert at is not None and newest is not None
    assert datetime.fromisoformat(at) <= newest.replace(tzinfo=UTC), \
        "cursor ahead of committed data"


def test_killed_during_a_batched_field_write(tmp_path: Path, db_url: str,
                                            fake: FakeAmoCRM) -> None:
    config = _config(tmp_path, db_url, fake)
    fault = Fault("block", method="PATCH", nth=3)
    fake.faults = [fault]
    _kill_when_reached(config, fault)
    fake.faults = None
    assert sum(1 for m, _, _ in fake.writes if m == "PATCH") == 3

    rerun = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    repeated = {key: n for key, n in _patched_items(fake).items() if n > 1}
    assert repeated == {}, f"a write was repeated with the same value: {repeated}"
    report = report_json(config, "northwind", env=ENV)
    for row in report["client_karma"]:
        written = fake.field_value("companies", int(row["company_id"]), "syncd karma")
        assert float(written) == pytest.approx(row["karma"], abs=0.01), row
    flagged = {v["deal_id"] for v in report["violations"] if v["deal_id"]}
    for deal_id in flagged:
        assert fake.field_value("leads", int(deal_id), "syncd violations"), deal_id
    _cursor_consistent(db_url)

    patches = _patched_items(fake)
    third = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert third.returncode == 0, third.stderr
    assert _patched_items(fake) == patches, "a converged pass writes nothing"


def test_killed_during_a_task_batch(tmp_path: Path, db_url: str, fake: FakeAmoCRM) -> None:
    config = _config(tmp_path, db_url, fake)
    baseline = run_syncd(config, "sync", env=ENV)
    assert baseline.returncode == 0, baseline.stderr
    assert not any(m == "POST" and p == "/api/v4/tasks" for m, p, _ in fake.writes), \
        "the first audit is a baseline: no tasks"
    for number in range(6):  # new open leads with no next step: new violations
        fake.add_lead(name=f"New lead {number}", status_id=40001, pipeline_id=3001,
                      responsible_user_id=2, price=1000,
                      _embedded={"tags": [], "companies": [{"id": 101}],
                                 "contacts": [{"id": 301, "is_main": True}]})
    fault = Fault("block", method="POST", path="/api/v4/tasks", nth=1)
    fake.faults = [fault]
    _kill_when_reached(config, fault)
    fake.faults = None
    first_batch = [b for m, p, b in fake.writes if m == "POST" and p == "/api/v4/tasks"]
    assert len(first_batch) == 1 and len(first_batch[0]) == 4, "killed mid-way: one batch"

    rerun = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    markers: Counter = Counter()
    for task in fake.tasks.rows.values():
        for token in str(task.get("text") or "").split("[")[1:]:
            if token.startswith("syncd:v"):
                markers[token.split("]")[0]] += 1
    assert markers, "tasks were created for the new violations"
    assert max(markers.values()) == 1, f"duplicate tasks: {markers}"
    summary = json.loads(rerun.stdout)[0]["summary"]
    assert summary["writes"]["tasks_recovered"] == 4
    posted = sum(len(b) for m, p, b in fake.writes if m == "POST" and p == "/api/v4/tasks")
    assert posted == len(markers), "the batch applied before the kill was not re-posted"
    _cursor_consistent(db_url)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/api/v4/tasks", "/api/v4/events"],
                         ids=["activities", "stage_history"])
def test_a_first_pass_killed_while_pulling_reruns_to_the_uninterrupted_state(
        tmp_path: Path, db_url: str, fake: FakeAmoCRM, path: str) -> None:
    clean_url = f"sqlite:///{tmp_path / 'clean' / 'syncd.db'}"
    clean = _config(tmp_path / "clean", clean_url, fake)
    assert run_syncd(clean, "sync", "--no-write", env=ENV).returncode == 0
    config = _config(tmp_path / "crash", db_url, fake)
    fault = Fault("block", method="GET", path=path)
    fake.faults = [fault]
    _kill_when_reached(config, fault, "--no-write")
    fake.faults = None
    rerun = run_syncd(config, "sync", "--no-write", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert stage_history(db_url) == stage_history(clean_url)
    assert karma_ledger(db_url) == karma_ledger(clean_url), "employee karma as if never killed"
    assert karma_ledger(db_url, "client") == karma_ledger(clean_url, "client")
