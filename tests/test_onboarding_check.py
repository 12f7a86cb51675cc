"""`syncd check` gaps of issue 14.3: a Sales Book stage nothing maps onto is a warning even
with no stage mapping at all; provider-aware activity keys (Bitrix24
``kind:PROVIDER_ID:PROVIDER_TYPE_ID``) are found by prefix; a mapped export column that
the header row lacks names the closest header."""

from __future__ import annotations

import copy
from pathlib import Path

from support import REPO, report_json, run_syncd, write_config
from test_tabular_export import sample

from syncd.config import TenantConfig, load_salesbook, mapping_problems
from syncd.connector import Inspection
from syncd.onboarding import Vocabulary
from syncd.onboarding.online import compare
from syncd.onboarding.usage import Usage

BOOK = load_salesbook(REPO / "config" / "salesbooks" / "simple-product-5.yaml")


def _config(**mapping: object) -> TenantConfig:
    return TenantConfig.model_validate({"plugin": "bitrix24", "salesbook": BOOK.key,
                                        "connection": {}, "mapping": mapping})


def test_every_book_stage_is_warned_even_without_a_stage_mapping() -> None:
    problems = mapping_problems(_config(), BOOK, "t.yaml")
    warned = {p.problem.split("'")[1] for p in problems
              if p.key == "mapping.stages" and p.severity == "warning"}
    assert warned == {s.key for s in BOOK.stages}


def test_provider_aware_activity_keys_match_by_prefix_and_misspellings_do_not() -> None:
    usage = Usage()
    usage.activity_types.update({"2:VOXIMPLANT_CALL:CALL": 4, "6:CRM_TODO:TODO": 2})
    found = Vocabulary(Inspection(activity_types=["2 (Call)", "6 (To-do)"]), usage)
    config = _config(activity_types={"2:VOXIMPLANT_CALL": "call", "6": "followup",
                                     "2:VOXIMPLANT_CAL": "call"})
    problems, _ = compare(config, found, "t.yaml", "t")
    flagged = {p.key for p in problems if p.key.startswith("mapping.activity_types")}
    assert flagged == {"mapping.activity_types.2:VOXIMPLANT_CAL"}
    message = next(p.problem for p in problems if p.key.endswith("VOXIMPLANT_CAL"))
    assert "did you mean" in message and "VOXIMPLANT_CALL" in message


def test_a_misspelt_export_column_names_the_closest_header(tmp_path: Path) -> None:
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    columns = tenant["connection"].setdefault("tabs", {}).setdefault(
        "deals", {}).setdefault("columns", {})
    columns["lost_reason"] = "Los reason"
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    result = run_syncd(config, "check", "--online")
    assert result.returncode == 2, result.stderr
    assert ("no column 'Los reason' (mapped to lost_reason); did you mean 'Loss reason'"
            in result.stderr)


def test_plain_check_opens_a_local_export_and_checks_its_names(tmp_path: Path) -> None:
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    clean = run_syncd(config, "check")
    assert clean.returncode == 0, clean.stderr
    preview = next(line for line in clean.stdout.splitlines() if line.startswith("csv:"))
    assert " deals: " in preview and "in unmapped stages" in preview

    pipeline, stages = next(iter(tenant["mapping"]["stages"].items()))
    stage = next(iter(stages))
    stages[stage[:-1]] = stages.pop(stage)  # a typo made while editing
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    typo = run_syncd(config, "check")  # no --online: the file is local
    # an export lists only the stages its deals use: a name it lacks is a warning
    assert typo.returncode == 0, typo.stderr
    assert (f"warning: {tmp_path / 'tenants' / 'csv.yaml'}: mapping.stages.{pipeline}."
            f"{stage[:-1]}: pipeline {pipeline!r} has no stage {stage[:-1]!r}; did you mean "
            f"{stage!r}?") in typo.stderr


