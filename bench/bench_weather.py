"""Benchmark: `syncd sync` under API weather, per plugin, against a clean run's end state.

    python bench/bench_weather.py                      # 20 trials x 4 plugins at 20%
    python bench/bench_weather.py --plugins amocrm --trials 5 --rate 0.3

Each trial is a first pass of a new tenant (pull everything, audit, create the write-back
fields, write them, create the tasks) against its own fake CRM whose every request
independently misbehaves with probability ``--rate`` (``syncd_fakes.http.Weather``, seeded
by the trial number): a 502 page (on writes possibly *after* the write was applied), a 503
page, a 429 with ``Retry-After``, an HTML maintenance page under 200, or the real body cut
in half. A clean tenant runs once against a fake without weather.

A pass *completes* when `syncd sync` exits as the clean run's pass did: 0, or 4 (partial)
when the clean run's is partial too (the Sheets sample has one deliberately bad row). The
trial's end state is compared with the clean run's: the store (every record the CRM holds,
minus what the CRM stamps at write time), the write-back fields in the CRM, and the tasks
in the CRM (one per violation, none twice). Prints, per plugin: passes completed / passes,
requests made, retries, faults injected (and writes spoiled after they were applied), and
the comparison.

The passes run in this process (``syncd.cli`` with ``standalone_mode=False``) with the test
hook ``syncd.http.retry_sleeper`` set to a no-op: backoff waits are not waited out (the
number of retries is what matters here); client-side rate limiters still run for real, so
the fakes are configured with generous limits. Needs nothing but SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select
from syncd_fakes.http import Weather

import syncd.http
from syncd import exitcodes, store
from syncd.store.models import RECORD_MODELS

REPO = Path(__file__).resolve().parents[1]
SALESBOOKS = REPO / "config" / "salesbooks"
PLUGINS = ("pipedrive", "amocrm", "bitrix24", "gsheets")
#: Columns that differ between any two runs (row ids, when we synced, what the CRM stamps).
_VOLATILE = frozenset({"id", "tenant_id", "raw", "content_hash", "synced_at"})
MARKER = "[syncd:"


# --- one plugin: its fake, its tenant, what its CRM holds --------------------------------
@dataclass
class Setup:
    """A fake CRM (started) and the tenant file pointing at it."""

    fake: Any
    tenant: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # tenants/ file -> content


class Plugin:
    name: str

    def start(self, weather: Weather | None, stack: contextlib.ExitStack) -> Setup:
        raise NotImplementedError

    def crm_state(self, fake: Any) -> dict[str, Any]:
        """The write-back fields (by field name) and syncd's tasks, as the CRM holds them."""
        raise NotImplementedError

    def new_deals(self, fake: Any) -> None:
        """Between the two passes: open deals with no next step (new violations, tasks)."""


def _tasks(rows: list[tuple[Any, str, str]]) -> dict[str, Any]:
    """``rows``: (deal, subject, text) of every task carrying a syncd marker."""
    markers = Counter(text[text.index(MARKER):].split("]", 1)[0] for _, _, text in rows)
    return {"tasks": sorted(Counter((str(d), s) for d, s, _ in rows).items()),
            "tasks_created_twice": sum(n - 1 for n in markers.values() if n > 1)}


