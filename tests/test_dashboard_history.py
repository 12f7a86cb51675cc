"""Daily snapshots: written by the first good pass of a tenant's day, one per day; months
read back as trends; `syncd report --compare MONTH` sets the report against a month."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select
from support import FAST_BURST, demo_tenant, report_json, run_syncd, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import history, store
from syncd.store.models import TenantSnapshotRow

TOKEN = "pd-history-token-8812"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": TOKEN}


def figures_with(open_violations: int, won: int, lost: int) -> dict:
    return {"open_violations": open_violations, "deals_with_violations": open_violations,
            "open_deals": 10, "employees": {"1": 2.5}, "client_karma": 4.0,
            "kpis": {"win_rate": {"rate": round(won / (won + lost), 4), "won": won,
                                  "lost": lost}}}


def test_one_snapshot_a_day_and_the_months_read_back(database: store.Database) -> None:
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, "northwind", "pipedrive")
        assert history.record(session, tenant_id, date(2026, 10, 3), figures_with(9, 1, 3))
        assert history.record(session, tenant_id, date(2026, 10, 28), figures_with(7, 2, 3))
        assert not history.record(session, tenant_id, date(2026, 10, 28), figures_with(1, 1, 1))
        assert history.record(session, tenant_id, date(2026, 12, 1), figures_with(4, 3, 3))
    with database.session() as session:
        months = history.months(session, tenant_id, date(2026, 12, 6), count=3)
    assert [m["month"] for m in months] == ["2026-10", "2026-11", "2026-12"]
    assert [m["day"] for m in months] == ["2026-10-28", None, "2026-12-01"]
    assert months[0]["figures"]["open_violations"] == 7  # the month's last, not the retry
    rows = {r["key"]: r for r in history.compare(months[0]["figures"], months[2]["figures"])}
    assert rows["open_violations"]["change"] == -3 and rows["open_violations"]["better"]
    assert rows["win_rate"]["after"] == {"value": 0.5, "n": 3, "of": 6}
    assert rows["win_rate"]["better"] is True
    assert history.month_list(date(2026, 1, 15), 3) == ["2025-11", "2025-12", "2026-01"]


def test_the_pass_writes_the_day_once_and_the_report_compares(tmp_path: Path, db_url: str,
                                                              database: store.Database,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    config = write_config(tmp_path, db_url, {"northwind": demo_tenant("http://127.0.0.1:9")})
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as fake:
        path = tmp_path / "tenants" / "northwind.yaml"
        tenant = yaml.safe_load(path.read_text(encoding="utf-8"))
        tenant["connection"].update(base_url=fake.base_url, burst_limit=fake.burst_limit)
        path.write_text(yaml.safe_dump(tenant), encoding="utf-8")
        for _ in range(2):
            result = run_syncd(config, "sync", env=ENV)
            assert result.returncode == 0, result.stderr
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(TenantSnapshotRow)) == 1
        (day, stored), = history.snapshots(session, store.ensure_tenant(
            session, "northwind", "pipedrive"))
    report = report_json(config, "northwind", env=ENV)
    assert stored["open_violations"] == len(report["violations"]) > 0
    assert stored["by_rule"] == report["violations_by_rule"]
    assert stored["kpis"]["win_rate"]["won"] == report["kpis"]["win_rate"]["won"]

    month = day.strftime("%Y-%m")
    compared = run_syncd(config, "report", "northwind", "--format", "json", "--compare", month,
                         env=ENV)
    assert compared.returncode == 0, compared.stderr
    section = json.loads(compared.stdout)["compare"]
    assert section["snapshot_day"] == day.isoformat()
    rows = {r["key"]: r for r in section["measures"]}
    assert rows["open_violations"]["before"]["value"] == stored["open_violations"]
    assert rows["open_violations"]["after"]["value"] == len(report["violations"])
    empty = run_syncd(config, "report", "northwind", "--compare", "2001-01", env=ENV)
    assert empty.returncode == 0 and "2001-01" in empty.stdout
    bad = run_syncd(config, "report", "northwind", "--compare", "last month", env=ENV)
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr
