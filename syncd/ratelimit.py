"""A proactive rolling-window rate limiter shared by every request of one API client.

Why proactive: CRMs punish clients that keep hitting their limits (Pipedrive answers
api-token clients that hammer on after 429s with a Cloudflare 403 block page), so the
client must stay under the limit instead of learning it from 429s.

How it stays under a server enforcing the same rolling window: every request takes a
*slot*. A slot is stamped when it is acquired and re-stamped when the response arrives
(``release``). The server saw the request somewhere between those two instants, so the
completion stamp is never earlier than the server's own timestamp; a new request is let
through only when fewer than ``limit`` slots are younger than ``window + margin``. The
small ``margin`` absorbs clock granularity and window rounding on the server.

``observe(headers)`` adopts what the server announces: ``x-ratelimit-limit`` replaces the
configured limit, and ``x-ratelimit-remaining: 0`` blocks new requests for
``x-ratelimit-reset`` seconds, unless this limiter's own window is full (then the "0" is
its own requests', and the window already waits exactly as long as the server needs).
Clock and sleep are injectable so tests run instantly.

Across processes: a CRM limits the integration, not the process. A limiter may carry a
``SharedBudget`` (``syncd.store.budget``): after the local slot, every request also
reserves a send time in the database row of its integration and sleeps until then, with
no lock held; a server's "nothing left" pauses every process. If the database cannot be
reached the limiter falls back to its local budget (and says so in the log).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from syncd.writeguard import check_write_guard

log = logging.getLogger(__name__)

#: While every counted slot is still in flight we cannot know when one frees up: poll.
_IN_FLIGHT_POLL = 0.05
#: Never trust a server-announced reset longer than this (seconds).
_MAX_RESET = 60.0


@dataclass
class Slot:
    """One request's place in the window; ``at`` moves to the completion time."""

    at: float
    done: bool = False
    #: the send time reserved in the shared budget (wall clock), settled when answered
    shared_at: float | None = None


class BudgetBackend(Protocol):
    def reserve(self, key: str, rule: Any, clock: Callable[[], float]) -> float: ...

    def block(self, key: str, until: float) -> None: ...

    def saturate(self, key: str, rule: Any, clock: Callable[[], float]) -> None: ...


