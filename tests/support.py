"""Helpers shared by the end-to-end tests: write configs, run the `syncd` CLI.

``run_syncd`` runs the CLI in this process (``click``'s ``CliRunner``): a subprocess pays
~2 s of imports per call, which made the suite mostly import time. Tests where the process
itself is the point (signals, SIGKILL, concurrent processes, PYTHONPATH, the daemon) use
``syncd_command`` with ``subprocess`` directly, or ``run_syncd(..., subprocess=True)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess as subprocesses
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SALESBOOKS = REPO / "config" / "salesbooks"
DEMO_TENANT = REPO / "config" / "demo" / "tenants" / "northwind.yaml"


def write_config(root: Path, database_url: str, tenants: dict[str, dict[str, Any]]) -> Path:
    """A daemon config in ``root`` with the given tenant files; returns the config path."""
    (root / "tenants").mkdir(parents=True, exist_ok=True)
    config = {
        "database_url": database_url,
        "tenants_dir": "tenants",
        "salesbooks_dir": str(SALESBOOKS),
        "reports_dir": "reports",
        "log_level": "INFO",
        # An ephemeral port: parallel workers running daemons must not race for 8765.
        "http": {"host": "127.0.0.1", "port": 0},
    }
    path = root / "syncd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    for key, tenant in tenants.items():
        (root / "tenants" / f"{key}.yaml").write_text(yaml.safe_dump(tenant), encoding="utf-8")
    return path


#: Test speed where Pipedrive's burst limit is not the point: the fake and the tenant agree
#: on this many requests per 2 s instead of the real 20 (a sample pass is ~110 requests,
#: 10 s of waiting at 20). Tests of the limit itself keep the real one.
FAST_BURST = 400


def demo_tenant(base_url: str, token_env: str = "NORTHWIND_PIPEDRIVE_TOKEN",
                burst_limit: int | None = None) -> dict[str, Any]:
    """The shipped demo tenant, pointed at ``base_url`` with its token from ``token_env``
    (and the fake's ``burst_limit`` when given)."""
    tenant = yaml.safe_load(DEMO_TENANT.read_text(encoding="utf-8"))
    tenant["connection"]["base_url"] = base_url
    tenant["connection"]["api_token"] = {"$env": token_env}
    if burst_limit is not None:
        tenant["connection"]["burst_limit"] = burst_limit
    return tenant


def fake_tenant(fake: Any, token_env: str = "NORTHWIND_PIPEDRIVE_TOKEN") -> dict[str, Any]:
    """The demo tenant on a running ``FakePipedrive``, at the fake's burst limit."""
    return demo_tenant(fake.base_url, token_env, burst_limit=fake.burst_limit)


def syncd_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "syncd.cli", "--config", str(config), *args]


def run_syncd(config: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 240, subprocess: bool = False,
              ) -> subprocesses.CompletedProcess[str]:
    """Run `syncd` as a user would (no terminal), in this process unless ``subprocess``.

    Environment variables that only a new interpreter reads (``PYTHONPATH``, ...) force a
    subprocess. ``timeout`` applies to subprocesses; in-process runs are bounded by the
    test's own timeout (pytest-timeout).
    """
    if subprocess or any(key.startswith("PYTHON") and os.environ.get(key) != value
                         for key, value in (env or {}).items()):
        full_env = {**os.environ, **(env or {})}
        return subprocesses.run(syncd_command(config, *args), capture_output=True, text=True,
                                env=full_env, timeout=timeout, check=False, cwd=REPO)
    return run_syncd_in_process(["--config", str(config), *args], env=env)


@contextlib.contextmanager
def _process_state(env: dict[str, str] | None) -> Iterator[None]:
    """Restore what a CLI run may change in the process: environment, cwd, logging,
    signal handlers and mask."""
    saved_env = dict(os.environ)
    saved_cwd = os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("urllib3", "syncd")}
    stop = (signal.SIGINT, signal.SIGTERM)
    saved_signals = {signum: signal.getsignal(signum) for signum in stop}
    saved_mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    os.environ.update(env or {})
    os.chdir(REPO)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        for handler in root.handlers:
            if handler not in saved_handlers:
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for signum, handler in saved_signals.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, saved_mask)


def run_syncd_in_process(argv: list[str], env: dict[str, str] | None = None,
                         ) -> subprocesses.CompletedProcess[str]:
    """``syncd argv`` in this process; the result looks like ``subprocess.run``'s.

    An unexpected exception is an exit status 1 with its traceback on stderr, as the
    interpreter would print it. Databases the command opened are disposed afterwards.
    """
    from click.testing import CliRunner

    from syncd import cli, store

    opened: list[store.Database] = []
    original = cli.Context.database

    def database(self: cli.Context) -> store.Database:
        db = original(self)
        opened.append(db)
        return db

    interrupted: list[int] = []

    def on_interrupt(signum: int, frame: Any) -> None:
        interrupted.append(signum)  # Ctrl-C stops the test run, not only the command
        raise KeyboardInterrupt

    with _process_state(env):
        cli.Context.database = database  # type: ignore[method-assign]
        signal.signal(signal.SIGINT, on_interrupt)
        try:
            result = CliRunner().invoke(cli.main, argv, prog_name="syncd",
                                       catch_exceptions=True)
        finally:
            cli.Context.database = original  # type: ignore[method-assign]
            for db in opened:
                db.dispose()
    if interrupted:
        raise KeyboardInterrupt
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return subprocesses.CompletedProcess(["syncd", *argv], result.exit_code,
                                         result.stdout, stderr)


def report_json(config: Path, tenant: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = run_syncd(config, "report", tenant, "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass
class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or the test advances it)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
