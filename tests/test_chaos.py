"""Chaos: several `syncd run` replicas on one real PostgreSQL against local fake CRMs.

Replicas are real processes killed with real signals. Nothing waits on a sleep: every wait
polls the database, a fake's request log or a replica's log with a deadline. Lease times are
short (config), datasets small, so the whole module stays around a minute.

Weather: every request of a fake CRM independently misbehaves (``syncd_fakes.http.Weather``),
passes run in this process through the harness of ``bench/bench_weather.py`` with the test
hook ``syncd.http.retry_sleeper`` counting backoff waits instead of sleeping them.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select
from support import REPO, demo_tenant, syncd_command, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive, Fault

from syncd import store
from syncd.store.models import TenantLeaseRow

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

LEASE = {"lease_seconds": 4, "heartbeat_seconds": 0.5, "poll_seconds": 0.3, "workers": 2,
         "drain_seconds": 20}
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180) -> Any:
    """Poll ``check`` until it returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)  # a poll interval, not synchronisation: the deadline decides
    raise AssertionError(f"timed out waiting for {what}")


def configure(root: Path, db_url: str, tenants: dict[str, dict[str, Any]],
              **daemon: Any) -> Path:
    path = write_config(root, db_url, tenants)
    config = yaml.safe_load(path.read_text("utf-8"))
    config.update({"replica": LEASE, "http": {"enabled": False}, **daemon})
    path.write_text(yaml.safe_dump(config), "utf-8")
    return path


class Replica:
    """One `syncd run` process, logging (JSON lines) to a file."""

    def __init__(self, config: Path, name: str, env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*syncd_command(config, "run", "--replica-id", name, "--log-format", "json")],
            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=self._log)

    def log(self) -> str:
        return self.log_path.read_text("utf-8")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; returns the exit code and how long the exit took."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        return code, time.monotonic() - started

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@contextmanager
def replicas(config: Path, env: dict[str, str], logs: Path, names: list[str],
             ) -> Iterator[dict[str, Replica]]:
    started: dict[str, Replica] = {}
    try:
        for name in names:
            started[name] = Replica(config, name, env, logs)
        yield started
    finally:
        for replica in started.values():
            replica.close()


def runs_by_tenant(db: store.Database) -> dict[str, list[Any]]:
    with db.session() as session:
        rows = session.execute(
            select(store.TenantRow.key, store.SyncRunRow.started_at,
                   store.SyncRunRow.finished_at, store.SyncRunRow.status,
                   store.SyncRunRow.error)
            .join(store.SyncRunRow, store.SyncRunRow.tenant_id == store.TenantRow.id)
            .order_by(store.SyncRunRow.started_at)).all()
    found: dict[str, list[Any]] = collections.defaultdict(list)
    for row in rows:
        found[row.key].append(row)
    return found


def fences(db: store.Database) -> dict[str, tuple[str | None, int]]:
    with db.session() as session:
        return {key: (holder, fence) for key, holder, fence in session.execute(
            select(TenantLeaseRow.tenant_key, TenantLeaseRow.holder, TenantLeaseRow.fence))}


def assert_never_two_at_once(runs: dict[str, list[Any]], killed_at: datetime) -> None:
    """Per tenant, each pass ended (or its replica was killed) before the next one began."""
    for key, tenant_runs in runs.items():
        for earlier, later in itertools.pairwise(tenant_runs):
            end = earlier.finished_at
            if earlier.status in ("running", "abandoned"):  # its replica was killed; the
                end = killed_at  # next holder closes the row as abandoned when it starts
            assert end <= later.started_at, f"tenant {key}: two passes overlapped"


