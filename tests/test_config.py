"""`syncd check` and config loading: every problem names file, key and what is wrong."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from support import REPO, demo_tenant, report_json, run_syncd, write_config

from syncd.config import check_all, load_settings, load_tenant
from syncd.errors import ConfigError
from syncd.fieldcheck import offline_problems
from syncd.plugins import make_plugin_manager
from syncd.secrets import redact


@pytest.fixture(scope="module")
def registry():
    return make_plugin_manager().connectors


def _problems(tmp_path: Path, tenant: dict, registry) -> list[str]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"acme": tenant})
    return [str(p) for p in check_all(load_settings(config), registry)
            if p.severity == "error"]


def test_shipped_demo_tenant_is_valid(tmp_path: Path, registry, monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "token-for-check-1234")
    settings = load_settings(REPO / "config" / "demo" / "syncd.yaml")
    errors = [p for p in check_all(settings, registry) if p.severity == "error"]
    assert errors == []
    tenant = load_tenant(settings, "northwind", registry)
    assert tenant.book.key == "b2b-services-9"
    assert tenant.settings.api_token == "token-for-check-1234"


def test_unknown_stage_key_in_mapping(tmp_path: Path, registry, monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "x" * 10)
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["mapping"]["stages"]["Projects"]["Estimate"] = "estimation"
    problems = _problems(tmp_path, tenant, registry)
    assert any("acme.yaml: mapping.stages.Projects.Estimate: unknown stage key 'estimation'"
               in p for p in problems), problems


def test_missing_secret_is_named_without_leaking(tmp_path: Path, registry, monkeypatch) -> None:
    monkeypatch.delenv("NORTHWIND_PIPEDRIVE_TOKEN", raising=False)
    problems = _problems(tmp_path, demo_tenant("https://acme.pipedrive.com"), registry)
    assert any("connection.api_token: missing secret: environment variable "
               "NORTHWIND_PIPEDRIVE_TOKEN is not set" in p for p in problems), problems


def test_unknown_loss_reason_and_unmapped_evidence_field(tmp_path: Path, registry,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "x" * 10)
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["mapping"]["loss_reasons"]["Too expensive"] = "pricey"
    del tenant["mapping"]["fields"]["deal"]["contract_number"]
    problems = _problems(tmp_path, tenant, registry)
    assert any("mapping.loss_reasons.Too expensive: unknown loss reason 'pricey'" in p
               for p in problems), problems
    assert any("mapping.fields.deal.contract_number: Sales Book action 'contract_signed' needs"
               in p for p in problems), problems


def test_salesbook_stage_action_without_evidence(tmp_path: Path, registry) -> None:
    books = tmp_path / "books"
    books.mkdir()
    book = yaml.safe_load((REPO / "config/salesbooks/b2b-services-9.yaml").read_text())
    book["actions"]["estimate_sent"]["evidence"] = {}
    (books / "broken.yaml").write_text(yaml.safe_dump(book))
    config = write_config(tmp_path, "sqlite:///x.db", {})
    text = config.read_text().replace(str(REPO / "config" / "salesbooks"), str(books))
    config.write_text(text)
    problems = [str(p) for p in check_all(load_settings(config), registry)]
    assert any("broken.yaml" in p and "actions.estimate_sent.evidence: no evidence" in p
               for p in problems), problems


def test_bad_timezone_and_unknown_key(tmp_path: Path, registry, monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "x" * 10)
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["timezone"] = "Mars/Olympus"
    tenant["writeback"]["colour"] = "red"
    problems = _problems(tmp_path, tenant, registry)
    assert any("acme.yaml: timezone: unknown timezone 'Mars/Olympus'" in p for p in problems)
    assert any("acme.yaml: writeback.colour: Extra inputs are not permitted" in p
               for p in problems), problems


def test_malformed_yaml_names_file_and_line(tmp_path: Path, registry) -> None:
    config = write_config(tmp_path, "sqlite:///x.db", {})
    (tmp_path / "tenants" / "broken.yaml").write_text("plugin: pipedrive\nmapping: [\n")
    problems = [str(p) for p in check_all(load_settings(config), registry)]
    assert any("broken.yaml: not valid YAML (line 3" in p for p in problems), problems
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_tenant(load_settings(config), "broken", registry)


def test_inline_secret_is_a_warning_and_redacted(tmp_path: Path, registry) -> None:
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["connection"]["api_token"] = "inline-secret-token-987"
    config = write_config(tmp_path, "sqlite:///x.db", {"acme": tenant})
    problems = check_all(load_settings(config), registry)
    warning = [p for p in problems if p.key == "connection.api_token"]
    assert warning and warning[0].severity == "warning"
    assert "inline-secret-token-987" not in redact("token inline-secret-token-987 leaked")


def test_check_command_exit_codes(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good", "sqlite:///x.db", {
        "acme": demo_tenant("https://acme.pipedrive.com")})
    ok = run_syncd(good, "check", env={"NORTHWIND_PIPEDRIVE_TOKEN": "abcdef123456"})
    assert ok.returncode == 0, ok.stderr
    assert "1 tenant checked: 0 error(s)" in ok.stdout
    bad = run_syncd(good, "check", env={"NORTHWIND_PIPEDRIVE_TOKEN": ""})
    assert bad.returncode == 2
    assert "connection.api_token" in bad.stderr


def test_store_only_commands_load_a_tenant_without_its_secrets(tmp_path: Path, registry,
                                                              monkeypatch) -> None:
    """report/explain/dashboard read the store: a missing CRM secret must not stop them."""
    monkeypatch.delenv("OFFLINE_TOKEN", raising=False)
    tenant = demo_tenant("http://127.0.0.1:9", token_env="OFFLINE_TOKEN")
    settings = load_settings(write_config(tmp_path, f"sqlite:///{tmp_path}/x.db",
                                          {"northwind": tenant}))
    with pytest.raises(ConfigError, match="OFFLINE_TOKEN is not set"):
        load_tenant(settings, "northwind", registry)
    loaded = load_tenant(settings, "northwind", registry, offline=True)
    assert loaded.settings.api_token == "(secret not loaded)"


# -- issue 12.7: mapping vocabulary and mapped field names -------------------------------------
def _export_tenant(tmp_path: Path, lead_source: str) -> dict:
    sample = _sample_export()
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / f"csv_{lead_source}"))
    tenant["mapping"]["fields"]["deal"]["lead_source"] = lead_source
    return tenant


def _sample_export():
    spec = importlib.util.spec_from_file_location("sample_export",
                                                  REPO / "tests" / "data" / "sample_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_null_ignore_and_deferred_vocabulary_passes_check(tmp_path: Path, registry,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "x" * 10)
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["mapping"]["stages"]["Projects"]["Junk"] = None
    tenant["mapping"]["stages"]["Projects"]["Test deals"] = "ignore"
    tenant["mapping"]["loss_reasons"]["Duplicate"] = None
    assert _problems(tmp_path, tenant, registry) == []


def test_a_stage_target_that_is_not_a_string_names_its_key(tmp_path: Path, registry) -> None:
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant["mapping"]["stages"]["Projects"]["Estimate"] = ["estimate"]
    problems = _problems(tmp_path, tenant, registry)
    assert any("acme.yaml: mapping.stages.Projects.Estimate" in p for p in problems), problems


def test_check_names_a_misspelt_export_column(tmp_path: Path, registry) -> None:
    """The header of a local export is readable offline: `check` catches the typo."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {
        "good": _export_tenant(tmp_path, "Source"), "typo": _export_tenant(tmp_path, "Sorce")})
    problems = offline_problems(load_settings(config), registry)
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'tenants' / 'typo.yaml'}: mapping.fields.deal.lead_source: the export "
        "has no deal field 'Sorce' (names are exact, case included); did you mean 'Source'?"]
    result = run_syncd(config, "check")
    assert result.returncode == 2, result.stderr
    assert "did you mean 'Source'?" in result.stderr
    assert "2 tenants checked: 1 error(s)" in result.stdout


