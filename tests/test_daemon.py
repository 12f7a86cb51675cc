"""`syncd run` as a service: passes every tenant, isolates failures, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from support import demo_tenant, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store

TOKEN = "pd-daemon-token-31f0"


def _read_until(process: subprocess.Popen, needle: str, seen: list[str]) -> None:
    """Read the daemon's log lines until one contains ``needle`` (or it exits)."""
    assert process.stderr is not None
    for line in process.stderr:
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"daemon ended before logging {needle!r}:\n{''.join(seen)}")


def test_daemon_isolates_a_failing_tenant_and_stops_on_sigterm(tmp_path: Path,
                                                               db_url: str) -> None:
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN) as fake:
        tenants = {"broken": demo_tenant(fake.base_url, token_env="BROKEN_TOKEN"),
                   "northwind": demo_tenant(fake.base_url)}
        config = write_config(tmp_path, db_url, tenants)
        env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN,
               "BROKEN_TOKEN": "revoked-token-000"}
        process = subprocess.Popen(syncd_command(config, "run"), env=env, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seen: list[str] = []
        try:
            _read_until(process, "tenant broken failed", seen)
            _read_until(process, "tenant northwind: pass ok", seen)
            process.send_signal(signal.SIGTERM)
            _, rest = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
        log = "".join(seen) + rest
        assert process.returncode == 130, log
        assert "AuthError" in log
        assert "revoked-token-000" not in log and TOKEN not in log
        assert "SIGTERM received" in log

    database = store.Database(db_url)
    with database.session() as session:
        runs = {(t, s) for t, s in session.execute(
            select(store.TenantRow.key, store.SyncRunRow.status).join(
                store.SyncRunRow, store.SyncRunRow.tenant_id == store.TenantRow.id))}
    assert ("northwind", "ok") in runs
    assert ("broken", "failed") in runs


def test_sigterm_mid_pull_commits_the_current_page_then_exits(tmp_path: Path,
                                                               db_url: str) -> None:
    from syncd_fakes.pipedrive.server import Fault

    fault = Fault("block", method="GET", path="/api/v2/deals")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN, faults=[fault]) as fake:
        tenant = demo_tenant(fake.base_url)
        # the fault's path prefix also matches the archived deals, read first by default:
        # this test holds the main deal list's page in flight
        tenant["connection"]["include_archived"] = False
        config = write_config(tmp_path, db_url, {"northwind": tenant})
        env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
        process = subprocess.Popen(syncd_command(config, "run"), env=env, text=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert fault.reached.wait(timeout=120), "the pass never asked for deals"
            process.send_signal(signal.SIGTERM)
            _read_until(process, "SIGTERM received", [])
            fault.release.set()  # the page in flight arrives after the stop request
            _, rest = process.communicate(timeout=180)
        finally:
            fault.release.set()
            if process.poll() is None:
                process.kill()
        assert process.returncode == 130, rest
        activity_requests = [p for _, p, _, _ in fake.requests if p == "/api/v2/activities"]
        deals_in_crm = len(fake.deals.ids())

    assert activity_requests == [], "no new page is started after the stop request"
    database = store.Database(db_url)
    with database.session() as session:
        stored = session.scalars(select(store.DealRow.external_id)).all()
        status = session.scalar(select(store.SyncRunRow.status))
        cursor = store.get_cursor(session, 1, "deals")
    assert len(stored) == deals_in_crm, "the page in flight was committed"
    assert cursor is not None, "with its cursor"
    assert status == "interrupted"
