# ruff: noqa: RUF001
"""The shared value readers (syncd.values): every locale the sources write, round-trips,
the documented ambiguity rules, and problems reported per record."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from syncd_amocrm.streams import ident as amocrm_ident
from syncd_amocrm.streams import required_id as amocrm_required_id
from syncd_bitrix24.streams import ident as bitrix24_ident
from syncd_bitrix24.streams import required_id as bitrix24_required_id
from syncd_gsheets.values import flag as sheet_flag
from syncd_pipedrive.streams import ident as pipedrive_ident
from syncd_pipedrive.streams import required_id as pipedrive_required_id

from syncd import values
from syncd.values import (
    FALSE_WORDS,
    NUMBER_STYLES,
    TRUE_WORDS,
    Amount,
    FieldProblem,
    ValueProblem,
    field_value,
    format_number,
    from_serial,
    from_unix,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_number,
    reading_record,
)

MOSCOW = ZoneInfo("Europe/Moscow")


@pytest.mark.parametrize(("text", "expected"), [
    ("12,5", 12.5), ("12.5", 12.5), ("1 234,50", 1234.5), ("1\u00a0234,50", 1234.5),
    ("106\u00a0000,00", 106000.0), ("1\u202f234,50", 1234.5), ("1.234,50", 1234.5),
    ("1,234.50", 1234.5), ("1'234.50", 1234.5), ("1,234,567", 1234567.0),
    ("1.234.567", 1234567.0), ("1 234 567", 1234567.0), ("-1 234,50", -1234.5),
    ("\u22121 234,50", -1234.5), ("(1 234,50)", -1234.5), ("1 234,50-", -1234.5),
    ("+5", 5.0), ("0,5", 0.5), (",5", 0.5), ("5.", 5.0), ("1.5E3", 1500.0),
    ("1 234,50 ₽", 1234.5), ("1 234,50 руб.", 1234.5), ("1234 руб", 1234.0),
    ("100 р.", 100.0), ("RUB 1 000", 1000.0), ("$1,234.50", 1234.5), ("-$5", -5.0),
    ("€ 12,5", 12.5), ("19999.99", 19999.99), ("100|EUR", 100.0), (7, 7.0), (2.5, 2.5),
])
def test_numbers_in_every_locale(text, expected):
    assert parse_number(text) == pytest.approx(expected)


@pytest.mark.parametrize(("text", "currency"), [
    ("1 234,50 ₽", "RUB"), ("1 234 руб.", "RUB"), ("RUB 5", "RUB"), ("$5", "USD"),
    ("5 EUR", "EUR"), ("100|EUR", "EUR"), ("5", None), ({"value": 5, "currency": "usd"}, "USD"),
])
def test_amounts_name_their_currency(text, currency):
    assert parse_amount(text).currency == currency


@pytest.mark.parametrize("blank", [None, "", "   ", "\u00a0"])
def test_blank_is_none_not_zero(blank):
    assert parse_number(blank) is None
    assert parse_datetime(blank) is None
    assert parse_date(blank) is None


@pytest.mark.parametrize("bad", ["abc", "12,3,4.5", "1,23,4", "1.2.3,4,5", "₽", "--5",
                                 "nan", "inf", "1e999", "12 abc", True, [1]])
def test_unreadable_numbers_raise_naming_the_value(bad):
    with pytest.raises(ValueProblem) as caught:
        parse_number(bad)
    assert repr(bad) in str(caught.value)


def test_a_lone_separator_is_decimal_unless_the_source_says_otherwise():
    """The documented ambiguity rule: "1,234" is 1.234 (ru locale) by default; a source
    known to write English-locale integers says decimal="."."""
    assert parse_number("1,234") == pytest.approx(1.234)
    assert parse_number("1.234") == pytest.approx(1.234)
    assert parse_number("1,234", decimal=".") == 1234.0
    assert parse_number("1.234", decimal=",") == 1234.0
    assert parse_number("12,5", decimal=".") == 12.5  # not grouped by three: still decimal


@given(st.decimals(min_value=-10**12, max_value=10**12, places=2, allow_nan=False),
       st.sampled_from(NUMBER_STYLES))
def test_any_number_written_in_any_style_reads_back_equal(number, style):
    text = format_number(float(number), style)
    assert parse_number(text) == pytest.approx(float(number), abs=0.005)


@given(st.integers(min_value=-10**12, max_value=10**12),
       st.sampled_from(["ru", "ru_nbsp", "ru_narrow", "plain", "swiss"]))
def test_integers_without_decimals_read_back_equal(number, style):
    assert parse_number(format_number(number, style, decimals=0)) == number


@given(st.integers(min_value=1000, max_value=10**12), st.sampled_from(["en", "de"]))
def test_grouped_integers_read_back_with_the_sources_decimal_hint(number, style):
    text = format_number(number, style, decimals=0)
    assert parse_number(text, decimal="." if style == "en" else ",") == number


@given(st.decimals(min_value=0, max_value=10**9, places=2),
       st.sampled_from(["₽", "руб.", "RUB", "$", "EUR"]), st.booleans())
def test_currency_before_or_after_does_not_change_the_number(number, sign, before):
    text = format_number(float(number), "ru")
    written = f"{sign} {text}" if before else f"{text} {sign}"
    amount = parse_amount(written)
    assert amount is not None
    assert amount.value == pytest.approx(float(number), abs=0.005)
    assert amount.currency == values.CURRENCIES[sign.casefold()]


@given(st.text(alphabet="0123456789.,- ₽abc", max_size=12))
def test_any_text_either_reads_or_raises_value_problem(text):
    try:
        result = parse_number(text)
    except ValueProblem:
        return
    assert result is None or isinstance(result, float)


# --- dates ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("2025-12-31", date(2025, 12, 31)), ("31.12.2025", date(2025, 12, 31)),
    ("31/12/2025", date(2025, 12, 31)), ("1.2.2026", date(2026, 2, 1)),
    ("31.12.2025 14:30", date(2025, 12, 31)), ("2025-12-31T14:30:00+03:00", date(2025, 12, 31)),
    (46022, date(2025, 12, 31)), (46022.6041666667, date(2025, 12, 31)),
    (date(2025, 12, 31), date(2025, 12, 31)), (datetime(2025, 12, 31, 9), date(2025, 12, 31)),
])
def test_dates(text, expected):
    assert parse_date(text) == expected


def test_a_datetimes_date_can_be_taken_in_the_tenants_timezone():
    assert parse_date("2025-12-31T22:30:00+00:00", MOSCOW) == date(2026, 1, 1)


@pytest.mark.parametrize(("text", "expected"), [
    ("2025-12-31T14:30:00+03:00", datetime(2025, 12, 31, 11, 30, tzinfo=UTC)),
    ("2025-12-31T11:30:00Z", datetime(2025, 12, 31, 11, 30, tzinfo=UTC)),
    ("2025-12-31 14:30:00", datetime(2025, 12, 31, 11, 30, tzinfo=UTC)),  # naive: in tz
    ("31.12.2025 14:30", datetime(2025, 12, 31, 11, 30, tzinfo=UTC)),
    ("31.12.2025 14:30:15", datetime(2025, 12, 31, 11, 30, 15, tzinfo=UTC)),
    ("31.12.2025", datetime(2025, 12, 30, 21, 0, tzinfo=UTC)),  # midnight in Moscow
    (46022.6041666667, datetime(2025, 12, 31, 11, 30, tzinfo=UTC)),  # a serial at 14:30
])
def test_datetimes_come_back_as_aware_utc(text, expected):
    assert parse_datetime(text, MOSCOW) == expected


def test_unix_timestamps_where_a_crm_uses_them():
    moment = datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    stamp = int(moment.timestamp())
    assert from_unix(stamp) == moment
    assert from_unix(str(stamp)) == moment
    assert from_unix(stamp * 1000) == moment  # milliseconds
    assert from_unix(0) is None
    assert parse_datetime(stamp, numbers="unix") == moment
    assert parse_datetime(str(stamp), numbers="unix") == moment
    with pytest.raises(ValueProblem):
        from_unix("yesterday")


@pytest.mark.parametrize("bad", ["31.13.2025", "2025-02-30", "tomorrow", "12/2025", 0.5, True,
                                 3_000_000.0])
def test_unreadable_dates_raise(bad):
    with pytest.raises(ValueProblem):
        parse_datetime(bad)


@given(st.datetimes(min_value=datetime(1900, 3, 1), max_value=datetime(9999, 12, 30))
       .map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)))
def test_serials_round_trip_to_the_millisecond(moment):
    delta = moment - values.SERIAL_EPOCH
    serial = delta.days + (delta.seconds * 1000 + delta.microseconds // 1000) / 86_400_000
    assert from_serial(serial) == moment


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)),
                                               timezone(timedelta(hours=-5))]))
       .map(lambda d: d.replace(microsecond=0)),
       st.sampled_from(["iso", "ru", "unix"]))
def test_datetimes_written_in_each_style_read_back_equal(moment, style):
    if style == "iso":
        text, expected = moment.isoformat(), moment
    elif style == "ru":  # what a Russian export writes: local wall time, no offset (fixed
        # offsets here: a wall time inside a DST fold names two instants)
        text, expected = moment.strftime("%d.%m.%Y %H:%M:%S"), moment
    else:
        text, expected = str(int(moment.timestamp())), moment
    tz = moment.tzinfo if style == "ru" else UTC
    parsed = parse_datetime(text, tz, numbers="unix" if style == "unix" else "serial")
    assert parsed == expected.astimezone(UTC)


@given(st.dates(min_value=date(1900, 3, 1), max_value=date(9999, 12, 31)),
       st.sampled_from(["%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y"]))
def test_dates_written_in_each_style_read_back_equal(day, fmt):
    assert parse_date(day.strftime(fmt).rjust(10, "0")) == day


# --- problems ----------------------------------------------------------------------------
def test_an_unreadable_field_is_a_problem_naming_tenant_stream_record_field_and_value():
    problems: list[FieldProblem] = []
    with reading_record(problems, stream="deals", record_id=17, tenant="acme"):
        assert field_value(parse_number, "двенадцать", "Profit") is None
        assert field_value(parse_number, "1 234,50", "Cost") == 1234.5
    assert len(problems) == 1
    text = str(problems[0])
    for part in ("acme", "deals", "17", "Profit", "двенадцать"):
        assert part in text


def test_outside_a_record_an_unreadable_value_is_never_silently_none():
    with pytest.raises(ValueProblem):
        field_value(parse_number, "abc", "Profit")


def test_amount_is_a_value_object():
    assert parse_amount("5 ₽") == Amount(5.0, "RUB")


def test_a_source_that_always_writes_offsets_can_require_one():
    assert parse_datetime("2026-03-01T10:00:00+03:00", None) == datetime(2026, 3, 1, 7,
                                                                         tzinfo=UTC)
    with pytest.raises(ValueProblem):
        parse_datetime("2026-03-01T10:00:00", None)


# --- the mapping reads stored field values through the same reader --------------------------
def test_a_mapped_profit_with_no_break_spaces_counts(caplog):
    """A CSV export's "106 000,00" (NBSP) in a mapped custom field was silently dropped."""
    from syncd.mapping import to_date, to_float
    assert to_float("106\u00a0000,00") == 106000.0
    assert to_float("12,5") == 12.5
    assert to_date("31.12.2025") == date(2025, 12, 31)
    with caplog.at_level("WARNING"):
        assert to_float("сто тысяч", "deal 7 profit") is None
    assert "deal 7 profit" in caplog.text
    assert "сто тысяч" in caplog.text