def test_sync_stops_only_the_tenant_with_a_misspelt_field(tmp_path: Path, db_url: str) -> None:
    """At sync time the stored field definitions are the CRM's truth: the tenant whose
    mapping names a field the source lacks fails before its audit, naming file, key and the
    closest names; the other tenant is audited as usual."""
    config = write_config(tmp_path, db_url, {
        "good": _export_tenant(tmp_path, "Source"), "typo": _export_tenant(tmp_path, "source")})
    result = run_syncd(config, "sync", "--format", "json")
    assert result.returncode != 0
    outcomes = {o["tenant"]: o for o in json.loads(result.stdout)}
    assert outcomes["good"]["ok"], outcomes["good"]
    assert not outcomes["typo"]["ok"]
    error = outcomes["typo"]["error"]
    assert "typo.yaml: mapping.fields.deal.lead_source" in error, error
    assert "no deal field 'source'" in error and "did you mean 'Source'?" in error, error
    report = report_json(config, "typo")
    assert report["violations"] == [], "no false no_lead_source rows were opened"


def test_check_warns_when_an_export_cannot_be_read_yet(tmp_path: Path, registry) -> None:
    tenant = _export_tenant(tmp_path, "Source")
    tenant["connection"]["path"] = str(tmp_path / "not-yet.xlsx")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"later": tenant})
    problems = offline_problems(load_settings(config), registry)
    assert [(p.key, p.severity) for p in problems] == [("connection", "warning")], problems
    assert "were not checked" in problems[0].problem
