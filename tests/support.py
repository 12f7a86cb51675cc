"""Helpers shared by the end-to-end tests: write configs, run the `syncd` CLI as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    }
    path = root / "syncd.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    for key, tenant in tenants.items():
        (root / "tenants" / f"{key}.yaml").write_text(yaml.safe_dump(tenant), encoding="utf-8")
    return path


def demo_tenant(base_url: str, token_env: str = "NORTHWIND_PIPEDRIVE_TOKEN") -> dict[str, Any]:
    """The shipped demo tenant, pointed at ``base_url`` with its token from ``token_env``."""
    tenant = yaml.safe_load(DEMO_TENANT.read_text(encoding="utf-8"))
    tenant["connection"]["base_url"] = base_url
    tenant["connection"]["api_token"] = {"$env": token_env}
    return tenant


def syncd_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "syncd.cli", "--config", str(config), *args]


def run_syncd(config: Path, *args: str, env: dict[str, str] | None = None,
              timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run `syncd` in a subprocess exactly as a user would (no terminal)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(syncd_command(config, *args), capture_output=True, text=True,
                          env=full_env, timeout=timeout, check=False, cwd=REPO)


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
