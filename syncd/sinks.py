"""Report sinks registered by plugins (``syncd_register_report_sinks``), by name.

A tenant file's ``reports: {<sink name>: {...options}}`` hands the tenant's fresh report
to the sink registered under that name, and to no other. The options are validated with
the sink's pydantic model by ``syncd check`` and when tenants load; a sink that fails hurts
only that tenant's publish (logged, listed in the pass summary).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from syncd import secrets
from syncd.errors import ConfigError, ConfigProblem, PluginError, SyncdError
from syncd.secrets import redact

log = logging.getLogger(__name__)

#: ``publish(tenant, report, options)``: options is an instance of the sink's model.
Publish = Callable[[Any, dict[str, Any], Any], None]


@dataclass(frozen=True, slots=True)
class ReportSink:
    """A named place where reports are published.

    :param name: the key under a tenant file's ``reports:``.
    :param options_model: a pydantic model of that block (secrets already resolved).
    :param publish: ``publish(tenant, report, options)``; raise ``SyncdError`` with a clear
        message on failure.
    :param streamed: the sink takes the daemon's streamed report: ``report["violations"]``
        and ``report["client_karma"]`` are then re-iterable rows read from the store as they
        are iterated (``syncd.report_stream.ReportRows``: ``iter()``, ``len()``, truth; not
        lists, no indexing), so a tenant's report is never whole in memory for the sink.
        False (the default): both are lists, the report read whole for this sink.
    """

    name: str
    options_model: type[BaseModel]
    publish: Publish
    streamed: bool = False


class SinkRegistry:
    """Report sinks by name; a name registered twice is an error naming both."""

    def __init__(self) -> None:
        self._sinks: dict[str, ReportSink] = {}
        #: True when some plugin still implements the deprecated ``syncd_publish_report``:
        #: then a ``reports:`` key no sink registered is handed to it (warning, not error).
        self.legacy = False

    def add(self, sink: ReportSink) -> None:
        where = getattr(sink.publish, "__module__", "?")
        if not sink.name or not isinstance(sink.name, str):
            raise PluginError(f"a report sink from {where} has no name")
        if not (isinstance(sink.options_model, type) and issubclass(sink.options_model, BaseModel)):
            raise PluginError(f"report sink {sink.name!r} ({where}): options_model must be a "
                              "pydantic model class")
        existing = self._sinks.get(sink.name)
        if existing is not None and existing is not sink:
            raise PluginError(f"report sink name {sink.name!r} registered twice: by "
                              f"{getattr(existing.publish, '__module__', '?')} and by {where}")
        self._sinks[sink.name] = sink

    def get(self, name: str) -> ReportSink | None:
        return self._sinks.get(name)

    def names(self, module_root: str | None = None) -> list[str]:
        """Sink names (those of one plugin's top-level module, when given)."""
        return sorted(name for name, sink in self._sinks.items()
                      if module_root is None or _module(sink.publish).split(".")[0] == module_root)

    def __contains__(self, name: object) -> bool:
        return name in self._sinks


def publish_report(plugins: Any, tenant: Any, report: dict[str, Any],
                   whole: Callable[[], dict[str, Any]] | None = None) -> list[str]:
    """Hand the report to the sink each ``reports:`` key names (only that one). Returns
    ``"<sink>: <reason>"`` per sink that failed; each failure is logged for this tenant.

    ``report`` may be streamed (``ReportSink.streamed``): then ``whole()`` reads it whole,
    once, for the sinks (and the deprecated hook) that take lists."""
    failures = []
    cache: list[dict[str, Any]] = []

    def listed() -> dict[str, Any]:
        if whole is None:
            return report
        if not cache:
            cache.append(whole())
        return cache[0]

    for name, raw_options in tenant.config.reports.items():
        try:
            _publish_one(plugins, tenant, report, listed, name, raw_options or {})
        except (SyncdError, secrets.SecretError) as exc:
            failures.append(f"{name}: {redact(str(exc))}")
            log.error("tenant %s: report sink %s failed: %s", tenant.key, name,  # noqa: TRY400
                      redact(str(exc)))
        except Exception as exc:  # a sink's bug hurts only this tenant's publish
            failures.append(f"{name}: {redact(f'{type(exc).__name__}: {exc}')}")
            log.exception("tenant %s: report sink %s failed", tenant.key, name)
    return failures


def _publish_one(plugins: Any, tenant: Any, report: dict[str, Any],
                 listed: Callable[[], dict[str, Any]], name: str,
                 raw_options: dict[str, Any]) -> None:
    sinks: SinkRegistry = plugins.connectors.sinks
    options = secrets.resolve_all(raw_options, tenant.file.parent)
    sink = sinks.get(name)
    if sink is None:
        if not sinks.legacy:
            known = ", ".join(sinks.names()) or "none"
            raise SyncdError(f"no report sink named {name!r} (installed: {known})")
        plugins.hook.syncd_publish_report(tenant=tenant, report=listed(),
                                          options={**options, "sink": name})
        return
    sink.publish(tenant, report if sink.streamed else listed(),
                 validated_options(sink, options, str(tenant.file)))


def validated_options(sink: ReportSink, options: dict[str, Any], file: str) -> BaseModel:
    """The sink's options model; every problem names the tenant file's key."""
    try:
        return sink.options_model.model_validate(options)
    except ValidationError as exc:
        key = f"reports.{sink.name}."
        raise ConfigError([ConfigProblem(file, key + ".".join(str(p) for p in error["loc"]),
                                         redact(error["msg"])) for error in exc.errors()],
                          ) from None


def _module(obj: object) -> str:
    return str(getattr(obj, "__module__", "") or "")