# --- ids ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "options", "expected"), [
    (37, {}, "37"), ("37", {}, "37"), (37.0, {}, "37"), (" 0037 ", {}, "37"),
    ("D-7", {}, "D-7"), ("00123", {"keep_text": True}, "00123"), (0, {}, "0"),
    (0, {"zero_is_none": True}, None), ("0", {"zero_is_none": True}, None),
    ("", {}, None), (None, {}, None), ("-5", {}, "-5"),
])
def test_ids(raw, options, expected):
    assert values.parse_id(raw, **options) == expected


@pytest.mark.parametrize(("raw", "options"), [
    (True, {}), (1.5, {}), ("Anna", {"numeric": True}), ([1], {}),
])
def test_unreadable_ids_raise(raw, options):
    with pytest.raises(ValueProblem, match="as an id"):
        values.parse_id(raw, **options)


@given(st.integers(min_value=-(10**18), max_value=10**18),
       st.sampled_from([str, float, int]))
def test_an_id_reads_the_same_whatever_its_json_type(number, shape):
    if shape is float and abs(number) > 2**53:
        return
    assert values.parse_id(shape(number)) == str(number)


# --- required ids: one reader, each plugin binds its id reader and key ------------------------
_ID_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12),
                       st.floats(allow_nan=True), st.text(max_size=8),
                       st.dictionaries(st.sampled_from(["value", "id"]),
                                       st.integers(0, 99), max_size=1))
