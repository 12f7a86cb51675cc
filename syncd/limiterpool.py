"""One rate limiter per API identity for the whole process.

A CRM limits a token, an integration or a portal, not a connector: a connector lives for one
pass, and a fresh limiter per pass would not know the requests the previous pass, ``syncd
inspect`` or a concurrent pass of the same identity made a moment ago, and would burst
straight into a 429. Every plugin keeps its limiters here, keyed by its own identity.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast

L = TypeVar("L")

_pool: dict[tuple[str, Hashable], Any] = {}
_lock = threading.Lock()


def process_limiter(plugin: str, key: Hashable, make: Callable[..., L], *,
                    clock: Callable[[], float] = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep) -> L:
    """``make(clock=clock, sleep=sleep)``, shared by every caller asking with the same
    ``plugin`` and ``key``. Injected clocks (tests) get a private limiter, made anew."""
    if clock is not time.monotonic or sleep is not time.sleep:
        return make(clock=clock, sleep=sleep)
    with _lock:
        found = _pool.get((plugin, key))
        if found is None:
            found = _pool[(plugin, key)] = make(clock=clock, sleep=sleep)
        return cast(L, found)