class Pipedrive(Plugin):
    name = "pipedrive"

    def start(self, weather: Weather | None, stack: contextlib.ExitStack) -> Setup:
        from syncd_fakes.pipedrive.sample import sample_dataset
        from syncd_fakes.pipedrive.server import FakePipedrive
        fake = stack.enter_context(FakePipedrive(sample_dataset(NOW, deals=30),
                                                 token="pd-weather-token",
                                                 burst_limit=1000, weather=weather))
        tenant = yaml.safe_load((REPO / "config" / "demo" / "tenants" / "northwind.yaml")
                                .read_text("utf-8"))
        tenant["connection"].update({"base_url": fake.base_url, "api_token": {"$env": "PD_TOKEN"},
                                     "burst_limit": 1000})
        tenant.setdefault("writeback", {}).update({"enabled": True, "create_tasks": True})
        return Setup(fake, tenant, {"PD_TOKEN": "pd-weather-token"})

    def crm_state(self, fake: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for entity, kind in (("deals", "dealFields"), ("organizations", "organizationFields")):
            names = {d["field_code"]: d["field_name"] for d in fake.field_defs[kind]
                     if str(d.get("field_name", "")).startswith("syncd")}
            state[entity] = {str(i): {names[k]: v for k, v in (row.get("custom_fields") or {})
                                      .items() if k in names and v not in (None, "")}
                             for i, row in sorted(fake.collection(entity).rows.items())}
            state[f"{entity} syncd fields"] = sorted(Counter(names.values()).items())
        rows = [(a.get("deal_id"), a.get("subject"), str(a.get("note")))
                for a in fake.activities.rows.values() if MARKER in str(a.get("note"))]
        return {**state, **_tasks(rows)}

    def new_deals(self, fake: Any) -> None:
        for number in range(NEW_DEALS):
            fake.add("deals", {"title": f"New lead {number}", "owner_id": 2, "person_id": 301,
                               "org_id": 101, "pipeline_id": 1, "stage_id": 1, "value": 1000,
                               "currency": "EUR", "status": "open", "custom_fields": {}})


class AmoCRM(Plugin):
    name = "amocrm"

    def start(self, weather: Weather | None, stack: contextlib.ExitStack) -> Setup:
        from syncd_fakes.amocrm.sample import sample_dataset
        from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM
        fake = stack.enter_context(FakeAmoCRM(sample_dataset(NOW), rate_limit=50,
                                              weather=weather))
        tenant = yaml.safe_load((REPO / "config" / "tenants" / "amocrm.yaml.example")
                                .read_text("utf-8"))
        tenant["connection"] = {"base_url": fake.base_url, "rate_limit": 50,
                                "long_lived_token": {"$env": "AMO_TOKEN"}}
        tenant.setdefault("writeback", {}).update({"enabled": True, "create_tasks": True})
        return Setup(fake, tenant, {"AMO_TOKEN": DEMO_LONG_LIVED_TOKEN})

    def crm_state(self, fake: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        for entity, collection in (("leads", fake.leads), ("companies", fake.companies)):
            names = {d["id"]: d["name"] for d in fake.custom_fields[entity]
                     if str(d.get("name", "")).startswith("syncd")}
            state[entity] = {
                str(i): {names[v["field_id"]]: v.get("values")
                         for v in row.get("custom_fields_values") or ()
                         if v.get("field_id") in names}
                for i, row in sorted(collection.rows.items())}
            state[f"{entity} syncd fields"] = sorted(Counter(names.values()).items())
        rows = [(t.get("entity_id"), str(t.get("text")).split("\n", 1)[0], str(t.get("text")))
                for t in fake.tasks.rows.values() if MARKER in str(t.get("text"))]
        return {**state, **_tasks(rows)}

    def new_deals(self, fake: Any) -> None:
        for number in range(NEW_DEALS):
            fake.add_lead(name=f"New lead {number}", status_id=40001, pipeline_id=3001,
                          responsible_user_id=2, price=1000,
                          _embedded={"tags": [], "companies": [{"id": 101}],
                                     "contacts": [{"id": 301, "is_main": True}]})


class Bitrix24(Plugin):
    name = "bitrix24"

    def start(self, weather: Weather | None, stack: contextlib.ExitStack) -> Setup:
        from syncd_fakes.bitrix24.sample import sample_dataset
        from syncd_fakes.bitrix24.server import FakeBitrix24
        fake = stack.enter_context(FakeBitrix24(sample_dataset(NOW), webhook_code="b24weather",
                                                burst=1000, rate=1000.0, weather=weather))
        tenant = yaml.safe_load((REPO / "config" / "tenants" / "bitrix24.yaml.example")
                                .read_text("utf-8"))
        tenant["connection"].update({"base_url": fake.base_url, "bucket_rate": 1000,
                                     "bucket_burst": 1000,
                                     "webhook_url": {"$env": "B24_WEBHOOK"}})
        tenant.setdefault("writeback", {}).update({"enabled": True, "create_tasks": True})
        return Setup(fake, tenant, {"B24_WEBHOOK": fake.webhook_url})

    def crm_state(self, fake: Any) -> dict[str, Any]:
        state: dict[str, Any] = {}
        dataset = fake.dataset
        for entity, table in (("deal", dataset.deals), ("company", dataset.companies)):
            codes = {c: s.get("formLabel") for c, s in dataset.fields[entity].items()
                     if str(s.get("formLabel") or "").startswith("syncd")}
            state[entity] = {str(i): {codes[c]: v for c, v in row.items()
                                      if c in codes and v not in (None, "")}
                             for i, row in sorted(table.rows.items())}
            state[f"{entity} syncd fields"] = sorted(Counter(codes.values()).items())
        rows = [(a.get("OWNER_ID"), a.get("SUBJECT"), str(a.get("DESCRIPTION")))
                for a in dataset.activities.rows.values()
                if MARKER in str(a.get("DESCRIPTION"))]
        return {**state, **_tasks(rows)}

    def new_deals(self, fake: Any) -> None:
        for number in range(NEW_DEALS):
            fake.add_deal(title=f"New lead {number}", owner=2, company=3, contact=4,
                          UF_CRM_LEAD_SRC="41")


class SheetsCRM(Plugin):
    """A Google spreadsheet as the client's CRM (read-only: nothing is written back)."""

    name = "gsheets"
    sheet = "weather-crm-sheet"
    email = "syncd-weather@bench.iam.gserviceaccount.com"

    def start(self, weather: Weather | None, stack: contextlib.ExitStack) -> Setup:
        from syncd_fakes.gsheets.server import FakeSheets
        sample = _sample_export()
        fake = stack.enter_context(FakeSheets(per_minute=100_000, weather=weather))
        tabs = {title: [header, *[[_serial(v) for v in row] for row in rows]]
                for title, (header, rows) in sample.TABS.items()}
        fake.create(self.sheet, tabs, shared_with=[self.email])
        tenant = copy.deepcopy(sample.SAMPLE_TENANT)
        tenant["plugin"] = "gsheets"
        tenant["connection"].update({"spreadsheet_id": self.sheet, "base_url": fake.base_url,
                                     "credentials": {"$file": "key.json"},
                                     "requests_per_minute": 600})
        return Setup(fake, tenant, files={"key.json": fake.service_account_key(self.email)})

    def crm_state(self, fake: Any) -> dict[str, Any]:
        return {"tabs": {t: fake.tab(self.sheet, t) for t in _sample_export().TABS}}


def _sample_export() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sample_export", REPO / "tests" / "data" / "sample_export.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _serial(value: Any) -> Any:
    """Dates as Sheets holds them: serial day numbers."""
    from datetime import date
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return (value - date(1899, 12, 30)).days
    return value


NEW_DEALS = 6
ALL: dict[str, Callable[[], Plugin]] = {"pipedrive": Pipedrive, "amocrm": AmoCRM,
                                        "bitrix24": Bitrix24, "gsheets": SheetsCRM}
NOW = datetime.now(UTC)
STAMPED_AFTER = NOW.replace(second=0, microsecond=0) - timedelta(minutes=1)


# --- running passes in this process ------------------------------------------------------
#: Retry waits seen by the hook (each one is a retry).
_RETRIES: list[int] = [0]


def _count(_: float) -> None:
    _RETRIES[0] += 1


@contextlib.contextmanager
def no_backoff_waits() -> Iterator[None]:
    """The test hook: retry waits are counted, not slept."""
    previous = syncd.http.retry_sleeper
    syncd.http.retry_sleeper = _count
    try:
        yield
    finally:
        syncd.http.retry_sleeper = previous


def _retries() -> int:
    return _RETRIES[0]


def write_config(root: Path, db_url: str) -> Path:
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    config = {"database_url": db_url, "tenants_dir": "tenants",
              "salesbooks_dir": str(SALESBOOKS), "reports_dir": "reports",
              "log_level": "ERROR", "http": {"enabled": False}}
    path = root / "syncd.yaml"
    path.write_text(yaml.safe_dump(config), "utf-8")
    return path


def sync(config: Path, key: str, setup: Setup) -> tuple[int, str]:
    """`syncd sync KEY --format json` in this process: (exit code, what it printed)."""
    from syncd.cli import main
    tenants = config.parent / "tenants"
    for name, content in setup.files.items():
        (tenants / name).write_text(content, "utf-8")
    (tenants / f"{key}.yaml").write_text(yaml.safe_dump(setup.tenant), "utf-8")
    saved = {k: os.environ.get(k) for k in setup.env}
    os.environ.update(setup.env)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main.main(["--config", str(config), "sync", key, "--format", "json"],
                          prog_name="syncd", standalone_mode=False)
                code = 0
            except SystemExit as exc:
                code = int(exc.code or 0)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return code, out.getvalue() + err.getvalue()


def two_passes(config: Path, key: str, setup: Setup,
               plugin: Plugin) -> list[tuple[int, str]]:
    """The tenant's first pass (its audit is the baseline: no tasks), then new open deals
    with no next step appear in the CRM, and a second pass creates their tasks."""
    tenants = config.parent / "tenants"
    try:
        first = sync(config, key, setup)
        plugin.new_deals(setup.fake)
        return [first, sync(config, key, setup)]
    finally:
        (tenants / f"{key}.yaml").unlink()  # `sync` of the next tenant loads only its own


def store_state(db: store.Database, key: str) -> dict[str, list[Any]]:
    """Every stored record of ``key``, minus what differs between any two runs."""
    found: dict[str, list[Any]] = {}
    with db.session() as session:
        tenant_id = session.scalar(select(store.TenantRow.id).where(store.TenantRow.key == key))
        for name, model in RECORD_MODELS.items():
            rows = session.scalars(select(model).where(model.tenant_id == tenant_id)).all()
            found[name] = sorted(json.dumps(_stable(row), sort_keys=True, default=str)
                                 for row in rows)
    return found


def _stable(row: Any) -> dict[str, Any]:
    values = {c.key: getattr(row, c.key) for c in row.__table__.columns
              if c.key not in _VOLATILE}
    # Timestamps the CRM stamps on what this run wrote (a task's creation, a record's
    # update time after our write) differ between any two runs. CRMs round them (to the
    # second, some to the minute): everything from the minute before the start is dropped.
    return {k: v for k, v in values.items()
            if not (isinstance(v, datetime) and _aware(v) >= STAMPED_AFTER)}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class Result:
    plugin: str
    trials: int = 0
    passes: int = 0
    completed: int = 0
    same_state: int = 0
    requests: int = 0
    retries: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    spoiled_writes: int = 0
    tasks_created_twice: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    clean: str = ""  # what the clean run left: records, field values, tasks

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.injected.items()))
        return (f"{self.plugin:9s} passes completed {self.completed}/{self.passes}, end state"
                f" = clean run's in {self.same_state}/{self.trials}, duplicate tasks"
                f" {self.tasks_created_twice}; requests {self.requests}, retries"
                f" {self.retries}, faults {sum(self.injected.values())} ({kinds}; writes"
                f" spoiled after landing {self.spoiled_writes}); clean run: {self.clean};"
                f" {self.seconds:.0f} s")


