"""Per-tenant dashboard tokens: a client's sales head sees only that client; the
consultancy's admin token sees all; tokens are stored hashed, listed and revocable."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from support import demo_tenant, run_syncd, write_config
from werkzeug.test import Client

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.plugins import make_plugin_manager
from syncd.store.models import DashboardTokenRow
from syncd.store.tokens import create_token, revoke_token, token_hash
from syncd.web import WebApp, WebContext
from syncd.web.dashboard import register

ADMIN = "consultancy-admin-7c21"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": "unused-token-123"}


@pytest.fixture
def config(tmp_path: Path, db_url: str, monkeypatch) -> Path:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "unused-token-123")
    return write_config(tmp_path, db_url, {
        "northwind": demo_tenant("http://127.0.0.1:9"),
        "southwind": demo_tenant("http://127.0.0.1:9")})


def make_client(config: Path, database: store.Database, admin: str | None) -> Client:
    settings = load_settings(config)
    plugins = make_plugin_manager()
    tenants = {key: load_tenant(settings, key, plugins.connectors)
               for key in ("northwind", "southwind")}
    app = WebApp()
    register(app, WebContext(settings=settings, db=database, plugins=plugins,
                             extras={"tenants": tenants, "auth_token": admin,
                                     "http_host": "127.0.0.1"}))
    return Client(app)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_tenant_token_shows_that_tenant_only(config: Path, database: store.Database) -> None:
    with database.session() as session:
        _, north = create_token(session, "northwind", "sales head")
    client = make_client(config, database, ADMIN)
    index = client.get("/dashboard", headers=bearer(north)).get_data(as_text=True)
    assert 'data-tenant="northwind"' in index and "southwind" not in index
    assert client.get("/dashboard/northwind.json", headers=bearer(north)).status_code == 200
    # another client's pages do not exist for this token (404, not a hint via 403)
    for path in ("/dashboard/southwind", "/dashboard/southwind.json"):
        assert client.get(path, headers=bearer(north)).status_code == 404, path
    # the link form: the whole site under /t/<token>/, links on the page keep the prefix
    linked = client.get(f"/t/{north}/dashboard")
    assert linked.status_code == 200
    assert f'href="/t/{north}/dashboard/northwind"' in linked.get_data(as_text=True)
    assert client.get(f"/t/{north}/dashboard/southwind").status_code == 404
    assert client.get("/t/sdt_forged/dashboard").status_code == 401
    # the consultancy's admin token sees both
    both = client.get("/dashboard", headers=bearer(ADMIN)).get_data(as_text=True)
    assert 'data-tenant="northwind"' in both and 'data-tenant="southwind"' in both
    assert client.get("/dashboard/southwind.json", headers=bearer(ADMIN)).status_code == 200


def test_tokens_are_stored_hashed_and_revocable(config: Path, database: store.Database) -> None:
    with database.session() as session:
        row, plain = create_token(session, "northwind")
        token_id = row.id
        _, admin = create_token(session, None, "second consultant")
    with database.session() as session:
        stored = session.scalars(select(DashboardTokenRow)).all()
        columns = [str(getattr(r, c.name)) for r in stored
                   for c in DashboardTokenRow.__table__.columns]
    assert not any(plain in value or admin in value for value in columns)
    assert token_hash(plain) in columns
    client = make_client(config, database, None)
    assert client.get("/dashboard/southwind", headers=bearer(admin)).status_code == 200
    assert client.get("/dashboard/northwind", headers=bearer(plain)).status_code == 200
    with database.session() as session:
        revoke_token(session, token_id)
    assert client.get("/dashboard/northwind", headers=bearer(plain)).status_code == 401
    assert client.get(f"/t/{plain}/dashboard/northwind").status_code == 401


def test_the_first_token_closes_the_open_loopback_door(config: Path,
                                                       database: store.Database) -> None:
    client = make_client(config, database, None)
    assert client.get("/dashboard").status_code == 200  # loopback, nothing handed out
    with database.session() as session:
        create_token(session, "northwind")
    assert client.get("/dashboard").status_code == 401
    assert client.get("/dashboard/southwind.json").status_code == 401


def test_tokens_command_creates_lists_and_revokes(config: Path) -> None:
    created = run_syncd(config, "tokens", "create", "northwind", "--label", "Ivanova",
                        env=ENV)
    assert created.returncode == 0, created.stderr
    token = re.search(r"(sdt_[\w-]+)", created.stdout).group(1)
    assert f"/t/{token}/dashboard/northwind" in created.stdout
    admin = run_syncd(config, "tokens", "create", "--admin", env=ENV)
    assert admin.returncode == 0, admin.stderr
    listed = run_syncd(config, "tokens", "list", "--format", "json", env=ENV)
    rows = json.loads(listed.stdout)
    assert [(r["tenant"], r["admin"], r["label"]) for r in rows] == [
        ("northwind", False, "Ivanova"), (None, True, "")]
    assert token not in listed.stdout and token[:10] in listed.stdout  # a prefix, not the token
    revoked = run_syncd(config, "tokens", "revoke", str(rows[0]["id"]), env=ENV)
    assert revoked.returncode == 0, revoked.stderr
    live = json.loads(run_syncd(config, "tokens", "list", "--format", "json", env=ENV).stdout)
    assert [r["admin"] for r in live] == [True]
    every = json.loads(run_syncd(config, "tokens", "list", "--all", "--format", "json",
                                 env=ENV).stdout)
    assert every[0]["revoked_at"] is not None
    unknown = run_syncd(config, "tokens", "create", "eastwind", env=ENV)
    assert unknown.returncode == 2 and "eastwind" in unknown.stderr
    neither = run_syncd(config, "tokens", "create", env=ENV)
    assert neither.returncode == 2 and "exactly one of" in neither.stderr
    missing = run_syncd(config, "tokens", "revoke", "999", env=ENV)
    assert missing.returncode == 2 and "999" in missing.stderr
