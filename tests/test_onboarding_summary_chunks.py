"""The onboarding summary counts the deals a chunk at a time (a new 100,000-deal client's
first report must not hold every deal): it says what counting them all at once said."""

from __future__ import annotations

import functools
import sys
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from support import REPO

from syncd import store
from syncd.mapping import TenantMapper
from syncd.onboarding import summary
from syncd.plugins import make_plugin_manager
from syncd.report_live import live_report
from syncd.store.models import ActivityRow, DealRow
from syncd.sync import PassOptions, run_pass

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench


def all_at_once(db: store.Database, tenant: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Coverage and the mapping gaps from every deal in one list (the summary before)."""
    with db.session() as session:
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        deals = [d for chunk in store.iter_deal_chunks(session, tenant_id) for d in chunk]
        mapper = TenantMapper(tenant.config, tenant.book, store.stages_by_id(session, tenant_id))
        with_activity = set(session.scalars(select(ActivityRow.deal_external_id).where(
            ActivityRow.tenant_id == tenant_id, ActivityRow.deleted.is_(False),
            ActivityRow.deal_external_id.is_not(None)).distinct()))
    created = [d.created_at for d in deals if d.created_at is not None]
    statuses = Counter(d.status for d in deals)
    stages: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for deal in deals:
        names = mapper.stage_names.get(deal.stage_id or "")
        if names is not None and names[1] not in tenant.config.mapping.stages.get(names[0], {}):
            stages[f"{names[0]} / {names[1]}"] += 1
        reason = (deal.lost_reason or "").strip()
        if (deal.status == "lost" and reason and mapper.loss_reason_key(reason) is None
                and not mapper.ignored(deal)):
            reasons[reason] += 1
    coverage = {
        "deals": len(deals), "open": statuses["open"], "won": statuses["won"],
        "lost": statuses["lost"], "first_deal_at": min(created).isoformat(),
        "history_months": summary._months(min(created), max(created)),
        "share_with_activities": round(
            len([d for d in deals if d.external_id in with_activity]) / len(deals), 3),
    }
    gaps = {"stages": [{"name": n, "count": c} for n, c in stages.most_common()],
            "loss_reasons": [{"name": n, "count": c} for n, c in reasons.most_common()]}
    return coverage, gaps


@pytest.mark.parametrize("chunk", [37, 2000])
def test_summary_counted_in_chunks_says_the_same(database: store.Database, chunk: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = bench.make_tenant(bench.Account(300))
    run_pass(database, make_plugin_manager(load_entrypoints=False), tenant,
             PassOptions(clock=lambda: bench.NOW, full=True))
    with database.session() as session:  # deals in the CRM stage "Limbo", not mapped
        tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
        session.execute(update(DealRow).where(
            DealRow.tenant_id == tenant_id,
            DealRow.external_id.in_(["D3", "D40", "D41", "D200"])).values(
                stage_external_id="s8"))
        session.execute(update(DealRow).where(  # a loss reason the catalogue does not know
            DealRow.tenant_id == tenant_id, DealRow.status == "lost",
            DealRow.lost_reason == "Price").values(lost_reason="Фаза луны"))
    coverage, gaps = all_at_once(database, tenant)
    assert gaps["stages"] == [{"name": "Sales / Limbo", "count": 4}]
    assert gaps["loss_reasons"][0]["name"] == "Фаза луны"
    monkeypatch.setattr(store, "iter_deal_chunks",
                        functools.partial(store.iter_deal_chunks, chunk_size=chunk))
    report = live_report(database, tenant, clock=bench.NOW + timedelta(minutes=5))
    got = summary.onboarding_summary(database, tenant, report)
    assert {k: got["coverage"][k] for k in coverage} == coverage
    assert {k: got["gaps"][k] for k in gaps} == gaps
    by_rule = report["violations_by_rule"]
    assert sum(by_rule.values()) == len(report["violations"])
    assert len(got["findings"]) == min(len(by_rule), summary.TOP_FINDINGS)