_PLUGIN_IDS = [(amocrm_required_id, amocrm_ident, "id"),
               (bitrix24_required_id, bitrix24_ident, "ID"),
               (pipedrive_required_id, pipedrive_ident, "id")]


def _outcome(function: Any, *args: Any, **options: Any) -> str | type[BaseException]:
    try:
        return function(*args, **options)
    except ValueError as problem:  # ValueProblem is a ValueError
        return type(problem)


@given(st.sampled_from(_PLUGIN_IDS), _ID_VALUES)
def test_a_required_id_is_the_plugins_id_or_a_problem_naming_the_key(plugin: Any,
                                                                     raw: Any) -> None:
    """Bound to a plugin, the shared ``required_id`` reads exactly what the plugin's ``ident``
    reads; where that is no id the record is an error that names the key."""
    required, ident, key = plugin
    read = _outcome(ident, raw)
    if read is None:
        with pytest.raises(ValueError, match=f"^missing {key}$"):
            required({key: raw})
    else:
        assert _outcome(required, {key: raw}) == read
        assert _outcome(values.required_id, {key: raw}, key, read=ident) == read


@given(st.integers(min_value=1, max_value=10**18), st.text(min_size=1, max_size=12))
def test_a_required_id_under_any_key(number: int, key: str) -> None:
    assert values.required_id({key: number}, key) == str(number)
    assert values.required_id({key: str(number)}, key) == str(number)
    with pytest.raises(ValueError, match="missing"):
        values.required_id({}, key)


