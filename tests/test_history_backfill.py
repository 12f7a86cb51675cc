"""Stage history as a budget-aware backfill (issue 13, item 4), against the fake Pipedrive.

Each pass may spend ``history_budget_share`` of ``daily_token_budget`` on deal flows (20
tokens each) per local day of the tenant; the fake's request log is the witness. Passes
resume where the last one stopped, open deals come first, the report shows coverage and
marks the findings still waiting, and a deal already read is kept current from its own
fields (no flow request).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from support import FAST_BURST, fake_tenant, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd import store
from syncd.config import Tenant, load_settings, load_tenant
from syncd.plugins import make_plugin_manager
from syncd.report import build_report
from syncd.store import backlog
from syncd.sync import PassOptions, run_pass

TOKEN = "pd-backfill-token-91c2"
FLOW = re.compile(r"/v1/deals/(\d+)/flow$")
#: Flow reads allowed per day: 8 x 20 tokens = 160 = 50% of 320.
PER_DAY = 8
BUDGET = {"daily_token_budget": PER_DAY * 20 * 2, "history_budget_share": 0.5}


@pytest.fixture
def fake() -> Any:
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=TOKEN,
                       burst_limit=FAST_BURST) as server:
        yield server


def _tenant(tmp_path: Path, db_url: str, fake: FakePipedrive,
            monkeypatch: pytest.MonkeyPatch, **connection: Any) -> Tenant:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", TOKEN)
    data = fake_tenant(fake)
    data["connection"].update(connection)
    config = write_config(tmp_path, db_url, {"northwind": data})
    return load_tenant(load_settings(config), "northwind", make_plugin_manager().connectors)


def _owed(fake: FakePipedrive, now: datetime) -> set[int]:
    """Deals updated within ``history_days`` (365) of ``now``: the ones owing history."""
    horizon = now - timedelta(days=365)
    return {i for i in fake.deals.ids() if datetime.fromisoformat(
        fake.record("deals", i)["update_time"].replace("Z", "+00:00")) >= horizon}


def _flows(fake: FakePipedrive) -> list[int]:
    return [int(m.group(1)) for p in fake.paths_requested() if (m := FLOW.search(p))]


class Passes:
    def __init__(self, db: store.Database, tenant: Tenant, fake: FakePipedrive) -> None:
        self.db, self.tenant, self.fake = db, tenant, fake
        self.plugins = make_plugin_manager()
        self.day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)

    def run(self, *, next_day: bool = False) -> list[int]:
        """One pass (on the tenant's next local day if asked); the flows it requested."""
        if next_day:
            self.day += timedelta(days=1)
        before = len(_flows(self.fake))
        now = self.day
        run_pass(self.db, self.plugins, self.tenant,
                 PassOptions(clock=lambda: now, write=False))
        return _flows(self.fake)[before:]

    def coverage(self) -> tuple[int, int]:
        with self.db.session() as session:
            tenant_id = store.ensure_tenant(session, "northwind", "pipedrive")
            return backlog.coverage(session, tenant_id)


@pytest.fixture
def passes(tmp_path: Path, db_url: str, fake: FakePipedrive,
           monkeypatch: pytest.MonkeyPatch) -> Passes:
    db = store.Database(db_url)
    db.upgrade()
    return Passes(db, _tenant(tmp_path, db_url, fake, monkeypatch, **BUDGET), fake)


def test_budget_share_resume_and_open_deals_first(passes: Passes,
                                                  fake: FakePipedrive) -> None:
    first = passes.run()
    assert len(first) == PER_DAY, "50% of 320 tokens at 20 a flow: 8 flow reads a day"
    owed_ids = _owed(fake, passes.day)
    done, owed = passes.coverage()
    assert (done, owed) == (PER_DAY, len(owed_ids))
    assert owed < len(fake.deals.ids()), "the sample has deals beyond the horizon"
    open_ids = {i for i in owed_ids if fake.record("deals", i)["status"] == "open"}
    assert len(open_ids) > PER_DAY
    assert set(first) <= open_ids, "open deals are read first"

    assert passes.run() == [], "the same day's share is spent: no flow read"
    assert passes.coverage() == (PER_DAY, owed)

    seen = list(first)
    days = 0
    while passes.coverage()[0] < owed:
        flows = passes.run(next_day=True)
        assert 0 < len(flows) <= PER_DAY
        seen += flows
        days += 1
        assert days < 20
    assert sorted(seen) == sorted(owed_ids), "each owed deal's flow read exactly once"
    closed = [i for i in seen if i not in open_ids]
    assert seen[: len(open_ids)] == [i for i in seen if i in open_ids], "then closed ones"
    closed_at = [_closed_at(fake.record("deals", i)) for i in closed]
    assert closed_at == sorted(closed_at, reverse=True), "most recently closed first"


def _closed_at(deal: dict[str, Any]) -> str:
    return deal.get("won_time") or deal.get("lost_time") or deal.get("update_time") or ""


def test_report_shows_coverage_and_marks_pending_findings(passes: Passes,
                                                          fake: FakePipedrive) -> None:
    passes.run()
    report = build_report(passes.db, passes.tenant, clock=passes.day)
    section = report["stage_history"]
    owed = len(_owed(fake, passes.day))
    assert section == {"with_history": PER_DAY, "owed": owed, "pending": owed - PER_DAY,
                       "coverage": round(PER_DAY / owed, 4)}
    assert any(f"{owed - PER_DAY} deal(s) ({PER_DAY} of {owed} done" in note
               for note in report["notes"]), report["notes"]
    pending = [v for v in report["violations"]
               if (v.get("details") or {}).get("history") == "pending"]
    assert pending, "findings of deals waiting for their history say so"
    with passes.db.session() as session:
        waiting = backlog.pending(session, store.ensure_tenant(session, "northwind",
                                                               "pipedrive"))
    assert {v["deal_id"] for v in pending} <= waiting

    russian = build_report(passes.db, passes.tenant, clock=passes.day, language="ru")
    assert any("История этапов ещё читается" in note for note in russian["notes"])


def test_a_read_deal_is_kept_current_from_its_fields(passes: Passes,
                                                     fake: FakePipedrive) -> None:
    first = passes.run()
    deal_id = first[0]
    deal = fake.record("deals", deal_id)
    old_stage = deal["stage_id"]
    new_stage = next(other["stage_id"] for i in fake.deals.ids()
                     if (other := fake.record("deals", i))["pipeline_id"] == deal["pipeline_id"]
                     and other["stage_id"] != old_stage)
    fake.edit("deals", deal_id, stage_id=new_stage)

    flows = passes.run(next_day=True)
    assert deal_id not in flows, "no flow re-read for a deal whose history is held"
    with passes.db.session() as session:
        rows = session.execute(select(store.StageChangeRow.from_stage_external_id,
                                      store.StageChangeRow.to_stage_external_id,
                                      store.StageChangeRow.external_id).where(
            store.StageChangeRow.deal_external_id == str(deal_id))
            .order_by(store.StageChangeRow.at)).all()
    assert rows[-1][:2] == (str(old_stage), str(new_stage))
    assert rows[-1][2].startswith("fields-")


def test_unlimited_share_reads_every_changed_deal_in_one_pass(
        tmp_path: Path, db_url: str, fake: FakePipedrive,
        monkeypatch: pytest.MonkeyPatch) -> None:
    db = store.Database(db_url)
    db.upgrade()
    tenant = _tenant(tmp_path, db_url, fake, monkeypatch, daily_token_budget=10_000_000)
    passes = Passes(db, tenant, fake)
    assert sorted(passes.run()) == sorted(_owed(fake, passes.day))


def test_a_flow_spanning_pages_never_exceeds_the_share(
        tmp_path: Path, db_url: str, fake: FakePipedrive,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One flow row per page: most flows take several requests and the allowance runs out
    inside one; that deal stays owed and is read whole, from its first page, next day."""
    db = store.Database(db_url)
    db.upgrade()
    tenant = _tenant(tmp_path, db_url, fake, monkeypatch, page_size=1,
                     daily_token_budget=25 * 20 * 2, history_budget_share=0.5)
    passes = Passes(db, tenant, fake)
    first = passes.run()
    assert len(first) == 25, "25 flow requests a day, even in the middle of a deal's flow"
    assert max(Counter(first).values()) > 1, "some flows took several pages"
    with db.session() as session:
        waiting = backlog.pending(session, store.ensure_tenant(session, "northwind",
                                                               "pipedrive"))
    cut = [d for d in dict.fromkeys(first) if str(d) in waiting]
    assert len(cut) <= 1, "only the deal the allowance ran out in is left half-read"
    starts_before = len(fake.requests)
    second = passes.run(next_day=True)
    assert len(second) == 25
    if cut:
        again = [q.get("start") for _, path, q, _ in fake.requests[starts_before:]
                 if path.endswith(f"/deals/{cut[0]}/flow")]
        assert again and again[0] in {"0", 0}, "read again from its first page"