class SharedBudget:
    """The cross-process half of a limiter: one integration's row of reserved send times.

    ``rule`` is a ``syncd.store.budget.Window`` or ``Bucket``; ``clock`` must be the wall
    clock (``time.time``) every process sharing the row uses."""

    def __init__(self, backend: BudgetBackend, key: str, rule: Any, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.key = key
        self.rule = rule
        self._clock = clock
        self._failing = False
        self.reservations = 0

    def delay(self) -> float:
        """Reserve the next send; seconds to wait for it (0 when the database fails)."""
        return self.reserve()[0]

    def reserve(self) -> tuple[float, float | None]:
        """Reserve the next send: ``(seconds to wait, the reserved time)``; the time is
        None when the database fails (then there is nothing to settle)."""
        try:
            at = self.backend.reserve(self.key, self.rule, self._clock)
        except Exception as exc:  # never fail a pass over its rate budget's bookkeeping
            self._report(exc)
            return 0.0, None
        self._failing = False
        self.reservations += 1
        return max(0.0, at - self._clock()), at

    def settle(self, reserved: float) -> None:
        """The send reserved at ``reserved`` is answered: count it from now (a window
        rule; see ``syncd.store.budget.Window.settle``)."""
        settle = getattr(self.backend, "settle", None)
        if settle is None:
            return
        try:
            settle(self.key, self.rule, reserved, self._clock)
        except Exception as exc:
            self._report(exc)

    def block(self, seconds: float) -> None:
        try:
            self.backend.block(self.key, self._clock() + seconds)
        except Exception as exc:
            self._report(exc)

    def saturate(self) -> None:
        """A leaky bucket the CRM refused a request from: full, for every process."""
        try:
            self.backend.saturate(self.key, self.rule, self._clock)
        except Exception as exc:
            self._report(exc)

    def adopt_limit(self, limit: int) -> None:
        if hasattr(self.rule, "limit"):
            self.rule = dataclasses.replace(self.rule, limit=limit)

    def _report(self, exc: Exception) -> None:
        if not self._failing:
            log.warning("shared rate budget unavailable (%s); keeping this process's own "
                        "budget only", type(exc).__name__)
        self._failing = True


def recheck_write_guard() -> None:
    """After a rate-limit wait: the pass's write guard again (a lease may have run out
    while we slept)."""
    check_write_guard()


class Limiter(Protocol):
    """What ``syncd.http.ApiClient`` needs of a limiter: ``RateLimiter`` below, or a
    plugin's own (Bitrix24's leaky bucket). ``acquire``'s slot goes back to ``release``."""

    def acquire(self) -> Any: ...

    def release(self, slot: Any) -> None: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...


class RateLimiter:
    """At most ``limit`` requests per rolling ``window`` seconds (thread-safe)."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit < 1 or window <= 0:
            message = f"rate limit must be positive (got {limit} per {window} s)"
            raise ValueError(message)
        self.limit = limit
        self.window = float(window)
        self.margin = 0.05 * self.window if margin is None else float(margin)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: list[Slot] = []
        self._blocked_until = 0.0
        self.waited = 0.0  # total seconds spent waiting (for metrics and benchmarks)
        #: The budget shared with other processes of the same integration, if any.
        self.shared: SharedBudget | None = None

    # --- the request side ---------------------------------------------------------------
    def acquire(self) -> Slot:
        """Wait until one more request fits in the window; return its slot."""
        while True:
            with self._lock:
                now = self._clock()
                delay = self._delay(now)
                if delay <= 0:
                    slot = Slot(at=now)
                    self._slots.append(slot)
                    break
            self.waited += delay
            self._sleep(delay)
            recheck_write_guard()  # a lease can run out while we wait
        shared = self.shared
        if shared is not None:
            wait, slot.shared_at = shared.reserve()
            if wait > 0:
                self.waited += wait
                self._sleep(wait)
                with self._lock:
                    slot.at = max(slot.at, self._clock())
                try:
                    recheck_write_guard()
                except BaseException:
                    self.release(slot)
                    raise
        return slot

    def release(self, slot: Slot) -> None:
        """Mark the request of ``slot`` as answered (the server has surely counted it),
        here and in the shared budget."""
        with self._lock:
            slot.at = max(slot.at, self._clock())
            slot.done = True
            reserved, slot.shared_at = slot.shared_at, None
        if reserved is not None and self.shared is not None:
            self.shared.settle(reserved)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's announced limit; pause when it says nothing is left."""
        limit = _number(headers.get("x-ratelimit-limit"))
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        pause = None
        with self._lock:
            if limit is not None and limit >= 1 and int(limit) != self.limit:
                log.info("rate limit adopted from server: %d per %.1f s", limit, self.window)
                self.limit = int(limit)
                if self.shared is not None:
                    self.shared.adopt_limit(self.limit)
            if remaining is not None and remaining <= 0 and not self._own_doing(reset):
                pause = max(min(reset if reset is not None else self.window, _MAX_RESET), 0.0)
                until = self._clock() + pause + self.margin
                self._blocked_until = max(self._blocked_until, until)
        if pause is not None and self.shared is not None:
            self.shared.block(pause + self.margin)  # every process pauses, not only us

    # --- internals ----------------------------------------------------------------------
    def _own_doing(self, reset: float | None) -> bool:
        """Whether a server's "nothing left" is our own requests' (caller holds the lock):
        this limiter's own window already holds ``limit`` of them, and the server's reset
        is no longer than that window. Then the window already waits for the oldest of
        them to age out, which frees the server's window no later (its stamps are
        arrivals, ours answers), and ``x-ratelimit-reset`` is the coarser figure
        (Pipedrive's is whole seconds, counted from the answer): waiting it out after
        every full window lost the window's own send time, 20-25% of a long pull's rate
        (issue 13 item 7). Fewer of our own requests than the limit (somebody else spends
        the budget too), or a reset longer than our window (the server's window is longer
        than configured): the server's reset is obeyed."""
        span = self.window + self.margin
        if reset is not None and reset > span:
            return False
        now = self._clock()
        return sum(1 for s in self._slots if now - s.at < span) >= self.limit

    def _delay(self, now: float) -> float:
        """Seconds to wait before a new slot fits (<= 0: go now). Caller holds the lock."""
        span = self.window + self.margin
        # In-flight slots older than the window are dropped too: the request surely
        # reached the server near its start, and a hung request must not block forever.
        self._slots = [s for s in self._slots if now - s.at < span]
        delay = self._blocked_until - now
        excess = len(self._slots) - self.limit + 1
        if excess > 0:
            stamps = sorted(s.at for s in self._slots)
            free_at = stamps[excess - 1] + span
            delay = max(delay, free_at - now)
            if all(not s.done for s in self._slots):
                delay = max(min(delay, _IN_FLIGHT_POLL), 1e-3)
        return delay


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
