"""One broken input hurts only itself: tenant files, exit codes, abandoned run rows.

Issue 11, items 3, 4 (run rows), 10: a tenant file that does not load is reported and
skipped while the others run (`syncd sync`, `syncd run`, /readyz, metrics, log), a fixed
file is picked up without a restart, every exit path has its documented code and bad
input never ends in a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy import select
from support import FAST_BURST, demo_tenant, fake_tenant, run_syncd, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive
from werkzeug.test import Client

from syncd import exitcodes, store
from syncd.cli import exit_code_for, main
from syncd.config import ReplicaConfig, load_settings
from syncd.daemon import Daemon, Runner, TenantOutcome
from syncd.plugins import make_plugin_manager
from syncd.store import leases
from syncd.sync import PassSummary
from syncd.tenantfiles import TenantWatcher
from syncd.web import WebApp, WebContext, ops

TOKEN = "pd-isolation-token-5c1e"
SECRET_VALUE = "inline-secret-value-9f31d7"
ENV = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}


def _broken_tenants(base_url: str) -> dict[str, dict[str, Any]]:
    typo = demo_tenant(base_url, burst_limit=FAST_BURST)
    typo["timezon"] = "Europe/Moscow"  # a typo in a key
    unset = demo_tenant(base_url, token_env="ISOLATION_UNSET_TOKEN_VAR")
    unknown = demo_tenant(base_url, burst_limit=FAST_BURST)
    unknown["plugin"] = "nosuchcrm"
    return {"typo": typo, "unset": unset, "unknown": unknown}


@pytest.fixture
def fake():
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as server:
        yield server


def _config_with_broken_files(tmp_path: Path, db_url: str, base_url: str) -> Path:
    northwind = demo_tenant(base_url, burst_limit=FAST_BURST)
    config = write_config(tmp_path, db_url, {"northwind": northwind,
                                             **_broken_tenants(base_url)})
    (tmp_path / "tenants" / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    return config


def test_sync_of_all_tenants_skips_broken_files_and_runs_the_others(
        tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    config = _config_with_broken_files(tmp_path, db_url, fake.base_url)
    env = {**ENV, "ISOLATION_UNSET_TOKEN_VAR": ""}
    env.pop("ISOLATION_UNSET_TOKEN_VAR")
    result = run_syncd(config, "sync", "--no-write", "--format", "json", env=env)
    assert result.returncode == exitcodes.TENANT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["northwind"]["ok"] is True, outcomes["northwind"]
    for key in ("typo", "unset", "unknown", "binary"):
        assert outcomes[key]["ok"] is False and outcomes[key]["config_error"] is True, key
        assert f"{key}.yaml" in outcomes[key]["error"], outcomes[key]
    assert "timezon" in outcomes["typo"]["error"]
    assert "connection.api_token" in outcomes["unset"]["error"]
    assert "ISOLATION_UNSET_TOKEN_VAR" in outcomes["unset"]["error"]
    assert "plugin" in outcomes["unknown"]["error"] and "nosuchcrm" in outcomes["unknown"][
        "error"]
    assert "UTF-8" in outcomes["binary"]["error"]
    assert "tenant typo skipped" in result.stderr, "each broken file is logged"
    database = store.Database(db_url)
    with database.session() as session:
        keys = {t.key for t in store.list_tenants(session)}
    assert keys == {"northwind"}, "the valid tenant was synced, nothing else"


def test_a_broken_tenant_named_on_the_command_line_is_a_config_error(
        tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    config = _config_with_broken_files(tmp_path, db_url, fake.base_url)
    named = run_syncd(config, "sync", "typo", "--no-write", env=ENV)
    assert named.returncode == exitcodes.CONFIG_ERROR
    assert "typo.yaml: timezon" in named.stderr and "Traceback" not in named.stderr
    binary = run_syncd(config, "sync", "binary", env=ENV)
    assert binary.returncode == exitcodes.CONFIG_ERROR
    assert "binary.yaml" in binary.stderr and "Traceback" not in binary.stderr
    missing = run_syncd(config, "sync", "nosuchtenant", env=ENV)
    assert missing.returncode == exitcodes.CONFIG_ERROR and "nosuchtenant" in missing.stderr
    checked = run_syncd(config, "check", env=ENV)
    assert checked.returncode == exitcodes.CONFIG_ERROR
    assert "binary.yaml" in checked.stderr and "Traceback" not in checked.stderr


def test_an_inline_secret_in_a_broken_file_is_never_echoed(
        tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    tenant = fake_tenant(fake)
    tenant["connection"]["api_token"] = SECRET_VALUE
    tenant["connection"]["page_sise"] = 5  # a typo makes the file fail
    config = write_config(tmp_path, db_url, {"leaky": tenant,
                                             "northwind": fake_tenant(fake)})
    result = run_syncd(config, "sync", "--no-write", "--format", "json", env=ENV)
    assert result.returncode == exitcodes.TENANT_FAILED
    assert "page_sise" in result.stdout
    assert SECRET_VALUE not in result.stdout + result.stderr


def test_syncd_run_starts_with_the_valid_tenants(tmp_path: Path, db_url: str,
                                                 fake: FakePipedrive) -> None:
    config = _config_with_broken_files(tmp_path, db_url, fake.base_url)
    raw = yaml.safe_load(config.read_text())
    raw["http"] = {"enabled": False}
    config.write_text(yaml.safe_dump(raw))
    result = run_syncd(config, "run", "--max-passes", "1", env=ENV)
    assert result.returncode == exitcodes.OK, result.stderr
    assert "tenant typo skipped" in result.stderr and "Traceback" not in result.stderr
    database = store.Database(db_url)
    with database.session() as session:
        runs = store.last_runs(session)
    assert [r.status for r in runs] == ["ok"]


def _daemon(tmp_path: Path, database: store.Database, base_url: str,
            clock: list[float]) -> tuple[Daemon, Client, Path]:
    config = write_config(tmp_path, "sqlite:///unused.db",
                          {"northwind": demo_tenant(base_url, burst_limit=FAST_BURST)})
    broken = demo_tenant(base_url, burst_limit=FAST_BURST)
    broken["timezon"] = "UTC"
    path = tmp_path / "tenants" / "acme.yaml"
    path.write_text(yaml.safe_dump(broken))
    settings = load_settings(config)
    plugins = make_plugin_manager()
    watcher = TenantWatcher(settings, plugins.connectors, clock=lambda: clock[0])
    found = watcher.load()
    daemon = Daemon(Runner(settings, plugins, database), list(found.loaded.values()),
                    replica=ReplicaConfig(), watcher=watcher, broken=found.broken)
    daemon.started = True
    app = WebApp()
    ops.register(app, WebContext(settings=settings, db=database, plugins=plugins, extras={
        "daemon": daemon, "metrics": daemon.metrics, "tenants": daemon.tenants,
        "webhook_secrets": daemon.webhook_secrets}))
    return daemon, Client(app), path


def _config_errors(daemon: Daemon, tenant: str) -> float | None:
    return daemon.metrics.registry.get_sample_value("syncd_tenant_config_errors",
                                                    {"tenant": tenant})


def test_the_daemon_skips_a_broken_file_and_picks_up_the_fix_without_a_restart(
        tmp_path: Path, database: store.Database, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    clock = [0.0]
    daemon, client, path = _daemon(tmp_path, database, "http://127.0.0.1:9", clock)
    started: list[str] = []
    monkeypatch.setattr(daemon, "_start", lambda claim: started.append(claim.tenant_key))
    daemon.prepare()

    assert set(daemon.tenants) == {"northwind"} and set(daemon.broken) == {"acme"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert "acme" in ready.json["broken_tenants"]
    assert "acme.yaml: timezon" in ready.json["broken_tenants"]["acme"][0]
    assert _config_errors(daemon, "acme") == 1 and _config_errors(daemon, "northwind") == 0
    daemon.replica.workers = 4
    daemon.tick()
    assert started == ["northwind"], "the broken tenant is not scheduled"

    fixed = yaml.safe_load(path.read_text())
    fixed.pop("timezon")
    path.write_text(yaml.safe_dump(fixed))
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    caplog.set_level("WARNING", logger="syncd")
    started.clear()
    daemon.tick()
    assert set(daemon.tenants) == {"northwind", "acme"} and daemon.broken == {}
    assert started == ["acme"], "the fixed tenant is due at once (northwind is not due)"
    assert "tenant acme: its file loads again" in caplog.text
    assert _config_errors(daemon, "acme") == 0
    assert client.get("/readyz").json["broken_tenants"] == {}

    path.write_text("plugin: [unclosed\n")  # broken again: skipped, the rest runs on
    os.utime(path, ns=(path.stat().st_mtime_ns + 2 * 10**9,) * 2)
    daemon.tick()
    assert set(daemon.tenants) == {"northwind"} and "acme" in daemon.broken
    assert "not valid YAML" in client.get("/readyz").json["broken_tenants"]["acme"][0]


def test_an_unchanged_tenant_folder_is_not_reloaded(tmp_path: Path,
                                                    database: store.Database,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    clock = [0.0]
    daemon, _, _ = _daemon(tmp_path, database, "http://127.0.0.1:9", clock)
    assert daemon.reload_tenants() is False, "nothing changed: only stat calls"
    clock[0] += 61  # a broken file is retried now and then (its $file secret may appear)
    assert daemon.reload_tenants() is True


# -- exit codes ------------------------------------------------------------------------------
def _outcome(key: str, *, ok: bool = True, partial: bool = False,
             config_error: bool = False, interrupted: bool = False) -> TenantOutcome:
    summary = PassSummary(tenant=key, plugin="pipedrive", as_of="", live=True)
    if partial:
        summary.write_failures.append("deal 7: 422 invalid value")
    return TenantOutcome(key, ok=ok, summary=summary if ok else None,
                         config_error=config_error, interrupted=interrupted)


def test_sync_exit_codes() -> None:
    assert exit_code_for([_outcome("a"), _outcome("b")]) == exitcodes.OK
    assert exit_code_for([_outcome("a"), _outcome("b", partial=True)]) == exitcodes.PARTIAL
    assert exit_code_for([_outcome("a", partial=True), _outcome("b", ok=False)]) \
        == exitcodes.TENANT_FAILED
    assert exit_code_for([_outcome("a"), _outcome("b", ok=False, config_error=True)]) \
        == exitcodes.TENANT_FAILED, "all tenants: a broken file is one failed tenant"
    assert exit_code_for([_outcome("a"), _outcome("b", ok=False, config_error=True)],
                         named=True) == exitcodes.CONFIG_ERROR
    assert exit_code_for([_outcome("b", ok=False, config_error=True)]) \
        == exitcodes.CONFIG_ERROR, "nothing loads: a config error"
    assert exit_code_for([_outcome("a", ok=False, interrupted=True),
                          _outcome("b", ok=False)]) == exitcodes.INTERRUPTED


def test_an_internal_error_exits_3_with_a_short_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                          {"northwind": demo_tenant("http://127.0.0.1:9")})

    def bug(*args: Any, **kwargs: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("syncd.cli.check_all", bug)
    result = CliRunner().invoke(main, ["--config", str(config), "check"])
    assert result.exit_code == exitcodes.INTERNAL_ERROR, result.output
    assert "internal error" in result.output and "ZeroDivisionError" in result.output


def test_a_taken_http_port_is_a_config_error(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
        raw = yaml.safe_load(config.read_text())
        raw["http"] = {"port": port}
        config.write_text(yaml.safe_dump(raw))
        served = run_syncd(config, "dashboard", "--port", str(port), env=ENV, timeout=60)
        daemon = run_syncd(config, "run", env=ENV, timeout=60)
    for result in (served, daemon):
        assert result.returncode == exitcodes.CONFIG_ERROR, result.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr and "Either identify" not in result.stderr


def test_an_unreachable_database_and_an_unwritable_output_are_clear_errors(
        tmp_path: Path) -> None:
    password = "pg-password-41c9e2"
    config = write_config(tmp_path, f"postgresql+psycopg://syncd:{password}@127.0.0.1:1/x",
                          {"northwind": demo_tenant("http://127.0.0.1:9")})
    away = run_syncd(config, "report", "northwind", env=ENV, timeout=60)
    assert away.returncode == exitcodes.CONFIG_ERROR, away.stderr
    assert "the database cannot be used" in away.stderr
    assert "Traceback" not in away.stderr and password not in away.stderr
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}",
                          {"northwind": demo_tenant("http://127.0.0.1:9")})
    unwritable = run_syncd(config, "report", "northwind", "-o",
                           str(tmp_path / "missing" / "report.json"), env=ENV, timeout=60)
    assert unwritable.returncode == exitcodes.CONFIG_ERROR, unwritable.stderr
    assert "No such file or directory" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr


class _DeepJson(BaseHTTPRequestHandler):
    """Answers every request with valid JSON nested 100 000 levels deep."""

    body = b"[" * 100_000 + b"]" * 100_000

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_deeply_nested_json_answer_fails_only_its_tenant(
        tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DeepJson)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        deep = demo_tenant(f"http://127.0.0.1:{server.server_address[1]}")
        config = write_config(tmp_path, db_url, {"deep": deep,
                                                 "northwind": fake_tenant(fake)})
        result = run_syncd(config, "sync", "--no-write", "--format", "json", env=ENV)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == exitcodes.TENANT_FAILED, result.stderr
    assert "Traceback" not in result.stderr
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["northwind"]["ok"] is True
    error = outcomes["deep"]["error"]
    assert "nested too deeply" in error or "RecursionError" in error, error


# -- run rows left "running" ---------------------------------------------------------------
def _running_row(database: store.Database, key: str) -> int:
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, key, "pipedrive")
        return store.start_run(session, tenant_id)


def _status(database: store.Database, run_id: int) -> tuple[str, str | None]:
    with database.session() as session:
        row = session.execute(select(store.SyncRunRow.status, store.SyncRunRow.error).where(
            store.SyncRunRow.id == run_id)).one()
    return row.status, row.error


def test_a_run_left_running_by_a_dead_process_is_closed_as_abandoned(
        tmp_path: Path, db_url: str, fake: FakePipedrive) -> None:
    config = write_config(tmp_path, db_url, {"northwind": fake_tenant(fake)})
    database = store.Database(db_url)
    database.upgrade()
    stale = _running_row(database, "northwind")
    with database.session() as session:  # a live replica elsewhere holds the tenant
        leases.ensure_leases(session, ["northwind"])
        assert leases.claim_one(session, "northwind", "otherhost:4242:live",
                                ttl=timedelta(minutes=10)) is not None
    refused = run_syncd(config, "sync", "--no-write", env=ENV)
    assert refused.returncode == exitcodes.TENANT_FAILED
    assert _status(database, stale) == ("running", None), \
        "a row that may belong to a live lease holder is left alone"

    with database.session() as session:  # that replica died: its lease expired
        leases.expire(session, "otherhost:4242:live")
    result = run_syncd(config, "sync", "--no-write", env=ENV)
    assert result.returncode == exitcodes.OK, result.stderr
    status, error = _status(database, stale)
    assert status == "abandoned" and error and "abandoned" in error
    with database.session() as session:
        statuses = [r.status for r in store.last_runs(session)]
    assert statuses == ["ok", "abandoned"]
