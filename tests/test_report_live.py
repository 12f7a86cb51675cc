"""The live report the dashboard, the digests and ``syncd report`` read (syncd.report_live)
is ``build_report``'s report with the two long lists read from the store when iterated;
the deal list pages through the rows keeping only what the page needs (deal_list.listing).
Both are checked against the whole-report way they replace, on a generated tenant with
derived and pending stage history, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import random
import re
import sys
from collections import Counter
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import update
from support import REPO

from syncd import deal_list, store
from syncd.config import Tenant
from syncd.plugins import make_plugin_manager
from syncd.report import build_report
from syncd.report_live import live_report, without_views, write_json
from syncd.report_stream import ReportRows
from syncd.salesbook import load_salesbook
from syncd.store.models import DealRow, HistoryBacklogRow
from syncd.sync import PassOptions, run_pass

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench

CLOCK = bench.NOW + timedelta(minutes=5)


@pytest.fixture
def generated(database: store.Database) -> Tenant:
    """bench_incremental's account (300 deals) after its first pass, with some deals
    owing their stage history again and one deal deleted."""
    tenant = bench.make_tenant(bench.Account(300))
    run_pass(database, make_plugin_manager(load_entrypoints=False), tenant,
             PassOptions(clock=lambda: bench.NOW, full=True))
    with database.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        derived = sorted({row.deal_external_id for row in store.open_violations(session, tenant_id)
                          if (row.details or {}).get("history") == "derived"})
        assert len(derived) > 6, "the generated account has deals without stage history"
        for deal_id in derived[:4]:
            session.add(HistoryBacklogRow(tenant_id=tenant_id, deal_external_id=deal_id,
                                          queued_at=bench.NOW, done_at=None))
        session.execute(update(DealRow).where(DealRow.tenant_id == tenant_id,
                                              DealRow.external_id == derived[-1])
                        .values(deleted=True))
    return tenant


@pytest.mark.parametrize("language", ["ru", "en"])
def test_live_report_is_build_report(database: store.Database, generated: Tenant,
                                     language: str) -> None:
    expected = build_report(database, generated, clock=CLOCK, language=language)
    live = live_report(database, generated, clock=CLOCK, language=language)
    assert isinstance(live["violations"], ReportRows)
    assert isinstance(live["client_karma"], ReportRows)
    # the notes are right before a row is read (the derived-history note included)
    derived = {v["deal_id"] for v in expected["violations"]
               if (v["details"] or {}).get("history") == "derived"}
    assert len(derived) > 2
    assert any(re.search(rf"(^|\D){len(derived)}(\D|$)", note)
               for note in expected["notes"]), expected["notes"]
    assert live["notes"] == expected["notes"]
    got = {key: list(value) if isinstance(value, ReportRows) else value
           for key, value in without_views(live).items()}
    assert list(got) == list(expected)
    for key in expected:
        assert got[key] == expected[key], key
    # the counts by owner are the rows counted
    counted: dict[str, Counter[str]] = {}
    for v in expected["violations"]:
        counted.setdefault(v["owner_id"] or "(none)", Counter())[v["rule"]] += 1
    assert live["violations_by_owner"] == {k: dict(c) for k, c in counted.items()}
    totals = [sum(rules.values()) for rules in live["violations_by_owner"].values()]
    assert totals == sorted(totals, reverse=True)
    assert "(none)" in live["violations_by_owner"]  # the deleted deal's findings


def test_the_json_is_the_reports_json(database: store.Database, generated: Tenant) -> None:
    out = io.StringIO()
    write_json(live_report(database, generated, clock=CLOCK), out)
    assert out.getvalue() == json.dumps(build_report(database, generated, clock=CLOCK),
                                        ensure_ascii=False, indent=2)


def test_rows_slice_reads_only_the_first(database: store.Database, generated: Tenant) -> None:
    live = live_report(database, generated, clock=CLOCK)
    every = list(live["violations"])
    assert live["violations"][:7] == every[:7]
    assert live["violations"][3:9:2] == every[3:9:2]
    assert live["client_karma"][:2] == list(live["client_karma"])[:2]
    with pytest.raises(TypeError):
        live["violations"][-3:]


# -- the deal list: one pass, the page it shows ---------------------------------------------
BOOK = load_salesbook(REPO / "config/salesbooks/b2b-services-9.yaml")


def _random_rows(rng: random.Random, count: int) -> list[deal_list.Row]:
    stages = [s.key for s in BOOK.stages]
    out = []
    for i in range(count):
        stage = rng.choice([*stages, ""])
        owner = rng.choice(["1", "2", "3", ""])
        out.append(deal_list.Row(
            deal_id=rng.choice(["", f"D{rng.randrange(40)}"]),
            deal_title=rng.choice(["Alpha", "beta", "Гамма", "alpha", ""]),
            deal_url=None, owner_id=owner, owner=rng.choice(["Ann", "bob", "Ёж"]) if owner else "",
            team_id=rng.choice(["", "9"]), team=rng.choice(["", "Orlova"]),
            pipeline_id=rng.choice(["p1", "p2"]), pipeline=rng.choice(["Sales", "Tenders"]),
            rule=rng.choice(["stalled", "inactive", "no_next_step"]),
            rule_title=rng.choice(["Stalled", "inactive", "Нет шага"]),
            stage_key=stage, stage=stage.upper(),
            stage_order=stages.index(stage) if stage else len(stages),
            since=rng.choice([None, date(2026, 1, 1) + timedelta(days=rng.randrange(60))]),
            explanation=f"row {i}"))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_listing_is_sorting_everything_then_paging(seed: int, monkeypatch: pytest.MonkeyPatch,
                                                   ) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(deal_list, "PAGE_SIZE", rng.choice([3, 7, 50]))
    every = _random_rows(rng, rng.randrange(0, 160))
    args = {"sort": rng.choice(deal_list.SORTS), "dir": rng.choice(["asc", "desc"]),
            "page": str(rng.randrange(1, 8))}
    for name, values in (("owner", ["1", "2"]), ("rule", ["stalled"]), ("team", ["9"]),
                         ("period", ["2026-01", "2026-02"]), ("since", ["2026-01-20"])):
        if rng.random() < 0.25:
            args[name] = rng.choice(values)
    filters = deal_list.Filters.from_args(args)
    where = SimpleNamespace(deal_url=lambda deal_id: f"https://crm/deal/{deal_id}")

    expected_all = deal_list.select_rows(every, filters)
    expected_page, number, pages = filters.page_of(expected_all)
    got = deal_list.listing(iter(every), filters, where)  # type: ignore[arg-type]
    assert [r.explanation for r in got.rows] == [r.explanation for r in expected_page]
    assert (got.page, got.pages, got.shown, got.total) == (number, pages, len(expected_all),
                                                           len(every))
    assert got.deals == len({r.deal_id for r in expected_all if r.deal_id})
    assert got.choices == deal_list.choices(every)
    assert all(r.deal_url == (f"https://crm/deal/{r.deal_id}" if r.deal_id else None)
               for r in got.rows)
