"""The write guard: fencing of CRM calls (issue 11), read by every request and rate wait.

Its own small module so that ``syncd.http`` (checks it before every request attempt) and
``syncd.ratelimit`` (re-checks it after a wait) both read it without importing each other;
``syncd.lease.fence_crm_calls`` sets it for a fenced pass.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

#: Set by the pass for its write-back phase: called before *every* request attempt (retries
#: included) while it is set, and raises (e.g. ``LeaseLost``) when this process may no longer
#: write for the tenant. Fencing of CRM calls, not only of commits (issue 11).
write_guard: ContextVar[Callable[[], None] | None] = ContextVar(
    "syncd_write_guard", default=None)


def check_write_guard() -> None:
    """Call the current write guard, if any (raises when writing is no longer allowed)."""
    guard = write_guard.get()
    if guard is not None:
        guard()
