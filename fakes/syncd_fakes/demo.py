"""The sample clients ``syncd demo`` runs against: one local fake account per CRM plugin.

``demo_account(plugin)`` returns a context manager that serves the plugin's sample client
on 127.0.0.1 (a free port) for as long as the context lasts and yields
``(connection_dict, server)``: the tenant's connection settings pointing at the fake, and
the fake itself (``server.writes`` lists what was written back to it). The tokens here are
the fakes' own, public on purpose: they open nothing but the local server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

Served = tuple[dict[str, Any], Any]

PIPEDRIVE_TOKEN = "demo-token"  # noqa: S105 - the fake's public token
BITRIX24_CODE = "demo0webhook0code"


@contextmanager
def pipedrive() -> Iterator[Served]:
    """The "Northwind Engineering" sample on a fake Pipedrive account."""
    from syncd_fakes.pipedrive.sample import sample_dataset
    from syncd_fakes.pipedrive.server import FakePipedrive

    fake = FakePipedrive(sample_dataset(datetime.now(UTC)), token=PIPEDRIVE_TOKEN,
                         burst_limit=20)
    base_url = fake.start()
    try:
        yield {"base_url": base_url, "api_token": PIPEDRIVE_TOKEN, "burst_limit": 20}, fake
    finally:
        fake.stop()


@contextmanager
def amocrm() -> Iterator[Served]:
    """The "Northwind Engineering" sample as a fake amoCRM account (OAuth included)."""
    from syncd_fakes.amocrm.sample import sample_dataset
    from syncd_fakes.amocrm.server import DEMO_LONG_LIVED_TOKEN, FakeAmoCRM

    fake = FakeAmoCRM(sample_dataset(datetime.now(UTC)))
    base_url = fake.start()
    try:
        yield {"base_url": base_url, "long_lived_token": DEMO_LONG_LIVED_TOKEN}, fake
    finally:
        fake.stop()


@contextmanager
def bitrix24() -> Iterator[Served]:
    """The sample portal on a fake Bitrix24 (inbound webhook URL)."""
    from syncd_fakes.bitrix24.sample import sample_dataset
    from syncd_fakes.bitrix24.server import FakeBitrix24

    fake = FakeBitrix24(sample_dataset(datetime.now(UTC)), webhook_code=BITRIX24_CODE)
    fake.start()
    try:
        yield {"base_url": fake.base_url, "webhook_url": fake.webhook_url}, fake
    finally:
        fake.stop()


DEMO_ACCOUNTS: dict[str, Callable[[], AbstractContextManager[Served]]] = {
    "pipedrive": pipedrive,
    "amocrm": amocrm,
    "bitrix24": bitrix24,
}


def demo_account(plugin: str) -> AbstractContextManager[Served] | None:
    """The sample client of ``plugin`` served locally, or ``None`` when it has none."""
    serve = DEMO_ACCOUNTS.get(plugin)
    return serve() if serve is not None else None
