"""Crash tests: the `syncd` process is killed (SIGKILL) during write-back, then run again.

The fake holds the chosen request until the test has killed the client, then lets it
complete: the CRM applied the write, syncd never heard back — the nastiest moment.
Afterwards: no duplicate task, no lost or repeated karma write, cursors consistent, and
the stored state (stage history, employee and client karma ledgers) equals that of a pass
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
from ledgers import karma_ledger, stage_history
from sqlalchemy import func, select
from support import (
    FAST_BURST,
    demo_tenant,
    fake_tenant,
    report_json,
    run_syncd,
    syncd_command,
    write_config,
)
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault

from syncd import store
from syncd.streams import watermark_at

TOKEN = "pd-crash-token-77aa01"
ENV = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}


def _kill_when_reached(config: Path, fault: Fault, *args: str) -> None:
    """Start a pass, SIGKILL it once the fake holds the faulted request, then release it."""
    process = subprocess.Popen(syncd_command(config, "sync", *args), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert fault.reached.wait(timeout=120), "the pass never reached the faulted request"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        fault.release.set()  # the CRM now applies the write nobody will hear about


def _patch_bodies(fake: FakePipedrive) -> Counter:
    return Counter((path, json.dumps(body, sort_keys=True))
                   for method, path, body in fake.writes if method == "PATCH")


def _cursor_consistent(db_url: str) -> None:
    database = store.Database(db_url)
    with database.session() as session:
        cursor = session.scalar(select(store.SyncCursorRow.value).where(
            store.SyncCursorRow.stream == "deals"))
        newest = session.scalar(select(func.max(store.DealRow.updated_at)))
    assert cursor is not None and newest is not None
    at = watermark_at(cursor)
    assert at is not None
    assert datetime.fromisoformat(at) <= newest, "cursor ahead of committed data"


@pytest.fixture
def fake():
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as server:
        yield server


def test_killed_during_field_writes(tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    config = write_config(tmp_path, db_url, {"northwind": fake_tenant(fake)})
    fault = Fault("block", method="PATCH", nth=5)
    fake.faults = [fault]
    _kill_when_reached(config, fault)
    fake.faults = None
    patches_before_rerun = _patch_bodies(fake)
    assert sum(patches_before_rerun.values()) == 5

    rerun = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    patches = _patch_bodies(fake)
    repeated = {key: n for key, n in patches.items() if n > 1}
    assert repeated == {}, f"a write was repeated with the same value: {repeated}"

    report = report_json(config, "northwind", env=ENV)
    karma_field = next(f["field_code"] for f in fake.field_defs["organizationFields"]
                       if f["field_name"] == "syncd karma")
    for row in report["client_karma"]:
        written = fake.record("organizations", int(row["company_id"]))["custom_fields"]
        assert written[karma_field] == pytest.approx(row["karma"], abs=0.01), row
    _cursor_consistent(db_url)

    third = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert third.returncode == 0, third.stderr
    assert _patch_bodies(fake) == patches, "a converged pass writes nothing"


def test_killed_during_task_creation(tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    config = write_config(tmp_path, db_url, {"northwind": fake_tenant(fake)})
    baseline = run_syncd(config, "sync", env=ENV)
    assert baseline.returncode == 0, baseline.stderr
    assert not any(m == "POST" and p.endswith("/activities") for m, p, _ in fake.writes), \
        "the first audit is a baseline: no tasks"
    for number in range(4):  # four new open deals with no next step: four new violations
        fake.add("deals", {"title": f"New lead {number}", "owner_id": 2, "person_id": 301,
                           "org_id": 101, "pipeline_id": 1, "stage_id": 1, "value": 1000,
                           "currency": "EUR", "status": "open", "custom_fields": {}})
    fault = Fault("block", method="POST", path="/api/v2/activities", nth=2)
    fake.faults = [fault]
    _kill_when_reached(config, fault)
    fake.faults = None

    rerun = run_syncd(config, "sync", "--format", "json", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    markers = Counter()
    for activity_id in fake.activities.ids():
        note = fake.record("activities", activity_id).get("note") or ""
        for token in note.split("[")[1:]:
            if token.startswith("syncd:v"):
                markers[token.split("]")[0]] += 1
    assert markers, "tasks were created for the new violations"
    assert max(markers.values()) == 1, f"duplicate tasks: {markers}"
    posts = [b for m, p, b in fake.writes if m == "POST" and p.endswith("/activities")]
    assert len(posts) == len(markers), "the task created before the kill was not re-posted"
    writes = json.loads(rerun.stdout)[0]["summary"]["writes"]
    assert writes["tasks_recovered"] >= 1, "tasks created before the kill were found"
    assert writes["tasks_recovered"] + writes["tasks_created"] == len(markers) == 4
    _cursor_consistent(db_url)


def _clean_run(tmp_path: Path, base_url: str, *args: str) -> str:
    """The state of an uninterrupted first pass, in a database of its own."""
    url = f"sqlite:///{tmp_path / 'clean' / 'syncd.db'}"
    tenant = demo_tenant(base_url, burst_limit=FAST_BURST)
    config = write_config(tmp_path / "clean", url, {"northwind": tenant})
    result = run_syncd(config, "sync", *args, env=ENV)
    assert result.returncode == 0, result.stderr
    return url


@pytest.mark.slow
@pytest.mark.parametrize("where", [("GET", "/v1/deals/", 3), ("GET", "/api/v2/activities", 1)],
                         ids=["stage_history", "activities"])
def test_a_first_pass_killed_while_pulling_reruns_to_the_uninterrupted_state(
        tmp_path: Path, db_url: str, fake: FakePipedrive, where: tuple[str, str, int]) -> None:
    """Issue 11 item 9: the rerun used to fetch the stage history of deals outside
    ``history_days`` (their update time was unknown to it), adding karma lines for
    periods a year old."""
    clean = _clean_run(tmp_path, fake.base_url, "--no-write")
    method, path, nth = where
    config = write_config(tmp_path / "crash", db_url, {"northwind": fake_tenant(fake)})
    fault = Fault("block", method=method, path=path, nth=nth)
    fake.faults = [fault]
    _kill_when_reached(config, fault, "--no-write")
    fake.faults = None
    rerun = run_syncd(config, "sync", "--no-write", env=ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert stage_history(db_url) == stage_history(clean)
    assert karma_ledger(db_url) == karma_ledger(clean), "employee karma as if never killed"
    assert karma_ledger(db_url, "client") == karma_ledger(clean, "client")
