"""Secrets stay where they belong: per tenant on the wire, nowhere in logs, metrics, reports,
error messages or the database."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from support import demo_tenant, run_syncd, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


class TokenWitness(FakePipedrive):
    """A fake that remembers every API token presented to it, right or wrong."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tokens_seen: set[str] = set()

    def handle(self, handler: Any, method: str) -> None:
        with self.lock:
            self.tokens_seen.add(handler.headers.get("x-api-token") or "")
            for key, value in handler.headers.items():
                if key.lower() != "x-api-token":
                    self.tokens_seen |= {t for t in ALL_TOKENS if t in value}
            self.tokens_seen |= {t for t in ALL_TOKENS if t in handler.path}
        super().handle(handler, method)


ALL_TOKENS = ("pd-alpha-token-a1a1a1", "pd-bravo-token-b2b2b2")


def test_a_tenants_token_is_only_ever_sent_to_its_own_crm(tmp_path: Path, db_url: str) -> None:
    alpha_token, bravo_token = ALL_TOKENS
    with TokenWitness(sample_dataset(NOW, deals=10), token=alpha_token) as alpha, \
            TokenWitness(sample_dataset(NOW, seed=3, deals=10), token=bravo_token) as bravo:
        config = write_config(tmp_path, db_url, {
            "alpha": demo_tenant(alpha.base_url, token_env="ALPHA_TOKEN"),
            "bravo": demo_tenant(bravo.base_url, token_env="BRAVO_TOKEN")})
        env = {"ALPHA_TOKEN": alpha_token, "BRAVO_TOKEN": bravo_token}
        result = run_syncd(config, "sync", env=env)
        assert result.returncode == 0, result.stderr
        assert alpha.requests_count > 10 and bravo.requests_count > 10
        assert alpha.tokens_seen == {alpha_token}
        assert bravo.tokens_seen == {bravo_token}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)  # poll interval; the deadline decides
    raise AssertionError(f"timed out waiting for {what}")


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_no_secret_in_logs_metrics_reports_errors_or_the_database(tmp_path: Path) -> None:
    """A daemon on SQLite with every kind of secret, a revoked token, good and bad webhook
    calls and a metrics scrape; then every output is searched for every secret."""
    token, revoked = "pd-secret-token-5e5e5e", "pd-revoked-token-7f7f7f"
    hook_secret, metrics_token = "hook-secret-c0ffee01", "metrics-secret-d00d02"
    secrets = [token, revoked, hook_secret, metrics_token]
    db_path = tmp_path / "var" / "syncd.db"
    with FakePipedrive(sample_dataset(NOW, deals=10), token=token) as fake:
        tenants = {
            "good": {**demo_tenant(fake.base_url, token_env="GOOD_TOKEN"),
                     "webhook_secret": {"$file": str(tmp_path / "hook.secret")}},
            "revoked": demo_tenant(fake.base_url, token_env="REVOKED_TOKEN"),
        }
        (tmp_path / "hook.secret").write_text(hook_secret + "\n")
        config = write_config(tmp_path, f"sqlite:///{db_path}", tenants)
        data = yaml.safe_load(config.read_text("utf-8"))
        data.update(http={"port": 0, "auth_token": {"$env": "METRICS_TOKEN"}},
                    replica={"poll_seconds": 0.3, "webhook_debounce_seconds": 0.1},
                    log_level="DEBUG")
        config.write_text(yaml.safe_dump(data), "utf-8")
        env = {**os.environ, "GOOD_TOKEN": token, "REVOKED_TOKEN": revoked,
               "METRICS_TOKEN": metrics_token}
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(syncd_command(config, "run", "--log-format", "json"),
                                       env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            url = wait_for("the address", lambda: re.search(
                r"HTTP on (http://[^\s\"]+)", log_path.read_text("utf-8"))).group(1)
            db = store.Database(db_path)

            def statuses() -> set[tuple[str, str]]:
                with db.session() as session:
                    return set(session.execute(
                        select(store.TenantRow.key, store.SyncRunRow.status).join(
                            store.SyncRunRow,
                            store.SyncRunRow.tenant_id == store.TenantRow.id)).all())

            wait_for("both passes", lambda: {("good", "ok"), ("revoked", "failed")}
                     <= statuses())
            payload = json.dumps({"meta": {"action": "change", "entity": "deal",
                                           "entity_id": "1", "change_source": "app"},
                                  "previous": {"title": "x"}}).encode()
            basic = base64.b64encode(f"pd:{hook_secret}".encode()).decode()
            assert _post(f"{url}/webhooks/good", payload,
                         {"Authorization": f"Basic {basic}"}) == 202
            assert _post(f"{url}/webhooks/good/{hook_secret}", payload) == 202
            assert _post(f"{url}/webhooks/good/{hook_secret[:-1]}x", payload) == 401
            assert _post(f"{url}/webhooks/good?token={token}", payload) == 401
            assert _post(f"{url}/webhooks/good/{hook_secret}", b"<html>") == 400
            request = urllib.request.Request(f"{url}/metrics", headers={
                "Authorization": f"Bearer {metrics_token}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                metrics = answer.read().decode()
            assert "syncd_webhooks_total" in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    outputs = {"log": log_path.read_text("utf-8"), "metrics": metrics}
    for report in (tmp_path / "reports").rglob("*"):
        if report.is_file():
            outputs[f"report {report.name}"] = report.read_text("utf-8", "replace")
    with db.session() as session:
        errors = session.scalars(select(store.SyncRunRow.error)).all()
    outputs["errors"] = "\n".join(e or "" for e in errors)
    for path in db_path.parent.glob("syncd.db*"):  # the database and its WAL, raw bytes
        outputs[path.name] = path.read_bytes().decode("latin-1")
    assert "HTTP 401" in outputs["errors"], "the revoked tenant's error was recorded"
    assert any(name.startswith("report") for name in outputs), "a report was written"
    assert '"level": "DEBUG"' in outputs["log"], "the debug log was on"
    for name, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"a secret leaked into the {name}"


def test_a_dashboard_token_in_a_link_stays_out_of_logs_and_pages(caplog: Any) -> None:
    """The link form /t/<token>/...: the token is taken off the path before routing, so a
    handler's failure logs the path without it; a denied request does not echo it."""
    import logging

    from werkzeug.test import Client
    from werkzeug.wrappers import Response

    from syncd.web import WebApp

    token = "sdt_link-secret-4471"
    app = WebApp()

    @app.route("/dashboard/boom")
    def boom(request: Any) -> Response:
        raise RuntimeError("the page broke")

    @app.route("/dashboard/root")
    def root(request: Any) -> Response:
        return Response(request.script_root)

    client = Client(app)
    with caplog.at_level(logging.INFO):
        failed = client.get(f"/t/{token}/dashboard/boom")
    assert failed.status_code == 500 and token not in failed.get_data(as_text=True)
    assert "/dashboard/boom" in caplog.text and token not in caplog.text
    # the page's own links keep the prefix, so the next click is still authorised
    assert client.get(f"/t/{token}/dashboard/root").get_data(as_text=True) == f"/t/{token}"
