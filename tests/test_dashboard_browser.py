"""The dashboard used as a sales head would (issue 15 item 8), in headless Chromium driven
by Selenium through Debian's chromedriver: open the link a consultancy sends, read the
numbers, follow a count to its deals, filter by a manager, follow a deal to the CRM,
switch the language, and look at it on a phone. Screenshots are taken at each step and
compared with `syncd report --format json` by their numbers: the text the page shows
(DOM), never pixels."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import FAST_BURST, demo_tenant, report_json, run_syncd, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import history, store

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = "pd-browser-token-3307"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def navigate_by(browser: Any, element: Any) -> None:
    """Click ``element`` and wait until the browser has left the page it was on: a click
    returns before the navigation it starts, and rows read in between belong to the old
    page (then go stale under the reader)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(page))


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install -y chromium "
                    "chromium-driver (.ci/run does)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def served(tmp_path: Path, db_url: str, database: store.Database, monkeypatch) -> Any:
    """The demo account synced, a snapshot from last month, the dashboard serving it, and
    a tenant token for the client's sales head. The fake CRM keeps running (deal links)."""
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    daemon = yaml.safe_load(config.read_text(encoding="utf-8"))
    daemon["http"] = {"host": "127.0.0.1", "port": 0}
    config.write_text(yaml.safe_dump(daemon), encoding="utf-8")
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as fake:
        path = tmp_path / "tenants" / "northwind.yaml"
        tenant = yaml.safe_load(path.read_text(encoding="utf-8"))
        tenant["connection"].update(base_url=fake.base_url, burst_limit=fake.burst_limit)
        tenant["language"] = "ru"
        path.write_text(yaml.safe_dump(tenant), encoding="utf-8")
        synced = run_syncd(config, "sync", env=ENV)
        assert synced.returncode == 0, synced.stderr
        report = report_json(config, "northwind", env=ENV)
        last_month = history.month_list(date.today(), 2)[0]
        with database.session() as session:  # as a pass on the 28th of last month left it
            tenant_id = store.ensure_tenant(session, "northwind", "pipedrive")
            before = history.figures(report)
            before["open_violations"] += 3
            history.record(session, tenant_id, date.fromisoformat(f"{last_month}-28"), before)
        created = run_syncd(config, "tokens", "create", "northwind", "--label", "head of sales",
                            env=ENV)
        token = re.search(r"(sdt_[\w-]+)", created.stdout).group(1)
        process = subprocess.Popen(syncd_command(config, "dashboard", "--port", "0"),
                                   stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})
        try:
            for line in process.stderr:
                found = re.search(r"dashboard on (http://\S+)/dashboard", line)
                if found:
                    break
            else:
                pytest.fail("syncd dashboard exited before serving")
            yield {"base": found.group(1), "token": token, "report": report, "fake": fake,
                   "config": config, "last_month": last_month}
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0


def number(text: str) -> float:
    cleaned = text.replace("\u00a0", "").replace("\u202f", "").replace(" ", "")
    return float(cleaned.replace(",", ".").rstrip("%"))


