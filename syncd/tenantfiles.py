"""Tenant files that change while the daemon runs: re-read them cheaply, one at a time hurt.

``TenantWatcher.refresh`` is called on every scheduler tick. It only stats the tenant and
Sales Book files (modification time and size); when one changed, every watched tenant file
is loaded again (``syncd.config.load_tenants``), so a fixed file is picked up without a
restart and a newly broken one is skipped (the last good version is *not* kept: the file on
disk is the truth, and its problems are reported). A tenant whose file is unchanged but
broken for a reason outside the file (a missing ``$file`` secret, an environment variable)
is retried every ``retry_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from syncd.config import Settings, TenantSet, load_tenants
from syncd.errors import ConfigProblem
from syncd.plugins import ConnectorRegistry

Signature = dict[str, tuple[int, int]]


class TenantWatcher:
    """Loads the tenant files again when they change; see the module docstring."""

    def __init__(self, settings: Settings, registry: ConnectorRegistry,
                 keys: list[str] | None = None, *, retry_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.registry = registry
        self.keys = list(keys) if keys else None
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._signature: Signature | None = None
        self._last_load = clock()
        self.current = TenantSet()

    def load(self) -> TenantSet:
        """Load every watched tenant now (also the first load)."""
        self._signature = self._stat()
        self._last_load = self.clock()
        files = self.settings.tenant_files()
        keys = self.keys or list(files)
        present = [key for key in keys if key in files]
        result = load_tenants(self.settings, self.registry, present) if present else TenantSet()
        for key in keys:
            if key not in files:
                result.broken[key] = [ConfigProblem(
                    str(self.settings.tenants_dir / f"{key}.yaml"), "", "file not found")]
        self.current = result
        return result

    def refresh(self) -> TenantSet | None:
        """A new TenantSet when some file changed (or a broken tenant is due for a retry);
        None when nothing changed. Costs one ``stat`` per file otherwise."""
        changed = self._stat() != self._signature
        retry = bool(self.current.broken) and (
            self.clock() - self._last_load >= self.retry_seconds)
        if not changed and not retry:
            return None
        return self.load()

    def _stat(self) -> Signature:
        found: Signature = {}
        for folder in (self.settings.tenants_dir, self.settings.salesbooks_dir):
            if not folder.is_dir():
                continue
            for path in folder.glob("*.yaml"):
                found[str(path)] = _stamp(path)
        return found


def _stamp(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


__all__ = ["TenantWatcher"]
