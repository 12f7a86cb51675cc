# ruff: noqa: RUF001  (Russian texts)
"""`syncd report --format html`: one self-contained file; CRM text cannot inject markup."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from support import demo_tenant, run_syncd, write_config

from syncd.report_html import embed_json, render_html

CHROMIUM = "/usr/bin/chromium"
EVIL = '</script><img src=x onerror="document.title=1">&amp;'


def minimal_report() -> dict:
    return {
        "schema": "syncd.report/1", "tenant": "acme", "plugin": "pipedrive",
        "salesbook": "b2b-services-9", "currency": "EUR", "as_of": "2026-06-15T12:00:00+00:00",
        "last_sync": None, "counts": {"open_deals": 3}, "violations_by_rule": {},
        "violations": [], "segments": [],
        "client_karma": [{"company_id": "7", "company_name": EVIL, "segment": None,
                          "karma": 12.5, "lines": []}],
        "people": {"period": "2026-06", "months": ["2026-05", "2026-06"], "employees": [],
                   "managers": [], "teams_from": None},
        "kpis": {"funnel": [], "forward_moves": {"weeks": [], "owners": [], "target": 5}},
        "contact_matrix": {"months": ["2026-06"], "rows": [
            {"company_id": "7", "company": EVIL, "cells": {"2026-06": {
                "call": 1, "visit": 0, "contract": 0, "planned": False}}}]},
    }


def test_embedded_json_cannot_close_the_script_element() -> None:
    text = embed_json({"name": EVIL})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": EVIL}


def test_the_page_is_self_contained() -> None:
    page = render_html(minimal_report())
    assert "<img" not in page and "</script><img" not in page
    external = re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page)
    assert external == []
    from syncd.report_html import CHART_LIBRARY

    library = CHART_LIBRARY.read_text(encoding="utf-8")
    assert library in page  # Chart.js inlined: a file needs no server, no CDN
    urls = set(re.findall(r"https?://[^\s'\"`)]+", page.replace(library, "")))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace name, never fetched
    assert "default-src 'none'" in page


def test_chromium_renders_crm_text_as_text(tmp_path: Path) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)",
                    pytrace=False)
    page = tmp_path / "page.html"
    page.write_text(render_html(minimal_report()), encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert re.search(r'<body[^>]*data-rendered="1"', dom)
    assert "<img src=" not in dom  # the name is text, not an element
    assert "&lt;/script&gt;&lt;img src=x" in dom
    assert "<title>syncd · acme</title>" in dom  # onerror never ran


def test_report_format_html_writes_one_file(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    env = {"NORTHWIND_PIPEDRIVE_TOKEN": "unused-token-123"}
    target = tmp_path / "out" / "northwind.html"
    target.parent.mkdir()
    result = run_syncd(config, "report", "northwind", "--format", "html", "--output",
                       str(target), env=env)
    assert result.returncode == 0, result.stderr
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page).group(1))
    assert data["tenant"] == "northwind" and data["schema"] == "syncd.report/1"
    assert {"people", "kpis", "contact_matrix"} <= set(data)


def test_the_page_embeds_counts_not_every_record() -> None:
    from syncd.report_html import page_view

    report = minimal_report()
    report["violations"] = [{"rule": "stalled" if i % 3 else "inactive",
                             "owner_id": str(i % 4)} for i in range(100)]
    report["client_karma"] = [{"company_id": str(i), "company_name": f"C{i}", "karma": i,
                               "lines": [{"criterion": "revenue"}] * 5} for i in range(40)]
    report["contact_matrix"]["rows"] *= 100
    report["people"]["employees"] = [{"user_id": "1", "period": p, "karma": 1.0}
                                     for p in ("2026-04", "2026-05", "2026-06")]
    report["people"]["months"] = ["2026-04", "2026-05", "2026-06"]
    view = page_view(report)
    assert "violations" not in view and view["violations_open"] == 100
    assert sum(sum(c.values()) for c in view["violations_by_owner"].values()) == 100
    assert view["violations_by_owner"]["0"] == {"inactive": 9, "stalled": 16}
    assert len(view["client_karma"]) == 15 and "lines" not in view["client_karma"][0]
    assert len(view["contact_matrix"]["rows"]) == 60
    assert view["contact_matrix"]["rows_total"] == 100
    assert [e["period"] for e in view["people"]["employees"]] == ["2026-05", "2026-06"]
    assert len(report["violations"]) == 100  # the report itself is untouched


def test_the_page_speaks_the_reports_language() -> None:
    """Headings from the template, the script's texts embedded, rule titles not codes."""
    report = minimal_report()
    report.update(language="ru", violations_by_rule={"no_next_step": 2},
                  rule_titles={"no_next_step": "Не запланирован следующий шаг"})
    page = render_html(report)
    assert page.startswith('<!DOCTYPE html>\n<html lang="ru">')
    assert "<h2>Открытые нарушения по правилам</h2>" in page
    assert "Open violations by rule" not in page.split("<script")[0]
    texts = json.loads(re.search(r'id="report-texts">(.*?)</script>', page).group(1))
    assert texts["open violations"] == "открытые нарушения"
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page).group(1))
    assert data["language"] == "ru" and data["rule_titles"]["no_next_step"].startswith("Не ")
    english = render_html(report, language="en")
    assert '<html lang="en">' in english and "<h2>Open violations by rule</h2>" in english
    assert re.search(r'id="report-texts">\{\}</script>', english)