@pytest.mark.slow  # 30 tenants, three `syncd run` processes, SIGKILL: ~35 s
def test_sigkill_mid_sync_every_tenant_synced_once_at_a_time(tmp_path: Path,
                                                             db_url: str) -> None:
    count = 30
    victim_fault = Fault("block", method="GET", path="/api/v2/deals")
    with ExitStack() as stack:
        fakes = {f"t{i:02d}": stack.enter_context(FakePipedrive(
            sample_dataset(NOW, seed=i, deals=8), token=f"pd-chaos-{i:02d}-token",
            burst_limit=200, faults=[victim_fault] if i == 0 else None))
            for i in range(count)}
        env = {f"TOKEN_{key.upper()}": f"pd-chaos-{key[1:]}-token" for key in fakes}
        env["TOKEN_T29"] = "revoked-token-2929"  # its account revoked our token
        tenants = {key: {**demo_tenant(fake.base_url, token_env=f"TOKEN_{key.upper()}"),
                         "interval_minutes": 60} for key, fake in fakes.items()}
        config = configure(tmp_path, db_url, tenants)
        db = store.Database(db_url)
        with replicas(config, env, tmp_path, ["r0", "r1", "r2"]) as running:
            assert victim_fault.reached.wait(120), "nobody started t00's deals"
            holder = wait_for("t00's holder", lambda: fences(db)["t00"][0])
            victim = running[holder]
            victim.signal(signal.SIGKILL)
            victim.process.wait(timeout=30)
            killed_at = datetime.now(UTC)
            victim_fault.release.set()

            def all_done() -> bool:
                runs = runs_by_tenant(db)
                ok = all(any(r.status == "ok" for r in runs.get(k, [])) for k in fakes
                         if k != "t29")
                return ok and any(r.status == "failed" for r in runs.get("t29", []))

            wait_for("every tenant synced", all_done, timeout=300)
            survivors = [r for name, r in running.items() if name != holder]
            exits = [replica.stop() for replica in survivors]
            logs = {name: replica.log() for name, replica in running.items()}

        runs = runs_by_tenant(db)
        leases = fences(db)
        for key, fake in fakes.items():
            if key == "t29":
                continue
            ok = [r for r in runs[key] if r.status == "ok"]
            assert len(ok) == 1, f"{key} synced once per interval, not {len(ok)} times"
            with db.session() as session:
                stored = session.scalars(select(store.DealRow.external_id).join(
                    store.TenantRow, store.TenantRow.id == store.DealRow.tenant_id).where(
                    store.TenantRow.key == key)).all()
            assert len(stored) == len(fake.deals.ids()), key
            patches = collections.Counter((m, p, json.dumps(b, sort_keys=True))
                                          for m, p, b in fake.writes)
            assert patches, f"{key}: the pass wrote back"
            assert max(patches.values()) == 1, f"{key}: a write-back was repeated"

    assert_never_two_at_once(runs, killed_at)
    assert runs["t00"][0].status == "abandoned", \
        "the killed replica's pass never finished; the takeover closed its run row"
    assert runs["t00"][-1].status == "ok" and runs["t00"][-1].started_at > killed_at
    assert leases["t00"][1] >= 2, "the takeover claimed t00 with a new fence"
    assert all(holder is None for holder, _ in leases.values()), "leases released on exit"
    assert [r.status for r in runs["t29"]] == ["failed"]
    assert "HTTP 401" in (runs["t29"][0].error or "")
    assert all(code == 130 and seconds < 30 for code, seconds in exits), exits
    everything = "\n".join(logs.values())
    assert "revoked-token-2929" not in everything
    assert not any(f"pd-chaos-{i:02d}-token" in everything for i in range(count))
    claimed = collections.Counter(json.loads(line)["message"].split()[1]
                                  for line in everything.splitlines()
                                  if '"tenant ' in line and "claimed (fence" in line)
    assert set(claimed) == set(fakes), "every tenant was claimed by some replica"


