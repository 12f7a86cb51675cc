"""End to end: `syncd sync` of the Pipedrive demo data, `syncd dashboard` as a subprocess,
the page opened in headless Chromium; what the page's script rendered must match the report.

Chromium is Debian's package (/usr/bin/chromium, installed by .ci/run). ``--dump-dom``
prints the DOM after the load event, i.e. after the inline script drew the page.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from support import FAST_BURST, demo_tenant, report_json, run_syncd, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

CHROMIUM = "/usr/bin/chromium"
TOKEN = "pd-dash-e2e-token-77a1"
DASH_TOKEN = "dash-e2e-secret-91b2"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN, "SYNCD_DASH_TOKEN": DASH_TOKEN}


def text_of(dom: str, key: str) -> str:
    """The text the script put into the element with ``data-k="key"``."""
    found = re.findall(rf'data-k="{re.escape(key)}"[^>]*>([^<]*)<', dom)
    assert len(found) == 1, (key, found)
    return html.unescape(found[0]).strip()


def row_of(dom: str, attrs: str) -> str:
    """The inner HTML of the one ``<tr>`` whose attributes start with ``attrs``."""
    found = re.findall(rf"<tr {re.escape(attrs)}>(.*?)</tr>", dom)
    assert len(found) == 1, (attrs, len(found))
    return found[0]


def cell_of(row: str, css_class: str) -> str:
    found = re.findall(rf'<td class="{re.escape(css_class)}[^"]*"[^>]*>([^<]*)</td>', row)
    assert len(found) == 1, (css_class, row)
    return html.unescape(found[0])


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"  # noqa: RUF001 - the page's dash


def number(text: str) -> float:
    return float(text.replace(",", "").replace("*", "").strip())


def dump_dom(url: str, profile: Path) -> str:
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def configured(tmp_path: Path, db_url: str) -> Path:
    """The demo tenant's config with the dashboard on a free loopback port (no data)."""
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    daemon = yaml.safe_load(config.read_text(encoding="utf-8"))
    daemon["http"] = {"host": "127.0.0.1", "port": 0}
    config.write_text(yaml.safe_dump(daemon), encoding="utf-8")
    return config