def test_report_lang_overrides_the_tenants_language(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    env = {"NORTHWIND_PIPEDRIVE_TOKEN": "unused-token-123"}
    table = run_syncd(config, "report", "northwind", "--lang", "ru", env=env)
    assert table.returncode == 0, table.stderr
    assert "Открытые нарушения по правилам" in table.stdout
    assert "Книга продаж «Сложные B2B-услуги (9 этапов)»" in table.stdout
    assert "Open violations" not in table.stdout
    data = json.loads(run_syncd(config, "report", "northwind", "--format", "json", "--lang",
                                "ru", env=env).stdout)
    assert data["language"] == "ru"
    assert data["rule_titles"]["no_next_step"] == "Не запланирован следующий шаг"
    assert data["stage_titles"]["briefing"] == "Бриф"
    english = json.loads(run_syncd(config, "report", "northwind", "--format", "json",
                                   env=env).stdout)
    assert english["language"] == "en" and english["stage_titles"]["briefing"] == "Briefing"
    refused = run_syncd(config, "report", "northwind", "--lang", "de", env=env)
    assert refused.returncode == 2 and "'de' is not one of 'ru', 'en'" in refused.stderr


def test_chromium_draws_the_russian_page(tmp_path: Path) -> None:
    """The script's texts and number formats in Russian (Intl), with no script error."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)",
                    pytrace=False)
    report = minimal_report()
    report.update(language="ru", violations_by_rule={"no_next_step": 1234},
                  rule_titles={"no_next_step": "Не запланирован следующий шаг"})
    report["violations"] = [{"rule": "no_next_step", "owner_id": "1"}] * 1234
    page = tmp_path / "page.html"
    page.write_text(render_html(report), encoding="utf-8")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert re.search(r'<body[^>]*data-rendered="1"', dom)
    assert 'data-k="violations-open">1&nbsp;234<' in dom  # Russian digit groups
    assert '<div class="l">открытые нарушения</div>' in dom
    # the rule's row and chart label: a title, not a code
    assert '<tr data-rule="no_next_step"><td>Не запланирован следующий шаг</td>' in dom
    assert re.search(r'<body[^>]*data-charts="1"', dom), "Chart.js drew the charts"
    assert "Кармы клиентов пока нет." not in dom.split("<script")[0]  # one company has karma