def test_a_bitrix24_history_row_names_its_deal_under_another_key() -> None:
    assert bitrix24_required_id({"ID": "5", "OWNER_ID": "37"}, key="OWNER_ID") == "37"
    with pytest.raises(ValueError, match=r"^missing OWNER_ID$"):
        bitrix24_required_id({"ID": "5", "OWNER_ID": "0"}, key="OWNER_ID")


# --- yes/no: one reader for every plugin ---------------------------------------------------
def _padded(word: str) -> st.SearchStrategy[str]:
    return st.tuples(st.sampled_from(["", " ", "\t"]), st.booleans(),
                     st.sampled_from(["", " ", "\n"])).map(
        lambda t: t[0] + (word.upper() if t[1] else word) + t[2])


@given(st.sampled_from(sorted(TRUE_WORDS)).flatmap(_padded), st.booleans())
def test_parse_flag_reads_every_yes_word_in_any_case(word: str, strict: bool) -> None:
    assert parse_flag(word, strict=strict) is True


@given(st.sampled_from(sorted(FALSE_WORDS)).flatmap(_padded), st.booleans())
def test_parse_flag_reads_every_no_word_in_any_case(word: str, strict: bool) -> None:
    assert parse_flag(word, strict=strict) is False


@given(st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False)))
def test_parse_flag_of_booleans_and_numbers(value: Any) -> None:
    assert parse_flag(value) is (bool(value) if isinstance(value, bool) else value != 0)


@given(st.text(max_size=8).filter(
    lambda t: t.strip().casefold() not in TRUE_WORDS | FALSE_WORDS))
def test_parse_flag_an_unknown_word_is_no_or_strictly_a_problem(text: str) -> None:
    assert parse_flag(text) is False
    with pytest.raises(ValueProblem, match="as yes or no"):
        parse_flag(text, strict=True)


@given(st.one_of(st.none(), st.booleans(), st.integers(-2, 2),
                 st.sampled_from(sorted(TRUE_WORDS | FALSE_WORDS))))
def test_every_plugin_reads_yes_no_alike(value: Any) -> None:
    """The spreadsheets' strict yes/no reads every known word as the shared reader does
    (the CRM plugins call ``parse_flag`` itself: they keep no yes/no reader of their own)."""
    assert sheet_flag(value) == parse_flag(value)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=3)),
                                               timezone(timedelta(hours=-5, minutes=-30))])),
       st.sampled_from(["seconds", "microseconds"]), st.booleans())
def test_rfc3339_text_reads_the_same_fast_or_general(moment: datetime, spec: str,
                                                     zulu: bool) -> None:
    """API timestamps (``...Z``, ``+03:00``) take a fast path; it must agree with the
    general reader (the same text with a space in front goes the general way)."""
    text = moment.isoformat(timespec=spec)
    if zulu and moment.utcoffset() == timedelta(0):
        text = text.replace("+00:00", "Z")
    fast = parse_datetime(text)
    assert fast == parse_datetime(f" {text}") == moment.astimezone(UTC).replace(
        microsecond=moment.microsecond if spec == "microseconds" else 0)
    assert fast is not None and fast.tzinfo is UTC


@given(st.one_of(st.integers(-10**15, 10**15), st.integers(0, 10**15).map(str),
                 st.text(alphabet="0123456789 -٣", max_size=8)),
       st.booleans(), st.booleans(), st.booleans())
def test_parse_id_fast_path_agrees_with_the_general_reader(
        value: Any, zero_is_none: bool, numeric: bool, keep_text: bool) -> None:
    options = {"zero_is_none": zero_is_none, "numeric": numeric, "keep_text": keep_text}
    try:
        expected = values._parse_id(value, **options)
    except ValueProblem:
        with pytest.raises(ValueProblem):
            values.parse_id(value, **options)
        return
    assert values.parse_id(value, **options) == expected