def test_an_evidence_field_the_crm_lacks_is_mapped_to_null(tmp_path: Path) -> None:
    """The documented way out (docs/onboarding.md): `null` says the CRM has no such field;
    check warns with the consequence, the audit leaves out what nothing can prove, and the
    report says so."""
    missing = {p.key: p.severity for p in mapping_problems(
        _config(fields={"deal": {"estimate_link": "Offer link"}}), BOOK, "t.yaml")}
    assert missing["mapping.fields.deal.invoice_number"] == "error"  # only that field proves it
    absent = mapping_problems(_config(fields={"deal": {
        "lead_source": "Source", "estimate_link": None, "invoice_number": None}}), BOOK, "t.yaml")
    said = {p.key: p for p in absent if p.key.startswith("mapping.fields")}
    assert {p.severity for p in said.values()} == {"warning"}
    assert "'invoice_issued' (proven only by that field) is not audited" in str(
        said["mapping.fields.deal.invoice_number"])
    assert "'offer_sent' is proven only by a done email" in str(
        said["mapping.fields.deal.estimate_link"])

    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    assert run_syncd(config, "sync", "csv").returncode in (0, 4)
    before = report_json(config, "csv")
    won_without_invoice = [v for v in before["violations"] if v["action_key"] == "invoice_issued"]

    tenant["mapping"]["fields"]["deal"]["invoice_number"] = None
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    checked = run_syncd(config, "check")
    assert checked.returncode == 0, checked.stderr
    assert "mapping.fields.deal.invoice_number: null: the CRM has no" in checked.stderr
    assert run_syncd(config, "sync", "csv").returncode in (0, 4)
    after = report_json(config, "csv")
    assert not [v for v in after["violations"] if v["action_key"] == "invoice_issued"]
    assert len(after["violations"]) == len(before["violations"]) - len(won_without_invoice)
    assert any(note.startswith("Action «Invoice issued» is not audited") for note in
               after["notes"]), after["notes"]


def test_plain_check_calls_a_misspelt_export_column_an_error_once(tmp_path: Path) -> None:
    """A consultant's walk-through: plain `check` said both "not checked" and "did you
    mean". The file is there and the tenant file names a column wrongly: one error on the
    key, with the closest header; a missing file is a warning (a nightly export may come)."""
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    tenant["connection"]["tabs"]["deals"]["columns"]["lost_reason"] = "Los reason"
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    result = run_syncd(config, "check")
    assert result.returncode == 2, result.stderr
    said = "".join(result.stderr.split())  # the console wraps long lines: compare unspaced
    assert said.count("nocolumn'Losreason'") == 1, said
    assert "".join((f"error: {tmp_path / 'tenants' / 'csv.yaml'}: connection.tabs.deals.columns."
                    "lost_reason: tab 'Deals': no column 'Los reason' (mapped to lost_reason); "
                    "did you mean 'Loss reason'").split()) in said
    assert "notchecked" not in said

    tenant["connection"]["path"] = str(tmp_path / "not-yet-there")
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    missing = run_syncd(config, "check")
    assert missing.returncode == 0, missing.stderr
    assert "werenotchecked" in "".join(missing.stderr.split())


def test_check_speaks_each_tenants_language_and_lang_overrides(tmp_path: Path) -> None:
    tenant = copy.deepcopy(sample.SAMPLE_TENANT)
    tenant["connection"]["path"] = str(sample.write_csv_dir(tmp_path / "export_csv"))
    tenant["language"] = "ru"
    del tenant["mapping"]["stages"]["Sales"]["Objections"]
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"csv": tenant})
    russian = run_syncd(config, "check")
    assert russian.returncode == 0, russian.stderr
    said = " ".join(russian.stderr.split())
    assert ("предупреждение: " f"{tmp_path / 'tenants' / 'csv.yaml'}: mapping.stages: на этап "
            "Книги продаж 'objections' («Возражения») не сопоставлен ни один этап CRM") in said
    assert "проверен 1 клиент: ошибок 0" in russian.stdout
    assert any(line.startswith("csv: ") and "сдел" in line for line in russian.stdout.splitlines())
    english = run_syncd(config, "check", "--lang", "en")
    said = " ".join(english.stderr.split())
    assert "Sales Book stage 'objections' (Objections) has no CRM stage mapped onto it" in said
    assert "1 tenant checked: 0 error(s)" in english.stdout
