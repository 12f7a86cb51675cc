"""The digest tests' world: the demo tenant synced from the fake Pipedrive into a real
database, its teams, and a ``digests:`` block pointing at a local SMTP server and a fake
Telegram Bot API. The clock is the test's: ``Clock`` only moves when told to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from support import FAST_BURST, fake_tenant, run_syncd, write_config
from syncd_fakes.pipedrive.sample import sample_dataset
from syncd_fakes.pipedrive.server import FakePipedrive

from syncd.config import Tenant, load_settings, load_tenant
from syncd.plugins import make_plugin_manager

PIPEDRIVE_TOKEN = "pd-digest-token-8c2a"
BOT_TOKEN = "710042:digest-bot-token-QxZ9"
SMTP_PASSWORD = "smtp-secret-7d1e"
ENV = {"NORTHWIND_PIPEDRIVE_TOKEN": PIPEDRIVE_TOKEN, "DIGEST_BOT_TOKEN": BOT_TOKEN,
       "DIGEST_SMTP_PASSWORD": SMTP_PASSWORD}
MOSCOW = ZoneInfo("Europe/Moscow")
#: The sample's users: Anna leads Boris; Dmitry leads Clara.
TEAMS = [{"manager": "Anna Petrova", "members": ["Boris Ivanov"]},
         {"manager": "Dmitry Orlov", "members": ["Clara Smirnova"]}]


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def next_local(weekday: int, hour: int, minute: int = 0, *, tz: ZoneInfo = MOSCOW,
               after: datetime | None = None) -> datetime:
    """The next local ``weekday`` (0 = Monday) at ``hour:minute`` after ``after`` (now)."""
    local = (after or datetime.now(UTC)).astimezone(tz)
    day = local.date() + timedelta(days=(weekday - local.weekday()) % 7 or 7)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)


def synced_config(root: Path, db_url: str) -> Iterator[Path]:
    """Sync the demo tenant (with teams) once; yields the config path."""
    with FakePipedrive(sample_dataset(datetime.now(UTC)), token=PIPEDRIVE_TOKEN,
                       burst_limit=FAST_BURST) as fake:
        tenant = fake_tenant(fake)
        tenant["mapping"]["teams"] = TEAMS
        config = write_config(root, db_url, {"northwind": tenant})
        result = run_syncd(config, "sync", "northwind", env=ENV)
        assert result.returncode in (0, 4), result.stderr
    yield config


def digests_block(smtp: Any, telegram_url: str | None, **extra: Any) -> dict[str, Any]:
    block: dict[str, Any] = {
        "timezone": "Europe/Moscow",
        "weekly": {"weekday": "monday", "hour": 9, "top": 5},
        "monthly": {"day": 1, "hour": 9},
        "email": {"host": smtp.host, "port": smtp.port, "security": smtp.security,
                  "username": smtp.username, "password": {"$env": "DIGEST_SMTP_PASSWORD"},
                  "sender": "Sales audit <digests@consultancy.example>",
                  "ca_file": str(smtp.cert_file), "timeout_seconds": 10},
        "managers": [
            {"manager": "Anna Petrova", "email": "anna@client.example", "telegram": 1001},
            {"manager": "Dmitry Orlov", "email": ["dmitry@client.example"]},
        ],
        "director": {"email": "director@client.example", "telegram": "@northwind_sales"},
    }
    if telegram_url is not None:
        block["telegram"] = {"bot_token": {"$env": "DIGEST_BOT_TOKEN"}, "base_url": telegram_url}
    else:
        block["managers"][0].pop("telegram")
        block["director"].pop("telegram")
    block.update(extra)
    return block


def set_digests(config: Path, block: dict[str, Any] | None, **tenant_keys: Any) -> None:
    path = config.parent / "tenants" / "northwind.yaml"
    data = yaml.safe_load(path.read_text("utf-8"))
    if block is None:
        data.pop("digests", None)
    else:
        data["digests"] = block
    data.update(tenant_keys)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")


def load(config: Path) -> Tenant:
    settings = load_settings(config)
    return load_tenant(settings, "northwind", make_plugin_manager().connectors, offline=True)