def shot(driver: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    assert driver.save_screenshot(str(path)), name
    return path


def fits(driver: Any) -> bool:
    """Nothing wider than the window: no table clipped behind a sideways scrollbar."""
    return driver.execute_script(
        "return document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_a_sales_head_works_from_the_dashboard(served: dict, browser: Any,
                                               tmp_path: Path) -> None:
    report, base, token = served["report"], served["base"], served["token"]
    violations = report["violations"]
    shots = tmp_path / "screens"
    shots.mkdir()

    # the link the consultancy sent: the client's page, in the client's language (Russian)
    browser.get(f"{base}/t/{token}/dashboard/northwind")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ru"
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-rendered") == "1"
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-charts") == "1"
    shot(browser, shots, "1-desk-1280")
    assert fits(browser)
    # the numbers on the screen are the report's
    card = browser.find_element(By.CSS_SELECTOR, '[data-k="violations-open"]')
    assert number(card.text) == len(violations) > 0
    win = report["kpis"]["win_rate"]
    shown = browser.find_element(By.CSS_SELECTOR, '[data-k="win-rate-of"]')
    assert (int(shown.get_attribute("data-n")), int(shown.get_attribute("data-total"))) == (
        win["won"], win["won"] + win["lost"])
    assert f"{win['won']} из {win['won'] + win['lost']}" in shown.text
    for rule, count in report["violations_by_rule"].items():
        cell = browser.find_element(By.CSS_SELECTOR, f'[data-k="rule-{rule}"]')
        assert number(cell.text) == count, rule
        title = browser.find_element(By.CSS_SELECTOR, f'tr[data-rule="{rule}"] td').text
        assert title == report["rule_titles"][rule] != rule  # a title, never a code
    trend = browser.find_element(By.CSS_SELECTOR, 'tr[data-trend="open_violations"]')
    before = trend.find_element(By.CSS_SELECTOR, "td.before").text
    after = trend.find_element(By.CSS_SELECTOR, "td.after").text
    assert (number(before), number(after)) == (len(violations) + 3, len(violations))
    assert number(trend.find_element(By.CSS_SELECTOR, "td.change").text) == -3

    # follow the biggest rule's count to the deals behind it
    rule = max(report["violations_by_rule"], key=report["violations_by_rule"].get)
    navigate_by(browser, browser.find_element(By.CSS_SELECTOR, f'a[data-k="rule-{rule}"]'))
    assert f"/t/{token}/dashboard/northwind/deals" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-deal]")
    assert len(rows) == report["violations_by_rule"][rule]
    assert {r.get_attribute("data-rule") for r in rows} == {rule}
    assert fits(browser)
    shot(browser, shots, "2-deals-of-a-rule")

    # filter by one manager (the form, as a person uses it)
    browser.get(f"{base}/t/{token}/dashboard/northwind/deals")
    owner = max({v["owner_id"] for v in violations if v["owner_id"]},
                key=lambda o: sum(v["owner_id"] == o for v in violations))
    Select(browser.find_element(By.CSS_SELECTOR, 'select[name="owner"]')).select_by_value(owner)
    navigate_by(browser, browser.find_element(By.CSS_SELECTOR, 'button[data-action="filter"]'))
    rows = browser.find_elements(By.CSS_SELECTOR, "tr[data-deal]")
    assert {r.get_attribute("data-owner") for r in rows} == {owner}
    assert len(rows) == sum(v["owner_id"] == owner for v in violations)
    counted = browser.find_element(By.CSS_SELECTOR, '[data-k="deals-shown"]')
    assert int(counted.get_attribute("data-shown")) == len(rows)
    assert int(counted.get_attribute("data-total")) == len(violations)
    shot(browser, shots, "3-one-manager")

    # a deal to its card in the CRM
    link = browser.find_element(By.CSS_SELECTOR, "a[data-crm-link]")
    deal_id = link.get_attribute("data-crm-link")
    expected = f"{served['fake'].base_url}/deal/{deal_id}"
    assert link.get_attribute("href") == expected
    here = browser.current_window_handle
    link.click()
    opened = [h for h in browser.window_handles if h != here]
    assert len(opened) == 1
    browser.switch_to.window(opened[0])
    assert browser.current_url == expected
    browser.close()
    browser.switch_to.window(here)

    # the language: English on request, the filter kept, the same numbers
    navigate_by(browser, browser.find_element(By.CSS_SELECTOR, 'a[data-lang="en"]'))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "Open violations" in browser.find_element(By.TAG_NAME, "h1").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "tr[data-deal]")) == len(rows)
    shot(browser, shots, "4-english")

    # on a phone: the list reflows into cards, nothing clipped
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
    browser.get(f"{base}/t/{token}/dashboard/northwind/deals")
    assert fits(browser)
    shot(browser, shots, "5-phone-deals")
    browser.get(f"{base}/t/{token}/dashboard/northwind")
    assert fits(browser)
    assert number(browser.find_element(By.CSS_SELECTOR, '[data-k="violations-open"]').text) == (
        len(violations))
    shot(browser, shots, "6-phone-desk")
    # the token shows its own client only
    browser.get(f"{base}/t/{token}/dashboard")
    assert [r.get_attribute("data-tenant") for r in browser.find_elements(
        By.CSS_SELECTOR, "tr[data-tenant]")] == ["northwind"]
