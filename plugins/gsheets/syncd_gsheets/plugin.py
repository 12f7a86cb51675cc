"""Hook implementations of the gsheets plugin (entry point ``syncd: gsheets``).

* connectors ``gsheets`` (a Google spreadsheet as a client's CRM) and ``spreadsheet`` (a
  local CSV/XLSX export, no credentials);
* the ``gsheets`` report sink: ``reports: {gsheets: {spreadsheet_id, credentials}}`` in a
  tenant file keeps that spreadsheet's report tabs up to date after every live pass.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from syncd import hookimpl
from syncd.errors import ConfigError, ConfigProblem
from syncd.plugins import ConnectorRegistry
from syncd.secrets import redact
from syncd_gsheets.connector import GSheetsConnector, SpreadsheetConnector
from syncd_gsheets.settings import ReportSinkOptions
from syncd_gsheets.sink import SheetsReportSink

log = logging.getLogger(__name__)
SINK = "gsheets"


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    registry.add(GSheetsConnector)
    registry.add(SpreadsheetConnector)


def sink_options(tenant: Any, options: dict[str, Any]) -> ReportSinkOptions:
    """The validated ``reports.gsheets`` block; every problem names the tenant file's key."""
    file = str(getattr(tenant, "file", "") or "")
    try:
        return ReportSinkOptions.model_validate(options)
    except ValidationError as exc:
        problems = [
            ConfigProblem(file, "reports.gsheets." + ".".join(str(p) for p in error["loc"]),
                          redact(error["msg"]))
            for error in exc.errors()
        ]
        raise ConfigError(problems) from None


@hookimpl
def syncd_publish_report(tenant: Any, report: dict[str, Any], options: dict[str, Any]) -> None:
    if options.get("sink") != SINK:
        return
    settings = sink_options(tenant, options)
    language = getattr(getattr(tenant, "config", None), "language", "en")
    result = SheetsReportSink(settings, language=language).publish(report)
    log.info("tenant %s: report tabs in spreadsheet %s: written %s, %d unchanged, %d created "
             "(%d requests)", report.get("tenant"), settings.spreadsheet_id,
             ", ".join(result.written) or "none", len(result.unchanged), len(result.created),
             result.requests)
