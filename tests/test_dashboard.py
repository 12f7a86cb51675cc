"""Dashboard routes: binding rules, authentication, pages and JSON from the store."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from support import demo_tenant, write_config
from werkzeug.test import Client

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.errors import ConfigError
from syncd.plugins import make_plugin_manager
from syncd.web import WebApp, WebContext
from syncd.web.dashboard import check_binding, health, is_loopback, register

TOKEN = "dash-token-3f9a1c"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("192.168.1.5", False), ("example.com", False),
])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_non_loopback_binding_without_token_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"http\.auth_token"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", TOKEN)
    check_binding("127.0.0.1", None)
    with pytest.raises(ConfigError, match="not a loopback address"):
        register(WebApp(), WebContext(extras={"http_host": "10.0.0.7"}))


def test_health_of_the_last_run() -> None:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert health(None, 15, now) == "none"
    assert health({"status": "failed", "finished_at": now}, 15, now) == "failed"
    assert health({"status": "ok", "finished_at": now - timedelta(minutes=20)}, 15, now) == "ok"
    assert health({"status": "ok", "finished_at": now - timedelta(hours=2)}, 15, now) == "stale"


@pytest.fixture
def client_factory(tmp_path: Path, db_url: str, database: store.Database, monkeypatch):
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "unused-token-123")
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    settings = load_settings(config)
    plugins = make_plugin_manager()
    tenant = load_tenant(settings, "northwind", plugins.connectors)

    def make(token: str | None, host: str = "127.0.0.1") -> Client:
        app = WebApp()
        register(app, WebContext(settings=settings, db=database, plugins=plugins,
                                 extras={"tenants": {"northwind": tenant}, "auth_token": token,
                                         "http_host": host}))
        return Client(app)

    return make


def test_pages_on_loopback_without_token(client_factory) -> None:
    client = client_factory(None)
    index = client.get("/dashboard")
    assert index.status_code == 200
    assert 'data-tenant="northwind"' in index.get_data(as_text=True)
    page = client.get("/dashboard/northwind")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert 'id="report-data"' in text
    # scripts from this server only: the vendored chart library, no CDN
    assert re.findall(r'<script src="([^"]+)"', text) == ["/dashboard/static/chart.umd.min.js"]
    library = client.get("/dashboard/static/chart.umd.min.js")
    assert library.status_code == 200 and b"Chart.js v4" in library.get_data()
    assert client.get("/dashboard/static/../../cli.py").status_code == 404
    data = json.loads(client.get("/dashboard/northwind.json").get_data(as_text=True))
    assert data["schema"] == "syncd.report/1" and data["tenant"] == "northwind"
    assert {"people", "kpis", "contact_matrix"} <= set(data)
    assert client.get("/dashboard/nobody").status_code == 404


def test_token_required_when_configured(client_factory) -> None:
    client = client_factory(TOKEN, host="0.0.0.0")
    for path in ("/dashboard", "/dashboard/northwind", "/dashboard/northwind.json"):
        denied = client.get(path)
        assert denied.status_code == 401, path
        assert denied.headers["WWW-Authenticate"].startswith("Basic")
        assert TOKEN not in denied.get_data(as_text=True)
    assert client.get("/dashboard", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/dashboard",
                      headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert client.get("/dashboard/northwind",
                      headers={"Authorization": f"Basic {basic}"}).status_code == 200
