"""CRM webhooks: per-tenant authentication, echoes ignored, bursts coalesced, a real re-sync."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from support import demo_tenant, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive
from werkzeug.test import Client

from syncd import store
from syncd.config import ReplicaConfig, load_settings, load_tenant
from syncd.daemon import Daemon, Runner, webhook_secrets
from syncd.plugins import make_plugin_manager
from syncd.store.models import TenantLeaseRow
from syncd.web import WebApp, WebContext, ops

SECRET = "hook-secret-93b1f0c2"
TOKEN = "pd-webhook-token-44aa"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _basic(password: str, user: str = "pipedrive") -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _v2(change_source: str = "app", previous: dict[str, Any] | None = None) -> bytes:
    return json.dumps({
        "meta": {"action": "change", "entity": "deal", "entity_id": "7", "id": "e-1",
                 "change_source": change_source, "version": "2.0"},
        "data": {"id": 7, "title": "x"},
        "previous": {"title": "y"} if previous is None else previous,
    }).encode()


@pytest.fixture
def hooks(tmp_path: Path, database: store.Database,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, Daemon]]:
    monkeypatch.setenv("NW_HOOK", SECRET)
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    tenant = {**demo_tenant("http://127.0.0.1:9"), "webhook_secret": {"$env": "NW_HOOK"}}
    config = write_config(tmp_path, database.url.render_as_string(False),
                          {"northwind": tenant, "plain": demo_tenant("http://127.0.0.1:9")})
    settings = load_settings(config)
    plugins = make_plugin_manager()
    tenants = [load_tenant(settings, key, plugins.connectors) for key in ("northwind", "plain")]
    daemon = Daemon(Runner(settings, plugins, database), tenants,
                    replica=ReplicaConfig(webhook_debounce_seconds=3600))
    daemon.prepare()
    app = WebApp()
    ops.register(app, WebContext(settings=settings, db=database, plugins=plugins, extras={
        "daemon": daemon, "metrics": daemon.metrics, "tenants": {t.key: t for t in tenants},
        "webhook_secrets": webhook_secrets(tenants)}))
    yield Client(app), daemon


def test_unauthenticated_and_unknown_webhooks_are_rejected(
        hooks: tuple[Client, Daemon]) -> None:
    client, daemon = hooks
    assert client.post("/webhooks/northwind", data=_v2()).status_code == 401
    assert client.post("/webhooks/northwind", data=_v2(),
                       headers=_basic("wrong-secret")).status_code == 401
    assert client.post("/webhooks/northwind/wrong-secret", data=_v2()).status_code == 401
    assert client.post(f"/webhooks/northwind?token={SECRET}x", data=_v2()).status_code == 401
    assert client.post("/webhooks/plain", data=_v2(),
                       headers=_basic(SECRET)).status_code == 404, "no secret: no webhook"
    assert client.post("/webhooks/nobody", data=_v2(),
                       headers=_basic(SECRET)).status_code == 404
    assert client.get("/webhooks/northwind").status_code == 405
    assert daemon._pending == {}, "nothing was queued"
    metrics = daemon.metrics.exposition().decode()
    assert 'syncd_webhooks_total{result="unauthorized",tenant="northwind"} 4.0' in metrics
    assert SECRET not in metrics


@pytest.mark.parametrize("how", ["basic", "path", "query", "bitrix_form"])
def test_each_crm_style_of_presenting_the_secret_is_accepted(
        hooks: tuple[Client, Daemon], how: str) -> None:
    client, daemon = hooks
    if how == "basic":  # Pipedrive: http_auth_user / http_auth_password
        response = client.post("/webhooks/northwind", data=_v2(), headers=_basic(SECRET))
    elif how == "path":  # amoCRM: the URL is all it sends
        response = client.post(f"/webhooks/northwind/{SECRET}", data=b"leads[update][0][id]=7",
                               content_type="application/x-www-form-urlencoded")
    elif how == "query":
        response = client.post(f"/webhooks/northwind?token={SECRET}", data=_v2())
    else:  # Bitrix24 event handlers post auth[application_token]
        response = client.post(
            "/webhooks/northwind", content_type="application/x-www-form-urlencoded",
            data=f"event=ONCRMDEALUPDATE&data[FIELDS][ID]=7&auth[application_token]={SECRET}")
    if how in {"path", "bitrix_form"}:
        # The Pipedrive connector reads only Pipedrive payloads: authenticated, then 400.
        assert response.status_code == 400, response.data
        assert list(daemon._pending) == []
        return
    assert response.status_code == 202, response.data
    assert response.json == {"status": "queued"}
    assert list(daemon._pending) == ["northwind"]


def test_a_burst_is_coalesced_and_marks_the_tenant_due(hooks: tuple[Client, Daemon],
                                                       database: store.Database) -> None:
    client, daemon = hooks
    with database.session() as session:
        from syncd.store import leases
        (claim,) = leases.claim_due(session, ["northwind"], "r1", interval=daemon.ttl,
                                    ttl=daemon.ttl, limit=1)
        leases.release(session, "northwind", "r1", claim.fence)
    answers = [client.post("/webhooks/northwind", data=_v2(), headers=_basic(SECRET)).json
               for _ in range(5)]
    assert answers == [{"status": "queued"}] + [{"status": "coalesced"}] * 4
    daemon._pending["northwind"] = time.monotonic()  # the debounce window has passed
    daemon._flush_pending()
    with database.session() as session:
        acquired = session.scalar(select(TenantLeaseRow.acquired_at)
                                  .where(TenantLeaseRow.tenant_key == "northwind"))
    assert acquired is None, "due at once"
    assert daemon._pending == {}


def test_our_own_write_back_echo_is_ignored(hooks: tuple[Client, Daemon]) -> None:
    client, daemon = hooks
    echo = _v2("api", previous={"custom_fields": {"a1b2": "old karma"}})
    response = client.post("/webhooks/northwind", data=echo, headers=_basic(SECRET))
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert daemon._pending == {}
    by_api_but_not_ours = _v2("api", previous={"stage_id": 3})
    response = client.post("/webhooks/northwind", data=by_api_but_not_ours,
                           headers=_basic(SECRET))
    assert response.status_code == 202
    v1_echo = json.dumps({"v": 1, "meta": {"action": "updated", "object": "deal", "id": 7,
                                           "change_source": "api"},
                          "current": {"id": 7, "title": "t", "a" * 40: "5"},
                          "previous": {"id": 7, "title": "t", "a" * 40: "4"}}).encode()
    hint = daemon.tenants["northwind"].make_connector().webhook_hint({}, v1_echo)
    assert hint.echo and hint.entity == "deals" and hint.ids == ("7",)


def test_a_payload_that_is_not_pipedrive_is_a_400(hooks: tuple[Client, Daemon]) -> None:
    client, _ = hooks
    for body in (b"<html>nope</html>", b'{"meta": ', b"[1, 2]"):
        response = client.post("/webhooks/northwind", data=body, headers=_basic(SECRET))
        assert response.status_code == 400, body
    big = b"x" * (ops.MAX_WEBHOOK_BYTES + 1)
    assert client.post("/webhooks/northwind", data=big,
                       headers=_basic(SECRET)).status_code == 413


# -- end to end: a webhook makes the daemon re-read the CRM at once -------------------------
def wait_for(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)  # poll interval; the deadline decides
    raise AssertionError(f"timed out waiting for {what}")


def test_a_webhook_triggers_an_immediate_incremental_sync(tmp_path: Path, db_url: str) -> None:
    with FakePipedrive(sample_dataset(NOW, deals=10), token=TOKEN) as fake:
        tenant = {**demo_tenant(fake.base_url), "interval_minutes": 600,
                  "webhook_secret": {"$env": "NW_HOOK"}}
        config = write_config(tmp_path, db_url, {"northwind": tenant})
        data = yaml.safe_load(config.read_text("utf-8"))
        data.update(http={"port": 0}, replica={"poll_seconds": 0.5,
                                               "webhook_debounce_seconds": 0.2})
        config.write_text(yaml.safe_dump(data), "utf-8")
        env = {**os.environ, "NORTHWIND_PIPEDRIVE_TOKEN": TOKEN, "NW_HOOK": SECRET}
        log_path = tmp_path / "daemon.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(syncd_command(config, "run"), env=env,
                                       stdout=subprocess.DEVNULL, stderr=log)
        db = store.Database(db_url)
        try:
            found = wait_for("the daemon's address", lambda: re.search(
                r"HTTP on (http://\S+)", log_path.read_text("utf-8")))
            url = found.group(1)

            def ok_runs() -> int:
                with db.session() as session:
                    return len(session.scalars(select(store.SyncRunRow.id).where(
                        store.SyncRunRow.status == "ok")).all())

            wait_for("the first pass", ok_runs)
            deal_id = fake.deals.ids()[0]
            fake.edit("deals", deal_id, title="Changed after the first pass")
            request = urllib.request.Request(f"{url}/webhooks/northwind", data=_v2(),
                                             headers=_basic(SECRET), method="POST")
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 202

            def stored_title() -> bool:
                with db.session() as session:
                    return "Changed after the first pass" in session.scalars(
                        select(store.DealRow.title)).all()

            # The title is committed with its page, before the pass ends: wait for the pass
            # itself to finish too, or SIGTERM would interrupt it (seen under xdist load).
            wait_for("the webhook's pass", lambda: stored_title() and ok_runs() == 2)
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert ok_runs() == 2, "one pass at start, one for the webhook; the interval is 10 h"


def test_a_webhook_at_a_draining_replica_is_left_for_the_others(
        hooks: tuple[Client, Daemon], database: store.Database) -> None:
    client, daemon = hooks
    with database.session() as session:
        from syncd.store import leases
        (claim,) = leases.claim_due(session, ["northwind"], "r1", interval=daemon.ttl,
                                    ttl=daemon.ttl, limit=1)
        leases.release(session, "northwind", "r1", claim.fence)
    daemon.stop()  # SIGTERM: this replica's loop will not flush anything any more
    response = client.post("/webhooks/northwind", data=_v2(), headers=_basic(SECRET))
    assert response.status_code == 202
    with database.session() as session:
        acquired = session.scalar(select(TenantLeaseRow.acquired_at)
                                  .where(TenantLeaseRow.tenant_key == "northwind"))
    assert acquired is None, "due at once for whichever replica claims next"