@pytest.fixture
def synced(configured: Path) -> Path:
    """The same after one `syncd sync` of the fake Pipedrive's demo account."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)",
                    pytrace=False)
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as fake:
        tenant_file = configured.parent / "tenants" / "northwind.yaml"
        tenant = yaml.safe_load(tenant_file.read_text(encoding="utf-8"))
        tenant["connection"].update(base_url=fake.base_url, burst_limit=fake.burst_limit)
        tenant_file.write_text(yaml.safe_dump(tenant), encoding="utf-8")
        result = run_syncd(configured, "sync", env=ENV)
        assert result.returncode == 0, result.stderr
    return configured


def start_dashboard(config: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(syncd_command(config, "dashboard", "--port", "0"),
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **ENV})
    assert process.stderr is not None
    for line in process.stderr:  # blocks until the server announces itself (or exits)
        found = re.search(r"dashboard on (http://\S+)/dashboard", line)
        if found:
            return process, found.group(1)
    process.wait(timeout=10)
    pytest.fail(f"syncd dashboard exited with {process.returncode} before serving")


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0


def test_page_and_explain_show_what_the_report_says(synced: Path, tmp_path: Path) -> None:
    report = report_json(synced, "northwind", env=ENV)
    process, base = start_dashboard(synced)
    try:
        dom = dump_dom(f"{base}/dashboard/northwind", tmp_path / "profile")
        index = urllib.request.urlopen(f"{base}/dashboard", timeout=30).read().decode()
    finally:
        stop(process)
    assert re.search(r'<body[^>]*data-rendered="1"', dom), "the page's script did not finish"
    assert 'data-tenant="northwind"' in index and 'class="badge ok"' in index

    assert text_of(dom, "sync-status") == report["last_sync"]["status"] == "ok"
    assert number(text_of(dom, "violations-open")) == len(report["violations"]) > 0
    assert number(text_of(dom, "open-deals")) == report["counts"]["open_deals"]
    kpis = report["kpis"]
    assert text_of(dom, "win-rate") == pct(kpis["win_rate"]["rate"])
    assert number(text_of(dom, "new-clients")) == kpis["new_clients"]["total"]
    assert number(text_of(dom, "plan-deals")) == kpis["plan_inversion"]["deals_needed"]
    assert number(text_of(dom, "plan-leads")) == kpis["plan_inversion"]["leads_needed"]

    for stage in kpis["funnel"]:
        row = row_of(dom, f'data-stage="{stage["stage"]}"')
        assert number(cell_of(row, "entered")) == stage["entered"]
        assert number(cell_of(row, "moved")) == stage["moved_on"]
        assert number(cell_of(row, "lost")) == stage["lost"]
        assert cell_of(row, "conversion") == pct(stage["conversion"])

    people = report["people"]
    current = [e for e in people["employees"] if e["period"] == people["period"]]
    assert current, "the demo has karma this month (forward moves, violations)"
    for employee in current:
        row = row_of(dom, f'data-user="{employee["user_id"]}" '
                          f'data-period="{employee["period"]}"')
        assert employee["name"] in html.unescape(row)
        assert number(cell_of(row, "karma")) == employee["karma"]
        assert number(cell_of(row, "bonus")) == employee["bonus"]

    for segment in report["segments"]:
        row = row_of(dom, f'data-segment="{html.escape(segment["segment"])}"')
        assert number(cell_of(row, "mean")) == segment["mean_karma"]

    matrix = report["contact_matrix"]
    shown = 0
    for company in matrix["rows"][:60]:
        row = row_of(dom, f'data-company="{company["company_id"]}"')
        for month, cell in company["cells"].items():
            title = (f'data-month="{month}" title="{month}: {cell["call"]} call(s), '
                     f'{cell["visit"]} visit(s), {cell["contract"]} contract(s)')
            assert title in row, (company["company"], month, cell)
            shown += 1
    assert shown > 0
    explain_agrees_with_the_report(synced, report)


def explain_agrees_with_the_report(config: Path, report: dict) -> None:
    """`syncd explain`: the lines of a person and of a company sum to the report's figures."""
    employee = max(report["people"]["employees"], key=lambda e: e["lines"])
    result = run_syncd(config, "explain", "northwind", "--user", employee["user_id"],
                       "--period", employee["period"], "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    (period,) = json.loads(result.stdout)["periods"]
    assert len(period["lines"]) == employee["lines"]
    assert sum(line["amount"] for line in period["lines"]) == pytest.approx(
        employee["karma"], abs=0.01)
    assert all(line["source_type"] in {"deal", "company", "stage_change", "violation"}
               and line["source_id"] for line in period["lines"])
    company = report["client_karma"][0]
    result = run_syncd(config, "explain", "northwind", "--company", company["company_id"],
                       "--format", "json", env=ENV)
    assert result.returncode == 0, result.stderr
    explained = json.loads(result.stdout)
    assert explained["karma"] == pytest.approx(company["karma"], abs=0.01)
    assert {(x["criterion"], x["source_id"]) for x in explained["lines"]} == {
        (x["criterion"], x["source_id"]) for x in company["lines"]}
    text = run_syncd(config, "explain", "northwind", "--user", employee["user_id"], env=ENV)
    assert text.returncode == 0 and employee["name"] in text.stdout
    both = run_syncd(config, "explain", "northwind", "--user", "1", "--company", "2", env=ENV)
    assert both.returncode == 2 and "exactly one of" in both.stderr


def test_dashboard_demands_the_token_when_configured(configured: Path) -> None:
    daemon = yaml.safe_load(configured.read_text(encoding="utf-8"))
    daemon["http"]["auth_token"] = {"$env": "SYNCD_DASH_TOKEN"}
    configured.write_text(yaml.safe_dump(daemon), encoding="utf-8")
    process, base = start_dashboard(configured)
    try:
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{base}/dashboard/northwind", timeout=30)
        assert denied.value.code == 401
        request = urllib.request.Request(f"{base}/dashboard/northwind.json",
                                          headers={"Authorization": f"Bearer {DASH_TOKEN}"})
        body = urllib.request.urlopen(request, timeout=30).read().decode()
    finally:
        stop(process)
    assert '"schema": "syncd.report/1"' in body or '"schema":"syncd.report/1"' in body


def test_dashboard_refuses_a_public_address_without_token(configured: Path) -> None:
    result = run_syncd(configured, "dashboard", "--host", "0.0.0.0", "--port", "0", env=ENV)
    assert result.returncode == 2
    assert "http.auth_token" in result.stderr
