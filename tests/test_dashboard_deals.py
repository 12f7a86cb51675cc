"""The deals behind the numbers: the violations page lists every open violation of the
report, filters and sorts by the query string, links each deal to its CRM card, and speaks
the tenant's language unless ``?lang=`` says otherwise."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from support import FAST_BURST, demo_tenant, report_json, run_syncd, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive
from werkzeug.test import Client

from syncd import store
from syncd.config import load_settings, load_tenant
from syncd.deal_list import Filters
from syncd.plugins import make_plugin_manager
from syncd.web import WebApp, WebContext
from syncd.web.dashboard import register

TOKEN = "pd-deals-token-5521"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}
CYRILLIC = "[\u0400-\u04ff]"


@pytest.fixture
def synced(tmp_path: Path, db_url: str, monkeypatch) -> Path:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as fake:
        path = tmp_path / "tenants" / "northwind.yaml"
        tenant = yaml.safe_load(path.read_text(encoding="utf-8"))
        tenant["connection"].update(base_url=fake.base_url, burst_limit=fake.burst_limit)
        tenant["language"] = "ru"  # Russian readers: the audit explains in Russian
        path.write_text(yaml.safe_dump(tenant), encoding="utf-8")
        result = run_syncd(config, "sync", env=ENV)
        assert result.returncode == 0, result.stderr
    # the tenant as the consultant configured it: its real CRM address
    tenant["connection"]["base_url"] = "https://northwind.pipedrive.com"
    path.write_text(yaml.safe_dump(tenant), encoding="utf-8")
    return config


def client_for(config: Path, database: store.Database) -> Client:
    settings = load_settings(config)
    plugins = make_plugin_manager()
    tenant = load_tenant(settings, "northwind", plugins.connectors, offline=True)
    app = WebApp()
    register(app, WebContext(settings=settings, db=database, plugins=plugins,
                             extras={"tenants": {"northwind": tenant}, "auth_token": None,
                                     "http_host": "127.0.0.1"}))
    return Client(app)


def deal_rows(page: str) -> list[dict[str, str]]:
    """Each listed violation: its data attributes and its cells' text."""
    found = []
    for attrs, body in re.findall(r"<tr (data-deal=[^>]*)>(.*?)</tr>", page, re.S):
        row = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', attrs))
        row["cells"] = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                        for c in re.findall(r"<td[^>]*>(.*?)</td>", body, re.S)]
        link = re.search(r'href="([^"]+)"[^>]*data-crm-link', body)
        row["crm"] = html.unescape(link.group(1)) if link else ""
        found.append(row)
    return found


def test_the_list_is_the_report_deal_by_deal(synced: Path, database: store.Database) -> None:
    report = report_json(synced, "northwind", env=ENV)
    violations = report["violations"]
    assert len(violations) > 5
    client = client_for(synced, database)
    page = client.get("/dashboard/northwind/deals").get_data(as_text=True)
    assert '<html lang="ru">' in page  # the tenant's language
    rows = deal_rows(page)
    assert sorted((r["deal"], r["rule"]) for r in rows) == sorted(
        (v["deal_id"] or "", v["rule"]) for v in violations)
    # titles, never raw codes; a link to the deal's card in the client's Pipedrive
    for row in rows:
        assert row["cells"][4] and row["cells"][4] != row["rule"], row
        assert row["crm"] == (f"https://northwind.pipedrive.com/deal/{row['deal']}"
                              if row["deal"] else "")
    assert re.search(r'data-k="deals-shown" data-shown="(\d+)" data-total="(\d+)"',
                     page).groups() == (str(len(violations)), str(len(violations)))
    # "since" is when the problem began (as the digests date it), not when syncd first saw it
    since = dict(((d, r), day) for d, r, day in re.findall(
        r'<tr data-deal="([^"]*)" data-rule="([^"]*)".*?<time datetime="([^"]+)"', page, re.S))
    began = [v for v in violations if (v["details"] or {}).get("entered_at")
             and v["details"]["entered_at"][:10] < v["opened_at"][:10]]
    assert began, "the sample has deals stuck since before the first audit"
    for v in began:
        assert since[(v["deal_id"] or "", v["rule"])] <= v["details"]["entered_at"][:10], v

    # filter by one manager: exactly that manager's violations
    owner = max({v["owner_id"] for v in violations},
                key=lambda o: sum(v["owner_id"] == o for v in violations))
    mine = deal_rows(client.get(f"/dashboard/northwind/deals?owner={owner}").get_data(
        as_text=True))
    assert {r["owner"] for r in mine} == {owner}
    assert len(mine) == sum(v["owner_id"] == owner for v in violations)

    # by rule, sorted newest first
    rule = violations[0]["rule"]
    listed = deal_rows(client.get(f"/dashboard/northwind/deals?rule={rule}&sort=since&dir=desc"
                                  ).get_data(as_text=True))
    assert {r["rule"] for r in listed} == {rule}
    assert len(listed) == report["violations_by_rule"][rule]


