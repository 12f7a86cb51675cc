# ruff: noqa: RUF001  (Russian texts)
"""What a consultant reads when a command fails or a tenant file is wrong, in Russian:
pydantic's validation errors, the `error:` prefix, a skipped tenant (docs/i18n.md)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from support import demo_tenant, run_syncd, write_config

from syncd.i18n import Text, environment_language
from syncd.validation_text import TEMPLATES, validation_text


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")
    needed: int
    number: int = 0
    whole: int = 0
    real: float = 0.0
    flag: bool = True
    text: str = ""
    items: list[str] = Field(default_factory=list)
    table: dict[str, int] = Field(default_factory=dict)
    choice: Literal["ru", "en", "de"] = "en"
    pair: Literal["ru", "en"] = "en"
    at_least: int = Field(1, ge=1)
    above: int = Field(1, gt=0)
    at_most: int = Field(1, le=23)
    below: int = Field(1, lt=24)


BAD = {"number": "много", "whole": 1.5, "real": "x", "flag": "maybe", "text": 5,
       "items": "x", "table": [], "choice": "fr", "pair": "fr", "at_least": 0, "above": 0,
       "at_most": 24, "below": 24, "colour": "red"}


def _errors() -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as caught:
        Sample.model_validate(BAD)
    return [dict(item) for item in caught.value.errors()]


def test_every_validation_text_reads_as_pydantic_wrote_it_and_has_its_russian() -> None:
    """The English is pydantic's own message (logs, JSON and docs quote it), the Russian
    comes from the catalogue; a type this pydantic words differently keeps its English."""
    errors = _errors()
    seen = {item["type"] for item in errors}
    assert {"missing", "extra_forbidden", "int_parsing", "literal_error",
            "greater_than_equal", "less_than_equal"} <= seen, seen
    for item in errors:
        text = validation_text(item)
        assert text == item["msg"], item
        if item["type"] in TEMPLATES:
            assert isinstance(text, Text), item
            russian = text.say("ru")
            assert russian != str(text) and not russian.startswith("Input"), russian
    said = {item["loc"][0]: validation_text(item) for item in errors}
    assert said["choice"].say("ru") == "допустимое значение: 'ru', 'en' или 'de'"
    assert said["pair"].say("ru") == "допустимое значение: 'ru' или 'en'"
    assert said["at_most"].say("ru") == "значение должно быть не больше 23"
    assert said["colour"].say("ru") == "неизвестный ключ: такого параметра нет (опечатка?)"
    assert said["needed"].say("ru") == "обязательный параметр не указан"


def test_a_validator_message_of_ours_is_said_too_and_others_stay_as_written() -> None:
    unknown = {"type": "value_error", "msg": "Value error, unknown timezone 'X'",
               "ctx": {"error": ValueError(Text("unknown timezone {value!r} (use an IANA "
                                                "name like Europe/Moscow)", value="X"))}}
    assert validation_text(unknown).say("ru").startswith("неизвестный часовой пояс 'X'")
    plain = {"type": "value_error", "msg": "Value error, no evidence",
             "ctx": {"error": ValueError("no evidence")}}
    assert validation_text(plain) == "no evidence"
    other = {"type": "url_parsing", "msg": "Input should be a valid URL", "ctx": {}}
    assert validation_text(other) == "Input should be a valid URL"


@pytest.mark.parametrize(("environ", "expected"), [
    ({"LANG": "ru_RU.UTF-8"}, "ru"), ({"LANG": "C.UTF-8"}, "en"), ({}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "en"), ({"LC_ALL": "en_US.UTF-8", "LANG": "ru_RU.UTF-8"}, "en"),
    ({"LANGUAGE": "de:ru", "LANG": "en_US"}, "ru"), ({"LC_MESSAGES": "ru_RU"}, "ru"),
])
def test_the_locale_environment_chooses_the_language(environ: dict[str, str],
                                                     expected: str) -> None:
    assert environment_language(environ) == expected


@pytest.fixture
def broken_config(tmp_path, monkeypatch):
    monkeypatch.setenv("NORTHWIND_PIPEDRIVE_TOKEN", "x" * 10)
    tenant = demo_tenant("https://acme.pipedrive.com")
    tenant.update(language="ru", timezone="Europe/Moskow", interval_minutes="много",
                  intervall_minutes=5)
    return write_config(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", {"acme": tenant})


def test_a_russian_tenant_files_errors_are_said_in_russian(broken_config) -> None:
    file = broken_config.parent / "tenants" / "acme.yaml"
    checked = run_syncd(broken_config, "check")
    assert checked.returncode == 2
    said = checked.stderr
    assert (f"ошибка: {file}: timezone: неизвестный часовой пояс 'Europe/Moskow' (укажите "
            "название IANA, например Europe/Moscow)") in said, said
    assert (f"ошибка: {file}: interval_minutes: нужно целое число: это значение не читается "
            "как число") in said, said
    assert f"ошибка: {file}: intervall_minutes: неизвестный ключ" in said, said
    assert "Input should" not in said and "error:" not in said, said

    english = run_syncd(broken_config, "check", "--lang", "en").stderr
    assert (f"error: {file}: interval_minutes: Input should be a valid integer, unable to "
            "parse string as an integer") in english, english
    assert f"error: {file}: intervall_minutes: Extra inputs are not permitted" in english

    # a command that needs the tenant fails with the same Russian, and sync skips it so
    report = run_syncd(broken_config, "report", "acme")
    assert report.returncode == 2
    assert f"ошибка: {file}: timezone: неизвестный часовой пояс" in report.stderr
    synced = run_syncd(broken_config, "sync")
    assert "acme: пропущен, файл клиента не загружается:" in synced.stderr, synced.stderr
    assert f"  {file}: intervall_minutes: неизвестный ключ" in synced.stderr


def test_a_failure_outside_any_tenant_is_said_in_the_locales_language(broken_config) -> None:
    russian = run_syncd(broken_config, "report", "nobody", env={"LANG": "ru_RU.UTF-8"})
    assert russian.returncode == 2
    assert russian.stderr.startswith("ошибка: "), russian.stderr
    english = run_syncd(broken_config, "report", "nobody", env={"LANG": "C.UTF-8"})
    assert english.stderr.startswith("error: "), english.stderr


def test_every_text_of_the_report_page_script_is_extracted() -> None:
    """Babel's JavaScript lexer, with JSX on, reads ``a<0`` as a tag and silently extracts
    nothing after it: the Russian page then showed "No karma this month.", "manager"...
    in English. Every ``_('...')`` of the script must reach the catalogue."""
    import re

    from syncd import i18n_catalogues
    from syncd.report_html import SCRIPT, page_texts

    code = "\n".join(line for line in SCRIPT.splitlines() if not line.startswith("//"))
    asked = set(re.findall(r"_\('((?:[^'\\]|\\.)*)'\)", code))
    extracted = {m.id for m in i18n_catalogues.extract("report") if m.id}
    assert len(asked) > 60 and asked <= extracted, asked - extracted
    russian = page_texts("ru")
    assert russian["No karma this month."] == "В этом месяце кармы нет."
    assert russian["(no segment)"] == "(без сегмента)"


def test_companies_without_a_segment_are_named_in_the_readers_language() -> None:
    from syncd.display import segment_label
    from syncd.i18n import translator
    from syncd.scoring.karma import NO_SEGMENT

    assert segment_label(NO_SEGMENT, translator("ru", "report")) == "(без сегмента)"
    assert segment_label(NO_SEGMENT, translator("en", "report")) == "(no segment)"
    assert segment_label("retail", translator("ru", "report")) == "retail"
