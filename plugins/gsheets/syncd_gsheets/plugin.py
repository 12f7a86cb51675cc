"""Hook implementations of the gsheets plugin (entry point ``syncd: gsheets``).

* connectors ``gsheets`` (a Google spreadsheet as a client's CRM) and ``spreadsheet`` (a
  local CSV/XLSX export, no credentials);
* the ``gsheets`` report sink: ``reports: {gsheets: {spreadsheet_id, credentials}}`` in a
  tenant file keeps that spreadsheet's report tabs up to date after every live pass.
"""

from __future__ import annotations

import logging
from typing import Any

from syncd import hookimpl
from syncd.plugins import ConnectorRegistry
from syncd.sinks import ReportSink, SinkRegistry
from syncd_gsheets.connector import GSheetsConnector, SpreadsheetConnector
from syncd_gsheets.settings import ReportSinkOptions
from syncd_gsheets.sink import SheetsReportSink

log = logging.getLogger(__name__)
SINK = "gsheets"


@hookimpl
def syncd_register_connectors(registry: ConnectorRegistry) -> None:
    registry.add(GSheetsConnector)
    registry.add(SpreadsheetConnector)


def publish(tenant: Any, report: dict[str, Any], settings: ReportSinkOptions) -> None:
    """The ``gsheets`` sink: rewrite the spreadsheet's report tabs that changed."""
    language = getattr(getattr(tenant, "config", None), "language", "en")
    result = SheetsReportSink(settings, language=language).publish(report)
    log.info("tenant %s: report tabs in spreadsheet %s: written %s, %d unchanged, %d created "
             "(%d requests)", report.get("tenant"), settings.spreadsheet_id,
             ", ".join(result.written) or "none", len(result.unchanged), len(result.created),
             result.requests)


@hookimpl
def syncd_register_report_sinks(registry: SinkRegistry) -> None:
    # streamed: the tabs iterate the violations and companies once (never index them)
    registry.add(ReportSink(name=SINK, options_model=ReportSinkOptions, publish=publish,
                            streamed=True))
