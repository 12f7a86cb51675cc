# ruff: noqa: RUF001  (Russian texts: Cyrillic letters that look Latin are meant)

"""Digests: the tenant file's ``digests:`` block, the tenant-local periods on a test clock,
what a manager's and a director's digest say (from a real synced tenant), and
``syncd digest --dry-run`` as a consultant runs it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from digest_support import ENV, Clock, digests_block, load, set_digests, synced_config
from local_smtp import LocalSmtp
from pydantic import ValidationError
from support import demo_tenant, run_syncd, write_config

from syncd import store
from syncd.config import TenantConfig
from syncd.digest_config import DigestsConfig
from syncd.digests import render
from syncd.digests.content import fix_first, violation_weight
from syncd.digests.periods import due_slot, latest_slot, slot_for_period
from syncd.digests.service import DigestService, compose
from syncd.render import problem_since
from syncd.report import build_report
from syncd.salesbook import problems_from_validation

BERLIN = ZoneInfo("Europe/Berlin")
VLADIVOSTOK = ZoneInfo("Asia/Vladivostok")


# -- configuration ----------------------------------------------------------------------------
def _problems(digests: dict) -> list[str]:
    base = {"plugin": "pipedrive", "salesbook": "b2b", "connection": {}, "digests": digests}
    with pytest.raises(ValidationError) as caught:
        TenantConfig.model_validate(base)
    return [str(p) for p in problems_from_validation(caught.value, "acme.yaml")]


def test_bad_digest_settings_are_named_by_file_and_key() -> None:
    assert _problems({"managers": [{"manager": "Anna", "email": "anna-at-client"}]}) == [
        "acme.yaml: digests.managers.0.email: not an e-mail address: 'anna-at-client'"]
    assert _problems({"weekly": {"weekday": "mon"}})[0].startswith(
        "acme.yaml: digests.weekly.weekday: Input should be 'monday'")
    assert _problems({"weekly": {"hour": 24}}) == [
        "acme.yaml: digests.weekly.hour: Input should be less than or equal to 23"]
    assert _problems({"monthly": {"day": 31}}) == [
        "acme.yaml: digests.monthly.day: Input should be less than or equal to 28"]
    assert _problems({"timezone": "Moscow"}) == [
        "acme.yaml: digests.timezone: unknown timezone 'Moscow' (use an IANA name like "
        "Europe/Moscow)"]
    assert _problems({"director": {"telegram": "12ab"}}) == [
        "acme.yaml: digests.director.telegram: not a Telegram chat: '12ab' (a numeric chat "
        "id, or @channelusername)"]
    assert _problems({"director": {}}) == [
        "acme.yaml: digests.director: give an e-mail address (email) or a Telegram chat "
        "(telegram)"]
    assert _problems({"director": {"telegram": 5}}) == [
        "acme.yaml: digests: director.telegram: Telegram recipients need digests.telegram "
        "(the bot's token)"]
    assert _problems({"telegram": {"bot_token": {"$env": "T"}, "base_url": "ftp://x"}}) == [
        "acme.yaml: digests.telegram.base_url: not an http(s) URL: 'ftp://x'"]
    assert _problems({"email": {"host": "smtp.x", "sender": "a@x.ru", "username": "u"}}) == [
        "acme.yaml: digests.email: username and password go together (give both, or "
        "neither)"]
    assert _problems({"frequency": "weekly"}) == [
        "acme.yaml: digests.frequency: Extra inputs are not permitted"]


def test_addresses_are_one_claim_each() -> None:
    config = DigestsConfig.model_validate({
        "email": {"host": "smtp.x", "sender": "a@x.ru"},
        "telegram": {"bot_token": {"$env": "T"}},
        "director": {"email": ["a@x.ru", "b@x.ru"], "telegram": [-100123, "@sales_room"]}})
    assert config.director is not None
    assert config.director.addresses() == ["email:a@x.ru", "email:b@x.ru",
                                           "telegram:-100123", "telegram:@sales_room"]
    assert config.email is not None and config.email.effective_port == 587


# -- periods in the tenant's own time ---------------------------------------------------------
def test_weekly_digest_is_due_at_the_tenants_monday_nine() -> None:
    config = DigestsConfig()  # Monday 09:00, a 24-hour window
    # Vladivostok is UTC+10: its Monday 09:00 is Sunday 23:00 UTC
    before = datetime(2026, 12, 6, 22, 59, 59, tzinfo=UTC)
    at = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)
    assert due_slot("weekly", config, VLADIVOSTOK, before) is None
    slot = due_slot("weekly", config, VLADIVOSTOK, at)
    assert slot is not None and slot.period == "2026-W49"
    assert slot.at.isoformat() == "2026-12-07T09:00:00+10:00"
    assert (slot.start.date().isoformat(), slot.end.date().isoformat()) == (
        "2026-11-30", "2026-12-07")
    # the same UTC moment is still Sunday afternoon in Berlin: nothing due there
    assert due_slot("weekly", config, BERLIN, at) is None
    # the window: a replica back 23 h 59 min later still sends it; 24 h later it is skipped
    assert due_slot("weekly", config, VLADIVOSTOK,
                    datetime(2026, 12, 7, 22, 59, tzinfo=UTC)) == slot
    assert due_slot("weekly", config, VLADIVOSTOK,
                    datetime(2026, 12, 7, 23, 0, tzinfo=UTC)) is None


def test_summer_time_moves_the_utc_moment_not_the_local_one() -> None:
    config = DigestsConfig()
    # Berlin moves to summer time on Sunday 2026-03-29: Monday 09:00 is 08:00 UTC before,
    # 07:00 UTC after
    march_23 = due_slot("weekly", config, BERLIN, datetime(2026, 3, 23, 8, 0, tzinfo=UTC))
    march_30 = due_slot("weekly", config, BERLIN, datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert march_23 is not None and march_23.at.utcoffset().total_seconds() == 3600
    assert march_30 is not None and march_30.at.utcoffset().total_seconds() == 7200
    assert due_slot("weekly", config, BERLIN, datetime(2026, 3, 30, 6, 59, tzinfo=UTC)) is None
    assert (march_23.period, march_30.period) == ("2026-W12", "2026-W13")


def test_monthly_period_is_the_month_before_and_a_named_period_finds_its_slot() -> None:
    config = DigestsConfig.model_validate({"monthly": {"day": 3, "hour": 10},
                                           "weekly": {"weekday": "wednesday"}})
    slot = latest_slot("monthly", config, BERLIN, datetime(2027, 1, 3, 9, 0, tzinfo=UTC))
    assert slot.period == "2026-12" and slot.at.isoformat() == "2027-01-03T10:00:00+01:00"
    assert slot_for_period("monthly", config, BERLIN, "2026-12") == slot
    weekly = latest_slot("weekly", config, BERLIN, datetime(2026, 12, 9, 12, 0, tzinfo=UTC))
    assert weekly.at.date().isoformat() == "2026-12-09"  # a Wednesday
    assert slot_for_period("weekly", config, BERLIN, weekly.period) == weekly
    with pytest.raises(ValueError, match="not an ISO week"):
        slot_for_period("weekly", config, BERLIN, "2026-49")


# -- content from a real synced tenant --------------------------------------------------------
@pytest.fixture
def synced(tmp_path: Path, db_url: str) -> Iterator[Path]:
    yield from synced_config(tmp_path, db_url)


def test_weekly_digest_lists_the_teams_costliest_violations_in_russian(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp:
        set_digests(synced, digests_block(smtp, None, language="ru"))
    tenant = load(synced)
    db = store.Database(db_url)
    now = datetime.now(UTC)
    report = build_report(db, tenant, clock=now)
    config = tenant.config.digests
    assert config is not None
    slot = latest_slot("weekly", config, ZoneInfo("Europe/Moscow"), now)
    digest = compose(tenant, report, slot, "Anna Petrova", now=now)

    team = {"1", "2"}  # Anna and Boris
    theirs = [v for v in report["violations"] if v["owner_id"] in team]
    assert theirs and len(theirs) < len(report["violations"]), "a team, not everyone"
    assert digest.subject.startswith("Еженедельная сводка, northwind: команда Anna Petrova")
    assert f"Открытых нарушений по сделкам вашей команды: {len(theirs)}" in digest.intro
    first = digest.sections[0]
    assert first.title == "Что исправить в первую очередь"
    expected = fix_first(theirs, tenant.book, now, 5)
    assert [row[0].text for row in first.rows] == [v["deal_title"] for v in expected]
    weights = [violation_weight(tenant.book, v["rule"]) for v in expected]
    assert weights == sorted(weights, reverse=True)
    # "since" is when the problem began (in the stage since, no touch since), not when a
    # pass first saw it: on a first sync those are all today
    for row, violation in zip(first.rows, expected, strict=True):
        since = problem_since(violation)
        assert since is not None and f"с {since:%d.%m.%Y}" in row[3].text
    assert any(problem_since(v) != datetime.fromisoformat(v["opened_at"]) for v in expected)
    text = render.as_text(digest)
    assert "Карма команды" in text
    for rule in {v["rule"] for v in theirs}:
        assert rule not in text, f"the raw rule code {rule!r} is shown"
    others = {v["deal_title"] for v in report["violations"] if v["owner_id"] not in team}
    assert not any(title and title in text for title in others - {v["deal_title"]
                                                                     for v in theirs})
    telegram = render.as_telegram(digest)
    assert len(telegram) <= render.TELEGRAM_LIMIT and "<b>" in telegram


def test_monthly_digest_has_the_bonus_table_and_kpis_against_the_plan(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp:
        set_digests(synced, digests_block(smtp, None))
    tenant = load(synced)
    now = datetime.now(UTC)
    report = build_report(store.Database(db_url), tenant, clock=now)
    config = tenant.config.digests
    assert config is not None
    slot = latest_slot("monthly", config, ZoneInfo("Europe/Moscow"), now)
    digest = compose(tenant, report, slot, "director", now=now)
    month_rows = [r for r in report["people"]["employees"] if r["period"] == slot.period]
    text = render.as_text(digest)
    assert digest.subject == f"Monthly digest, northwind: {slot.period}"
    for row in month_rows:
        assert f"{row['name']}: karma {row['karma']:,.1f}" in text
    plan = tenant.book.kpis
    revenue = report["kpis"]["revenue_by_month"].get(slot.period, 0.0)
    if plan.revenue_per_month:
        assert f"Revenue: {revenue:,.0f}\u00a0EUR of plan {plan.revenue_per_month:,.0f}" in text
    new = next(m for m in report["kpis"]["new_clients"]["by_month"]
               if m["month"] == slot.period)
    assert f"New clients: {new['new_clients']} of plan {new['plan']}" in text
    win = report["kpis"]["win_rate"]
    assert f"({win['won']} won of {win['won'] + win['lost']} closed)" in text


def test_dry_run_prints_each_recipients_digest_and_sends_nothing(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp:
        set_digests(synced, digests_block(smtp, None))
        result = run_syncd(synced, "digest", "northwind", "--kind", "weekly", "--dry-run",
                           env=ENV)
        assert result.returncode == 0, result.stderr
        assert smtp.messages == []
    out = result.stdout
    assert "dry run: nothing is sent" in out
    assert "== to email:anna@client.example (Anna Petrova)" in out
    assert "== to email:dmitry@client.example (Dmitry Orlov)" in out
    assert "What to fix first" in out and "Team karma" in out
    db = store.Database(db_url)
    with db.session() as session:
        assert store.digests.deliveries(session) == [], "a dry run claims nothing"

    monthly = run_syncd(synced, "digest", "northwind", "--kind", "monthly", "--dry-run",
                        "--period", "2026-13", env=ENV)
    assert monthly.returncode == 2 and "not a month: '2026-13'" in monthly.stderr
    set_digests(synced, None)
    none = run_syncd(synced, "digest", "northwind", "--kind", "weekly", "--dry-run", env=ENV)
    assert none.returncode == 2 and "the tenant has no digests configured" in none.stderr


def test_an_unknown_manager_is_skipped_with_a_warning_and_the_others_still_get_theirs(
        synced: Path, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    with LocalSmtp(tmp_path) as smtp:
        block = digests_block(smtp, None)
        block["managers"].append({"manager": "Nobody Known", "email": "nobody@client.example"})
        block["monthly"]["enabled"] = False
        set_digests(synced, block)
        tenant = load(synced)
        config = tenant.config.digests
        assert config is not None
        clock = Clock(datetime.now(UTC))
        slot = latest_slot("weekly", config, ZoneInfo("Europe/Moscow"), clock.now)
        clock.now = slot.at.astimezone(UTC)
        service = DigestService(store.Database(db_url), lambda: [tenant], clock=clock)
        # Listen on the service's own logger: what earlier tests in this worker did to the
        # root logger (its level, its handlers) must not decide what this test sees.
        heard: list[logging.LogRecord] = []
        listener = logging.Handler(logging.WARNING)
        listener.emit = heard.append  # type: ignore[method-assign]
        service_log = logging.getLogger("syncd.digests.service")
        service_log.addHandler(listener)
        caplog.set_level(logging.WARNING, logger="syncd.digests.service")
        try:
            outcomes = {o.address: o.status for o in service.tick()}
            service.tick()
        finally:
            service_log.removeHandler(listener)
    assert outcomes == {"email:anna@client.example": "sent",
                        "email:dmitry@client.example": "sent",
                        "email:nobody@client.example": "skipped"}
    warnings = [r.getMessage() for r in heard if "Nobody Known" in r.getMessage()]
    assert len(warnings) == 1, "warned once per period, not every minute"
    assert "has no team" in warnings[0]
    assert [m["To"] for m in smtp.messages] == ["anna@client.example", "dmitry@client.example"]


def test_check_warns_about_digest_secrets_without_stopping_the_tenant(tmp_path: Path,
                                                                      db_url: str) -> None:
    tenant = demo_tenant("https://northwind.pipedrive.com")
    tenant["digests"] = {
        "email": {"host": "smtp.x.ru", "sender": "a@x.ru", "username": "u",
                  "password": "inline-smtp-pass-3141"},
        "telegram": {"bot_token": {"$env": "DIGEST_UNSET_TOKEN"}},
        "director": {"email": "boss@x.ru", "telegram": 42}}
    config = write_config(tmp_path, db_url, {"northwind": tenant})
    result = run_syncd(config, "check", env=ENV)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out  # warnings: the tenant still syncs
    assert "digests.email.password: secret written inline; use {$env: NAME}" in out
    assert ("digests.telegram.bot_token: missing secret: environment variable "
            "DIGEST_UNSET_TOKEN is not set; digests over this channel will fail") in out
    assert "inline-smtp-pass-3141" not in out