def test_english_on_request_and_filters_in_links(synced: Path, database: store.Database) -> None:
    client = client_for(synced, database)
    russian = client.get("/dashboard/northwind/deals").get_data(as_text=True)
    english = client.get("/dashboard/northwind/deals?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english and "Open violations" in english
    assert "Открытые нарушения" in russian and "Open violations" not in russian
    # the explanations too: the stored ones are Russian (the tenant's), English is asked
    why = [row["cells"][7] for row in deal_rows(english)]
    assert why and not any(re.search(CYRILLIC, text) for text in why), why
    assert any(re.search(CYRILLIC, row["cells"][7]) for row in deal_rows(russian))
    assert not any(row["cells"][5] in {"won", "deferred"} for row in deal_rows(english))
    # the language switch keeps the filters
    switch = re.search(r'data-lang="en" href="\?([^"]+)"',
                       client.get("/dashboard/northwind/deals?rule=stalled").get_data(
                           as_text=True)).group(1)
    assert parse_qs(html.unescape(switch)) == {"rule": ["stalled"], "lang": ["en"]}
    # the tenant page in English: its counts link to the English list
    page = client.get("/dashboard/northwind?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in page and 'data-lang="ru" href="?lang=ru"' in page
    links = re.findall(r'href="(/dashboard/northwind/deals[^"]*)"', page)
    assert links and all("lang=en" in html.unescape(link) for link in links), links
    assert any("rule=" in link for link in links)
    # sorting links carry the filters
    sort = re.search(r'href="\?([^"]+)" data-sort="owner"', english).group(1)
    assert parse_qs(html.unescape(sort))["sort"] == ["owner"]


def test_filters_read_and_write_the_query_string() -> None:
    f = Filters.from_args({"owner": "7", "period": "2026-02", "sort": "bogus",
                           "since": "not-a-day", "dir": "desc"})
    assert (f.owner, f.sort, f.since, f.dir) == ("7", "since", "", "desc")
    assert parse_qs(f.query()) == {"owner": ["7"], "period": ["2026-02"], "dir": ["desc"]}
    start, end = f.window()
    assert (start.isoformat(), end.isoformat()) == ("2026-02-01", "2026-02-28")
    december = Filters(period="2026-12", since="2026-12-10").window()
    assert (december[0].isoformat(), december[1].isoformat()) == ("2026-12-10", "2026-12-31")
    assert urlsplit("?" + Filters().query(rule="stalled")).query == "rule=stalled"


def test_each_crm_links_a_deal_to_its_card() -> None:
    from types import SimpleNamespace

    from syncd_amocrm import AmoCRMConnector
    from syncd_bitrix24 import Bitrix24Connector
    from syncd_gsheets.connector import GSheetsConnector, SpreadsheetConnector
    from syncd_pipedrive import PipedriveConnector

    def settings(**values: str) -> Any:  # only what deal_url reads
        return SimpleNamespace(**values)

    assert PipedriveConnector.deal_url(settings(base_url="https://acme.pipedrive.com/"),
                                       "42") == "https://acme.pipedrive.com/deal/42"
    assert AmoCRMConnector.deal_url(settings(base_url="https://acme.amocrm.ru"), "17657") == (
        "https://acme.amocrm.ru/leads/detail/17657")
    assert Bitrix24Connector.deal_url(settings(base_url="https://volga.bitrix24.ru"), "410") == (
        "https://volga.bitrix24.ru/crm/deal/details/410/")
    sheet = settings(base_url="", spreadsheet_id="1AbCdEfGhIjK")
    assert GSheetsConnector.deal_url(sheet, "r7") == (
        "https://docs.google.com/spreadsheets/d/1AbCdEfGhIjK/edit")
    assert SpreadsheetConnector.deal_url(settings(base_url=""), "r7") is None
    # an id is a path segment, never a way to another address
    assert PipedriveConnector.deal_url(settings(base_url="https://acme.pipedrive.com"),
                                       "../x?y") == "https://acme.pipedrive.com/deal/..%2Fx%3Fy"


def test_teams_count_and_filter_their_members_deals() -> None:
    from datetime import date

    from syncd.deal_list import Row, select_rows
    from syncd.desk import deals_link, teams

    report = {"people": {"period": "2026-12", "managers": [
        {"user_id": "9", "name": "Orlova", "period": "2026-12", "members": ["1", "2"]},
        {"user_id": "9", "name": "Orlova", "period": "2026-11", "members": ["3"]}]},
        "violations": [{"owner_id": "1"}, {"owner_id": "2"}, {"owner_id": "9"},
                       {"owner_id": "3"}, {"owner_id": None}]}
    (team,) = teams(report, deals_link("/dashboard/northwind/deals?lang=en"))
    assert (team["name"], team["count"]) == ("Orlova", 3)  # members and the manager, this month
    assert team["href"] == "/dashboard/northwind/deals?lang=en&team=9"

    def row(owner: str, team: str) -> Row:
        return Row(deal_id=owner, deal_title=f"Deal {owner}", deal_url=None, owner_id=owner,
                   owner=owner, team_id=team, team=team, pipeline_id="", pipeline="",
                   rule="stalled", rule_title="Stalled", stage_key="", stage="",
                   stage_order=0, since=date(2026, 12, 1), explanation="")

    kept = select_rows([row("1", "9"), row("3", ""), row("9", "9")], Filters(team="9"))
    assert [r.owner_id for r in kept] == ["1", "9"]


def test_a_long_list_comes_in_pages_and_counts_every_row() -> None:
    from datetime import date

    from syncd.deal_list import PAGE_SIZE, Row

    rows = [Row(deal_id=str(i), deal_title=f"Deal {i}", deal_url=None, owner_id="1", owner="A",
                team_id="", team="", pipeline_id="", pipeline="", rule="stalled",
                rule_title="Stalled", stage_key="", stage="", stage_order=0,
                since=date(2026, 12, 1), explanation="") for i in range(PAGE_SIZE * 2 + 3)]
    first, number, pages = Filters.from_args({}).page_of(rows)
    assert (len(first), number, pages) == (PAGE_SIZE, 1, 3)
    last, number, _ = Filters.from_args({"page": "3"}).page_of(rows)
    assert (len(last), number, last[-1].deal_id) == (3, 3, rows[-1].deal_id)
    beyond, number, _ = Filters.from_args({"page": "99"}).page_of(rows)
    assert number == 3 and beyond == last
    assert Filters.from_args({"page": "-1"}).page == "" and Filters.from_args(
        {"page": "x"}).page == ""
    assert parse_qs(Filters(owner="1", page="2").query(page="")) == {"owner": ["1"]}
