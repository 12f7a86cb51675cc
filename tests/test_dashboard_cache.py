"""The dashboard reuses a tenant's report while no pass ran since it was built (a report
of a big tenant costs tens of seconds of CPU), within bounds: always for CACHE_SECONDS, then
up to CACHE_MAX_SECONDS while the tenant's newest run is the same one."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from support import REPO

from syncd import store
from syncd.web import WebContext
from syncd.web import dashboard as module

sys.path.insert(0, str(REPO / "bench"))
import bench_incremental as bench


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_report_is_rebuilt_after_a_pass_or_when_too_old(database: store.Database,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    tenant = bench.make_tenant(bench.Account(0))
    now = [1000.0]
    built: list[Any] = []

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        built.append(kwargs.get("language"))
        return {"built": len(built)}

    monkeypatch.setattr(module, "monotonic", lambda: now[0])
    monkeypatch.setattr(module, "live_report", counting)
    board = module.Dashboard(WebContext(db=database, extras={"tenants": {"bench": tenant}}))

    def run_a_pass() -> None:
        with database.session() as session:
            tenant_id = store.ensure_tenant(session, tenant.key, tenant.config.plugin)
            store.finish_run(session, store.start_run(session, tenant_id), "ok")

    assert board.report("bench") == {"built": 1}
    now[0] += module.CACHE_SECONDS - 1
    assert board.report("bench") == {"built": 1}
    assert board.report("bench", "en") == {"built": 2}  # another language: its own report
    now[0] += 60  # past CACHE_SECONDS, no pass since: the same report
    assert board.report("bench") == {"built": 1}
    run_a_pass()
    assert board.report("bench") == {"built": 3}  # a pass ended: built again
    now[0] += module.CACHE_SECONDS + 1
    assert board.report("bench") == {"built": 3}
    now[0] += module.CACHE_MAX_SECONDS  # too old, even with no pass since
    assert board.report("bench") == {"built": 4}
