"""syncd: audit one Sales Book standard across client CRMs.

A plugin needs only this import surface::

    from syncd import hookimpl, Connector, ConnectionSettings, Page
"""

from __future__ import annotations

import pluggy

from syncd.connector import (
    ConnectionSettings,
    Connector,
    ConnectorState,
    FieldSpec,
    FieldWrite,
    Inspection,
    PullContext,
    TaskCreate,
    WebhookHint,
    WriteResult,
)
from syncd.records import Page
from syncd.version import PROJECT_NAME, __version__

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "PROJECT_NAME",
    "ConnectionSettings",
    "Connector",
    "ConnectorState",
    "FieldSpec",
    "FieldWrite",
    "Inspection",
    "Page",
    "PullContext",
    "TaskCreate",
    "WebhookHint",
    "WriteResult",
    "__version__",
    "hookimpl",
]