@pytest.mark.slow  # `syncd run` processes, SIGSTOP past the lease, SIGCONT
def test_a_replica_paused_past_its_lease_cannot_write_when_it_resumes(tmp_path: Path,
                                                                      db_url: str) -> None:
    fault = Fault("block", method="GET", path="/api/v2/deals")
    token = "pd-pause-token-5a5a"
    with FakePipedrive(sample_dataset(NOW, deals=8), token=token, burst_limit=200,
                       faults=[fault]) as fake:
        tenants = {"t0": {**demo_tenant(fake.base_url, token_env="TOKEN_T0"),
                          "interval_minutes": 60}}
        config = configure(tmp_path, db_url, tenants)
        env = {"TOKEN_T0": token}
        db = store.Database(db_url)
        with replicas(config, env, tmp_path, ["paused"]) as first:
            paused = first["paused"]
            assert fault.reached.wait(120), "the pass never asked for deals"
            paused.signal(signal.SIGSTOP)
            with replicas(config, env, tmp_path, ["other"]) as second:
                wait_for("the takeover's pass", lambda: any(
                    r.status == "ok" for r in runs_by_tenant(db).get("t0", [])))
                deal_id = fake.deals.ids()[0]
                fake.edit("deals", deal_id, title="STALE WRITE")  # only the paused one sees it
                fault.release.set()
                assert fault.finished.wait(30), "the held page was answered"
                requests_before = len(fake.requests)
                paused.signal(signal.SIGCONT)
                wait_for("the paused replica to notice", lambda: "lease lost" in paused.log())
                code, _ = paused.stop()
                other_code, _ = second["other"].stop()
                requests_after = len(fake.requests)
                log = paused.log()

    assert code == 130 and other_code == 130
    assert requests_after == requests_before, "no CRM call after the lease was lost"
    with db.session() as session:
        titles = set(session.scalars(select(store.DealRow.title)))
    assert "STALE WRITE" not in titles, "the late page was rejected"
    runs = runs_by_tenant(db)["t0"]
    assert [r.status for r in runs].count("ok") == 1
    assert runs[0].status != "ok", "the paused pass did not finish as ok"
    holder, fence = fences(db)["t0"]
    assert fence == 2 and holder is None
    assert "this commit is rejected" in log
    assert token not in log


def _bench_weather() -> ModuleType:
    """bench/bench_weather.py: the same harness the benchmark uses (one source of truth)."""
    spec = importlib.util.spec_from_file_location("bench_weather",
                                                  REPO / "bench" / "bench_weather.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_weather"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench_weather = _bench_weather()


@pytest.mark.slow
@pytest.mark.parametrize("plugin", ["pipedrive", "amocrm", "bitrix24", "gsheets"])
def test_independent_weather_at_twenty_percent_passes_complete_with_a_clean_runs_state(
        tmp_path: Path, db_url: str, plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request of a fake CRM independently fails with probability 0.2 (a retried
    request can fail again): 502 (after a write landed, too), 503, 429, an HTML page under
    200, a cut body. Each trial is a new tenant's first pass, new deals, a second pass that
    creates tasks; its store, CRM fields and tasks must equal a clean run's."""
    monkeypatch.setenv("SYNCD_SECRET_KEY", Fernet.generate_key().decode())
    result = bench_weather.run_plugin(plugin, trials=3, rate=0.2, root=tmp_path,
                                      seed=7, db_url=db_url)
    assert result.failures == [], result.failures
    assert result.completed == result.passes == 6, "every pass completed in one go"
    assert result.same_state == result.trials == 3
    assert result.tasks_created_twice == 0
    assert sum(result.injected.values()) >= 0.1 * result.requests, result.line()
    # Weather is retried (a write found applied after a lost answer is not sent again).
    assert result.retries >= 0.8 * sum(result.injected.values()), result.line()
    if plugin != "gsheets":  # the Sheets CRM is read-only and takes three requests a pass
        assert len(result.injected) == 5, f"every kind of weather was met: {result.line()}"
        assert "tasks" in result.clean and " 0 tasks" not in result.clean, result.clean
    if plugin == "pipedrive":
        assert result.spoiled_writes > 0, "some writes landed and still answered 502/cut"