def run_plugin(name: str, trials: int, rate: float, root: Path,
               seed: int = 0, db_url: str | None = None) -> Result:
    """The clean run, then ``trials`` weather trials of plugin ``name`` (the database is
    a SQLite file in ``root`` unless ``db_url`` is given: tests pass PostgreSQL)."""
    plugin = ALL[name]()
    result = Result(name)
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    db_url = db_url or f"sqlite:///{root / (name + '.db')}"
    config = write_config(root, db_url)
    db = store.Database(db_url)
    with no_backoff_waits(), contextlib.ExitStack() as stack:
        clean = plugin.start(None, stack)
        clean_codes = []
        for code, output in two_passes(config, "clean", clean, plugin):
            if code not in (exitcodes.OK, exitcodes.PARTIAL):
                message = f"{name}: the clean run failed ({code}): {output[-2000:]}"
                raise RuntimeError(message)
            clean_codes.append(code)
        expected_store = store_state(db, "clean")
        expected_crm = plugin.crm_state(clean.fake)
        values = sum(len(v) for k, rows in expected_crm.items()
                     if isinstance(rows, dict) and k != "tabs" for v in rows.values())
        result.clean = (f"{sum(map(len, expected_store.values()))} records,"
                        f" {values} field values, {len(expected_crm.get('tasks', []))} tasks")
    for trial in range(trials):
        weather = Weather(rate, seed=seed * 1000 + PLUGINS.index(name) * 100 + trial)
        with no_backoff_waits(), contextlib.ExitStack() as stack:
            setup = plugin.start(weather, stack)
            retries_before = _retries()
            key = f"w{trial:02d}"
            passes = two_passes(config, key, setup, plugin)
            result.retries += _retries() - retries_before
            crm = plugin.crm_state(setup.fake)
        result.trials += 1
        result.requests += weather.requests
        result.injected.update(weather.injected)
        result.spoiled_writes += weather.landed_then_failed
        result.tasks_created_twice += int(crm.get("tasks_created_twice", 0))
        for number, (code, output) in enumerate(passes, start=1):
            result.passes += 1
            if code == clean_codes[number - 1]:  # as the clean pass did: OK, or PARTIAL
                result.completed += 1           # for the same bad rows of the sample
            else:
                result.failures.append(f"trial {trial} pass {number}: exit {code}:"
                                       f" {_last_error(output)}")
        if store_state(db, key) == expected_store and crm == expected_crm:
            result.same_state += 1
        elif [code for code, _ in passes] == clean_codes:
            result.failures.append(f"trial {trial}: completed but the end state differs")
    result.seconds = time.monotonic() - started
    return result


def _last_error(output: str) -> str:
    try:
        outcome = json.loads(output[output.index("["):])[0]
        return str(outcome.get("error"))[:300]
    except (ValueError, IndexError, KeyError, TypeError):
        return " ".join(output.split())[-300:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", nargs="+", choices=PLUGINS, default=list(PLUGINS))
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("SYNCD_SECRET_KEY", Fernet.generate_key().decode())
    print(f"weather: {args.rate:.0%} of requests fail independently; {args.trials} trials"
          f" per plugin; load average {os.getloadavg()[0]:.2f}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.plugins:
            result = run_plugin(name, args.trials, args.rate, Path(tmp) / name, args.seed)
            print(result.line(), flush=True)
            for failure in result.failures:
                print(f"  {failure}")
            ok &= (result.completed * 20 >= result.passes * 19
                   and result.same_state * 20 >= result.trials * 19
                   and result.tasks_created_twice == 0)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
