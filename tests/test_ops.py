"""Operations: probes, metrics, JSON logs, systemd readiness, and the SIGTERM handoff."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from sqlalchemy import select, update
from support import demo_tenant, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault
from werkzeug.test import Client

from syncd import store
from syncd.config import ReplicaConfig, load_settings, load_tenant
from syncd.daemon import Daemon, Runner, TenantOutcome
from syncd.metrics import Metrics
from syncd.plugins import make_plugin_manager
from syncd.sdnotify import Notifier
from syncd.store.models import TenantLeaseRow
from syncd.web import WebApp, WebContext, ops

TOKEN = "pd-ops-token-61d2"
METRICS_TOKEN = "metrics-token-0b7e91"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)  # poll interval; the deadline decides
    raise AssertionError(f"timed out waiting for {what}")


def _client(tmp_path: Path, db: store.Database, *,
            auth_token: str | None = None) -> tuple[Client, Daemon]:
    config = write_config(tmp_path, "sqlite:///unused.db",
                          {"northwind": demo_tenant("http://127.0.0.1:9")})
    settings = load_settings(config)
    plugins = make_plugin_manager()
    tenant = load_tenant(settings, "northwind", plugins.connectors)
    daemon = Daemon(Runner(settings, plugins, db), [tenant], replica=ReplicaConfig())
    app = WebApp()
    ops.register(app, WebContext(settings=settings, db=db, plugins=plugins, extras={
        "daemon": daemon, "metrics": daemon.metrics, "tenants": {"northwind": tenant},
        "auth_token": auth_token}))
    return Client(app), daemon


def test_probes_follow_the_daemon_and_the_database(tmp_path: Path, database: store.Database,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    client, daemon = _client(tmp_path, database)
    assert client.get("/healthz").status_code == 200
    not_started = client.get("/readyz")
    assert not_started.status_code == 503 and not_started.json["checks"]["scheduler"] is False
    daemon.started = True
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"database": True, "schema": True, "scheduler": True,
                                    "draining": False}
    daemon.last_tick -= 3600  # the scheduler loop is wedged
    assert client.get("/healthz").status_code == 503
    daemon.last_tick = time.monotonic()
    daemon.stop()  # SIGTERM: draining
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200, "draining is not dead"


def test_liveness_does_not_depend_on_the_database(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = store.Database(f"postgresql://postgres@127.0.0.1:{port}/nothing"
                                 "?connect_timeout=2")
    client, daemon = _client(tmp_path, unreachable)
    daemon.started = True
    assert client.get("/healthz").status_code == 200
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"]["database"] is False


def test_metrics_are_named_by_the_conventions_and_can_require_a_token(
        tmp_path: Path, database: store.Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    client, daemon = _client(tmp_path, database, auth_token=METRICS_TOKEN)
    metrics: Metrics = daemon.metrics
    metrics.record_pass("northwind", "ok", 2.5, pulled=40, writes=3)
    metrics.record_pass("northwind", "failed", 1.0)
    observe = metrics.response_observer("northwind")
    for status in (200, 200, 429, 200):
        observe(status)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200
    text = answer.get_data(as_text=True)
    expected = [
        'syncd_syncs_total{status="ok",tenant="northwind"} 1.0',
        'syncd_syncs_total{status="failed",tenant="northwind"} 1.0',
        'syncd_records_pulled_total{tenant="northwind"} 40.0',
        'syncd_writes_total{tenant="northwind"} 3.0',
        'syncd_api_requests_total{tenant="northwind"} 4.0',
        'syncd_api_rate_limited_total{tenant="northwind"} 1.0',
        'syncd_sync_duration_seconds_count{tenant="northwind"} 2.0',
        "# TYPE syncd_sync_duration_seconds histogram",
        "# TYPE syncd_last_success_timestamp_seconds gauge",
    ]
    for line in expected:
        assert line in text, line
    success = re.search(r'syncd_last_success_timestamp_seconds\{tenant="northwind"\} (\S+)',
                        text)
    assert success and abs(float(success.group(1)) - time.time()) < 60
    names = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
    for name, kind in names:
        assert name.startswith("syncd_"), name
        if kind == "counter":
            assert not name.endswith("_total_total"), name


def test_the_daemon_observes_how_late_each_scheduled_pass_starts(
        database: store.Database) -> None:
    """``syncd_pass_start_lag_seconds``: one observation per claim of a tenant that had a
    due time (here 7 minutes overdue), none for one asked for now (a new tenant)."""

    class NoPass(Runner):
        def run_under_lease(self, tenant: Any, lease: Any, options: Any = None) -> TenantOutcome:
            return TenantOutcome(tenant.key, ok=True)

    tenants: list[Any] = [SimpleNamespace(key="overdue", interval_minutes=15),
                          SimpleNamespace(key="new", interval_minutes=15)]
    runner = NoPass(settings=None, plugins=None, db=database)  # type: ignore[arg-type]
    daemon = Daemon(runner, tenants, replica=ReplicaConfig(workers=2))
    daemon.prepare()
    with database.session() as session:
        session.execute(update(TenantLeaseRow).where(TenantLeaseRow.tenant_key == "overdue")
                        .values(acquired_at=datetime.now(UTC) - timedelta(minutes=22)))
    claims = daemon.tick()
    daemon._drain()
    assert sorted(c.tenant_key for c in claims) == ["new", "overdue"]
    registry = daemon.metrics.registry
    assert registry.get_sample_value("syncd_pass_start_lag_seconds_count") == 1
    lag = registry.get_sample_value("syncd_pass_start_lag_seconds_sum")
    assert lag == pytest.approx(420, abs=30)
    assert registry.get_sample_value("syncd_pass_start_lag_seconds_bucket",
                                     {"le": "300.0"}) == 0
    assert registry.get_sample_value("syncd_pass_start_lag_seconds_bucket",
                                     {"le": "600.0"}) == 1


def test_notifier_speaks_the_systemd_protocol(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert notifier.ready("3 tenant(s)")
        assert server.recv(256) == b"READY=1\nSTATUS=3 tenant(s)"
        notifier.watchdog()
        assert server.recv(64) == b"WATCHDOG=1"
        notifier.watchdog()  # within half the interval: no second ping
        assert notifier.stopping()
        assert server.recv(64) == b"STOPPING=1"
    assert not Notifier({}).ready(), "outside systemd: a no-op"


def _daemon_config(tmp_path: Path, db_url: str, base_url: str, *,
                   include_archived: bool = True) -> Path:
    tenant = {**demo_tenant(base_url), "interval_minutes": 600}
    tenant["connection"]["include_archived"] = include_archived
    config = write_config(tmp_path, db_url, {"northwind": tenant})
    data = yaml.safe_load(config.read_text("utf-8"))
    data.update(http={"port": 0, "auth_token": {"$env": "METRICS_TOKEN"}},
                replica={"poll_seconds": 0.5, "lease_seconds": 30})
    config.write_text(yaml.safe_dump(data), "utf-8")
    return config


def test_under_systemd_ready_then_sigterm_hands_the_tenant_back(tmp_path: Path,
                                                                db_url: str) -> None:
    """READY=1 once serving; SIGTERM mid-pull: the page in flight is committed, the lease is
    released as due (another replica takes it at once), STOPPING=1, exit within 30 s."""
    fault = Fault("block", method="GET", path="/api/v2/deals")
    notify_path = str(tmp_path / "notify.sock")
    with FakePipedrive(sample_dataset(NOW, deals=10), token=TOKEN, faults=[fault]) as fake, \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(notify_path)
        notify.settimeout(120)
        # the fault's path prefix also matches the archived deals, read first by default:
        # this test holds the main deal list's page in flight
        config = _daemon_config(tmp_path, db_url, fake.base_url, include_archived=False)
        env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN, "NOTIFY_SOCKET": notify_path,
               "METRICS_TOKEN": METRICS_TOKEN}
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(syncd_command(config, "run", "--log-format", "json"),
                                       env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            assert notify.recv(256).startswith(b"READY=1")
            url = wait_for("the address", lambda: re.search(
                r"HTTP on (http://[^\s\"]+)", log_path.read_text("utf-8"))).group(1)
            with urllib.request.urlopen(f"{url}/healthz", timeout=10) as answer:
                assert answer.status == 200
            with urllib.request.urlopen(f"{url}/readyz", timeout=10) as answer:
                assert json.load(answer)["ready"] is True
            with pytest.raises(urllib.error.HTTPError) as denied:
                urllib.request.urlopen(f"{url}/metrics", timeout=10)
            assert denied.value.code == 401
            dashboard = urllib.request.Request(f"{url}/dashboard", headers={
                "Authorization": f"Bearer {METRICS_TOKEN}"})
            with urllib.request.urlopen(dashboard, timeout=10) as answer:
                assert answer.status == 200, "the dashboard's routes are served too"
            assert fault.reached.wait(120), "the pass never asked for deals"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            wait_for("the stop request", lambda: "SIGTERM received" in log_path.read_text())
            fault.release.set()
            code = process.wait(timeout=30)
            took = time.monotonic() - started
            assert notify.recv(64) == b"STOPPING=1"
        finally:
            fault.release.set()
            if process.poll() is None:
                process.kill()
                process.wait()
        later_requests = [p for _, p, _, _ in fake.requests if p == "/api/v2/activities"]

    assert code == 130 and took < 30
    assert later_requests == [], "no new page after the stop request"
    db = store.Database(db_url)
    with db.session() as session:
        lease = session.execute(select(TenantLeaseRow.holder, TenantLeaseRow.acquired_at,
                                       TenantLeaseRow.fence)).one()
        stored = session.scalars(select(store.DealRow.external_id)).all()
        status = session.scalar(select(store.SyncRunRow.status))
    assert len(stored) == 10, "the page in flight was committed"
    assert status == "interrupted"
    assert lease.holder is None and lease.acquired_at is None, "handed back, due at once"
    lines = [json.loads(line) for line in log_path.read_text("utf-8").splitlines() if line]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert TOKEN not in log_path.read_text() and METRICS_TOKEN not in log_path.read_text()
