"""`syncd demo` from a fresh clone: no credentials, the sample client served by syncd_fakes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import REPO, run_syncd_in_process


def demo_config(root: Path, plugin: str | None = None) -> Path:
    """A copy of the shipped ``config/demo`` (and the Sales Books it names) under ``root``."""
    shutil.copytree(REPO / "config" / "demo", root / "config" / "demo")
    shutil.copytree(REPO / "config" / "salesbooks", root / "config" / "salesbooks")
    if plugin is not None:
        path = root / "config" / "demo" / "tenants" / "northwind.yaml"
        tenant = yaml.safe_load(path.read_text("utf-8"))
        path.write_text(yaml.safe_dump({**tenant, "plugin": plugin}), "utf-8")
    return root / "config" / "demo"


@pytest.mark.slow
def test_demo_runs_the_sample_client_end_to_end(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    result = run_syncd_in_process(["demo", "--config-dir", str(config)], env={})
    assert result.returncode == 0, result.stderr
    assert "on a local fake pipedrive at http://127.0.0.1:" in result.stdout
    assert "write-backs received by the fake CRM: " in result.stdout
    assert "PATCH /api/v2/deals/{id}" in result.stdout
    report = json.loads((tmp_path / "var" / "demo" / "reports" / "northwind.json")
                        .read_text("utf-8"))
    assert report["plugin"] == "pipedrive"
    assert report["last_sync"]["status"] == "ok"
    assert report["violations"], "the sample client breaks the standard on purpose"
    assert {p["name"] for p in report["people"]["employees"]} >= {"Anna Petrova", "Dmitry Orlov"}


def test_demo_names_a_plugin_without_a_sample_client(tmp_path: Path) -> None:
    config = demo_config(tmp_path, plugin="gsheets")
    result = run_syncd_in_process(["demo", "--config-dir", str(config)], env={})
    assert result.returncode != 0
    assert "'gsheets' has no demo account in syncd_fakes.demo" in result.stdout + result.stderr
