"""A client-side model of a leaky-bucket rate limit (Bitrix24's), so the server never says 503.

Why not ``syncd.ratelimit.RateLimiter``: that one caps requests per rolling window. Bitrix24
counts differently: every request adds 1 to a per-portal counter that drains at ``rate``
per second, and a request finding the counter at ``burst`` is refused. A rolling window
of ``burst`` per ``burst / rate`` seconds is stricter than that and wastes throughput after
the first burst.

The model is an upper bound of the server's counter: a request is counted as arriving at
the moment its response came back (the latest moment the server can have seen it; later
arrivals only drain less), and requests still in flight count as a full unit. So the
client waits exactly as long as the worst case requires, and no longer.

The portal counts every process on this machine: with a ``shared`` budget
(``syncd.ratelimit.SharedBudget`` over ``syncd.store.budget.Bucket``) each request also
reserves its place in the portal's bucket kept in the database, and a 503 fills it for all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

from syncd.ratelimit import SharedBudget, recheck_write_guard


class LeakyBucket:
    """``acquire``/``release``/``observe`` as ``syncd.http.ApiClient`` expects of a limiter."""

    def __init__(self, burst: int, rate: float, *, margin: float = 0.25,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if burst < 1 or rate <= 0:
            message = f"leaky bucket must be positive (got burst {burst}, rate {rate}/s)"
            raise ValueError(message)
        self.burst = burst
        self.rate = float(rate)
        self.margin = margin
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._level = 0.0
        self._at = clock()
        self._in_flight = 0
        self.waited = 0.0  # seconds spent waiting (for benchmarks)
        self.refusals = 0  # 503 QUERY_LIMIT_EXCEEDED answers seen
        #: The portal's bucket shared with other processes, if any.
        self.shared: SharedBudget | None = None

    def _drain(self, now: float) -> None:
        self._level = max(0.0, self._level - (now - self._at) * self.rate)
        self._at = now

    def level(self) -> float:
        """The modelled counter now (requests in flight included)."""
        with self._lock:
            self._drain(self._clock())
            return self._level + self._in_flight

    def acquire(self) -> object:
        """Wait until one more request fits under ``burst``; count it as in flight."""
        while True:
            with self._lock:
                now = self._clock()
                self._drain(now)
                excess = self._level + self._in_flight + 1 - (self.burst - self.margin)
                if excess <= 0:
                    self._in_flight += 1
                    break
                # Only in-flight requests fill the bucket: poll until one comes back.
                wait = 0.01 if self._in_flight and self._level <= 0 else excess / self.rate
            self.waited += wait
            self._sleep(wait)
            recheck_write_guard()  # a lease can run out while we wait
        slot = object()
        shared = self.shared
        if shared is not None:
            wait = shared.delay()
            if wait > 0:
                self.waited += wait
                self._sleep(wait)
                try:
                    recheck_write_guard()
                except BaseException:
                    self.release(slot)
                    raise
        return slot

    def release(self, slot: object) -> None:
        """The response is back: the request now sits in the bucket, draining from now."""
        with self._lock:
            self._drain(self._clock())
            self._in_flight = max(0, self._in_flight - 1)
            self._level += 1.0

    def observe(self, headers: Mapping[str, str]) -> None:
        """Bitrix24 announces nothing about the bucket in headers."""

    def saturate(self) -> None:
        """The portal refused a request (503): treat the bucket as full from now on."""
        with self._lock:
            self.refusals += 1
            self._drain(self._clock())
            self._level = max(self._level, float(self.burst))
        if self.shared is not None:
            self.shared.saturate()  # the portal refused: every process waits
