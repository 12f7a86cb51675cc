"""Bitrix24's outbound events: a form-encoded (or JSON) POST naming what changed.

``event=ONCRMDEALUPDATE&data[FIELDS][ID]=42``: only the id travels; it is a hint, the
record is re-read through the API.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from syncd.connector import WebhookHint
from syncd.errors import BadPayloadError

EVENT_ENTITIES = {"DEAL": "deal", "COMPANY": "company", "CONTACT": "contact",
                  "ACTIVITY": "activity"}


def parse_event(body: bytes) -> WebhookHint:
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        message = "bitrix24 event: empty body"
        raise BadPayloadError(message)
    fields: dict[str, Any]
    if text.startswith("{"):
        try:
            payload = json.loads(text)
        except ValueError:
            message = "bitrix24 event: body is neither a form nor JSON"
            raise BadPayloadError(message) from None
        event = str(payload.get("event") or "")
        data = payload.get("data") or {}
        ids = [str((data.get("FIELDS") or {}).get("ID") or "")] if isinstance(data, dict) else []
    else:
        fields = dict(parse_qsl(text, keep_blank_values=True))
        event = fields.get("event", "")
        ids = [v for k, v in fields.items() if k == "data[FIELDS][ID]"]
    event = event.upper()
    if not event.startswith("ONCRM"):
        message = f"bitrix24 event: not a CRM event ({event[:40] or 'no event field'})"
        raise BadPayloadError(message)
    entity = None
    for key, name in EVENT_ENTITIES.items():
        if event.startswith(f"ONCRM{key}"):
            entity = name
            break
    clean = tuple(i for i in ids if i.isdigit())
    return WebhookHint(entity=entity, ids=clean)
