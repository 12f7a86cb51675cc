"""Digest delivery against a real local SMTP server (aiosmtpd) and a fake Telegram Bot API
built from its documentation (syncd_fakes.telegram): exactly one digest per address and
period with two replicas and a restart, a crash between claim and send, Telegram's flood
control, TLS variants, and secrets that never show. The clock is the test's (no sleeps)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from digest_support import (
    BOT_TOKEN,
    ENV,
    SMTP_PASSWORD,
    Clock,
    digests_block,
    load,
    next_local,
    set_digests,
    synced_config,
)
from local_smtp import LocalSmtp
from syncd_fakes.telegram import FakeTelegram

from syncd import store
from syncd.config import load_settings
from syncd.daemon import Daemon, Runner
from syncd.digests.service import DigestService
from syncd.lease import replica_id
from syncd.plugins import make_plugin_manager
from syncd.store import digests as deliveries

CHATS = {"1001", "@northwind_sales"}
WEEKLY_ADDRESSES = {"email:anna@client.example", "telegram:1001",
                    "email:dmitry@client.example"}


@pytest.fixture
def synced(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    yield from synced_config(tmp_path, db_url)


def _weekly_only(block: dict) -> dict:
    block["monthly"]["enabled"] = False
    return block


def _rows(db_url: str) -> list:
    db = store.Database(db_url)
    with db.session() as session:
        return deliveries.deliveries(session)


def test_two_replicas_and_a_restart_send_one_digest_per_address_per_period(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp, FakeTelegram(BOT_TOKEN, CHATS) as telegram:
        set_digests(synced, _weekly_only(digests_block(smtp, telegram.base_url)))
        tenant = load(synced)
        monday = next_local(0, 9)  # the tenant's local Monday 09:00 (Europe/Moscow)
        clock = Clock(monday.astimezone(UTC) - timedelta(minutes=1))
        replicas = [DigestService(store.Database(db_url), lambda: [tenant], clock=clock,
                                  holder=replica_id(f"run-{n}")) for n in (1, 2)]

        assert [r.tick() for r in replicas] == [[], []], "08:59 local: nothing is due"
        assert smtp.messages == [] and telegram.messages == []

        clock.advance(minutes=1)  # 09:00: both replicas tick at the same moment
        start = threading.Barrier(2)
        outcomes: list = []

        def tick(service: DigestService) -> None:
            start.wait()
            outcomes.extend(service.tick())

        threads = [threading.Thread(target=tick, args=(r,)) for r in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        clock.advance(minutes=1)  # the next tick of each finishes what a lock held back
        for replica in replicas:
            outcomes.extend(replica.tick())
        sent = Counter(o.address for o in outcomes if o.status == "sent")
        assert sent == dict.fromkeys(WEEKLY_ADDRESSES, 1)

        restarted = DigestService(store.Database(db_url), lambda: [tenant], clock=clock,
                                  holder=replica_id("run-1"))  # a new process
        clock.advance(hours=3)
        assert restarted.tick() == [], "a restart within the window sends nothing again"
        assert len(smtp.messages) == 2 and len(telegram.messages) == 1

        clock.advance(days=7)  # the next Monday is a new period
        assert {o.status for o in restarted.tick()} == {"sent"}
        assert len(smtp.messages) == 4 and len(telegram.messages) == 2

    anna = smtp.to("anna@client.example")
    assert len(anna) == 2 and anna[0]["Message-ID"] != anna[1]["Message-ID"]
    assert anna[0]["Auto-Submitted"] == "auto-generated"
    assert anna[0].get_body(("html",)) is not None and anna[0].get_body(("plain",)) is not None
    assert "What to fix first" in anna[0].get_body(("plain",)).get_content()
    assert smtp.logins == ["digests"] * 4, "logged in over STARTTLS each time"
    assert telegram.messages[0]["chat"]["id"] == 1001
    assert "What to fix first" in telegram.messages[0]["text"]
    # deal titles link to the deal in the CRM (the connector's deal_url), in both channels
    links = telegram.messages[0]["links"]
    assert links and all(link.startswith("http://127.0.0.1:") and "/deal/" in link
                         for link in links)
    html = anna[0].get_body(("html",)).get_content()
    assert f'<a href="{links[0]}">' in html
    periods = Counter((row.period, row.status) for row in _rows(db_url))
    assert sorted(periods.values()) == [3, 3] and all(s == "sent" for _, s in periods)


def test_a_crash_between_claim_and_send_is_sent_once_on_a_later_tick(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp:
        set_digests(synced, _weekly_only(digests_block(smtp, None)))
        tenant = load(synced)
        clock = Clock(next_local(0, 9).astimezone(UTC))
        service = DigestService(store.Database(db_url), lambda: [tenant], clock=clock,
                                claim_seconds=300)
        slot_period = service.slot(tenant, "weekly", None).period
        db = store.Database(db_url)
        with db.session() as session:  # a replica elsewhere claimed two, then died
            for address, holder in (("email:anna@client.example", "run:elsewhere:4242:ab12cd"),
                                    ("email:dmitry@client.example", "run:elsewhere:4243:ef34ab")):
                assert deliveries.claim(session, tenant_key="northwind", kind="weekly",
                                        recipient=address, period=slot_period, holder=holder,
                                        now=clock.now, ttl=timedelta(seconds=300)) is not None
        clock.advance(minutes=1)
        assert service.tick() == [], "their claims are live: nobody else sends"
        assert smtp.messages == []
        clock.advance(minutes=4, seconds=1)  # 5 min 1 s after the claims: expired
        assert {o.address: o.status for o in service.tick()} == {
            "email:anna@client.example": "sent", "email:dmitry@client.example": "sent"}
        clock.advance(minutes=1)
        assert service.tick() == []
    assert sorted(m["To"] for m in smtp.messages) == ["anna@client.example",
                                                       "dmitry@client.example"]
    rows = {row.recipient: row for row in _rows(db_url)}
    assert {row.attempts for row in rows.values()} == {2}
    assert {row.claimed_by for row in rows.values()} == {service.holder}


def test_a_dead_local_claimer_is_taken_over_at_once(synced: Path, db_url: str,
                                                    tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_holder = f"run:{socket.gethostname()}:{gone.stdout.strip()}:0a0b0c"
    with LocalSmtp(tmp_path) as smtp:
        block = _weekly_only(digests_block(smtp, None))
        block["managers"] = block["managers"][:1]
        set_digests(synced, block)
        tenant = load(synced)
        clock = Clock(next_local(0, 9).astimezone(UTC))
        service = DigestService(store.Database(db_url), lambda: [tenant], clock=clock)
        period = service.slot(tenant, "weekly", None).period
        with store.Database(db_url).session() as session:
            deliveries.claim(session, tenant_key="northwind", kind="weekly",
                             recipient="email:anna@client.example", period=period,
                             holder=dead_holder, now=clock.now, ttl=timedelta(minutes=5))
        clock.advance(seconds=30)  # well within the dead process's claim time
        assert [o.status for o in service.tick()] == ["sent"]
    assert len(smtp.messages) == 1


def test_telegram_flood_control_is_retried_after_retry_after_on_the_test_clock(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    from syncd_fakes.http import Fault

    flood = Fault("429", method="POST", path="/sendMessage")
    with LocalSmtp(tmp_path) as smtp, FakeTelegram(BOT_TOKEN, CHATS, faults=[flood],
                                                   retry_after=900) as telegram:
        block = _weekly_only(digests_block(smtp, telegram.base_url))
        block["managers"] = [{"manager": "Anna Petrova", "telegram": 1001}]
        block.pop("email")
        block["director"] = None
        set_digests(synced, block)
        tenant = load(synced)
        clock = Clock(next_local(0, 9).astimezone(UTC))
        service = DigestService(store.Database(db_url), lambda: [tenant], clock=clock)
        first = service.tick()
        assert [(o.status, o.address) for o in first] == [("retry", "telegram:1001")]
        assert "flood control" in (first[0].error or "")
        (row,) = _rows(db_url)
        assert row.next_attempt_at == clock.now + timedelta(seconds=900), \
            "the server's retry_after (900 s) beats the 1-minute backoff"
        clock.advance(seconds=899)
        assert service.tick() == []
        clock.advance(seconds=1)
        assert [o.status for o in service.tick()] == ["sent"]
    assert telegram.requests == ["sendMessage", "sendMessage"]
    assert len(telegram.messages) == 1
    assert BOT_TOKEN not in (first[0].error or "")


def test_implicit_tls_and_a_rejected_password_never_show_the_secret(
        synced: Path, db_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-smtp-password-55aa"
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", wrong)
    with LocalSmtp(tmp_path, security="ssl") as smtp:
        block = _weekly_only(digests_block(smtp, None))
        block["max_attempts"] = 2
        set_digests(synced, block)
        tenant = load(synced)
        clock = Clock(next_local(0, 9).astimezone(UTC))
        service = DigestService(store.Database(db_url), lambda: [tenant], clock=clock)
        first = service.tick()
        assert {o.status for o in first} == {"retry"}
        assert all("535" in (o.error or "") for o in first)
        clock.advance(minutes=1)
        second = service.tick()
        assert {o.status for o in second} == {"failed"}, "given up after max_attempts"
        assert smtp.messages == []

        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", SMTP_PASSWORD)  # fixed: a new period works
        clock.advance(days=7)
        assert {o.status for o in service.tick()} == {"sent"}
        assert len(smtp.messages) == 2
    stored = " ".join(row.error or "" for row in _rows(db_url))
    assert "535" in stored
    for secret in (wrong, SMTP_PASSWORD):
        assert secret not in caplog.text and secret not in stored


def test_the_daemon_runs_digests_and_retention_on_schedule_timers(
        synced: Path, db_url: str, tmp_path: Path) -> None:
    with LocalSmtp(tmp_path) as smtp:
        set_digests(synced, _weekly_only(digests_block(smtp, None)))
        settings = load_settings(synced)
        tenant = load(synced)
        db = store.Database(db_url)
        daemon = Daemon(Runner(settings, make_plugin_manager(), db), [tenant],
                        replica=settings.daemon.replica, digest_timer=settings.daemon.digests)
        jobs = {job.job_func.func.__name__: job for job in daemon.timers.jobs}
        assert set(jobs) == {"tick", "start_digests", "retention"}
        assert (jobs["tick"].interval, jobs["tick"].unit) == (5, "seconds")
        assert (jobs["start_digests"].interval, jobs["start_digests"].unit) == (60, "seconds")
        assert (jobs["retention"].interval, jobs["retention"].unit) == (1, "days")

        clock = Clock(next_local(0, 9).astimezone(UTC))
        daemon.digests.clock = clock
        daemon.start_digests()
        assert daemon._digest_thread is not None
        daemon._digest_thread.join(timeout=120)
        assert sorted(m["To"] for m in smtp.messages) == ["anna@client.example",
                                                           "dmitry@client.example"]

        clock.advance(days=401)  # retention: rows older than 400 days are forgotten
        daemon.retention()
        assert _rows(db_url) == []
