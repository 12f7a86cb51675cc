"""Reading Pipedrive webhook deliveries (payload v1 and v2) as a sync hint.

Pipedrive signs nothing; the core authenticates the call (HTTP Basic, which Pipedrive sends
when the webhook has ``http_auth_user``/``http_auth_password``). Here we only say what
changed and whether it is our own write-back coming back: a change made through the API
(``meta.change_source == "api"``) that touched nothing but custom fields. syncd writes only
custom fields (karma, violations), so that is the echo of a write-back; a person editing
the same fields in the app has ``change_source == "app"`` and is never an echo. Anything
misjudged costs at most one pass, and the scheduled passes re-read everything anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from syncd.connector import WebhookHint
from syncd.errors import BadPayloadError

ENTITIES = {"deal": "deals", "organization": "companies", "person": "contacts",
            "activity": "activities"}
#: Keys that change with any custom-field write (v2 nests custom fields; v1 uses hash keys).
_BOOKKEEPING = {"custom_fields", "update_time"}
_CUSTOM_KEY = re.compile(r"^[0-9a-f]{40}$")


def read_hint(headers: Mapping[str, str], body: bytes) -> WebhookHint:
    try:
        payload = json.loads(body or b"null")
    except ValueError:
        message = "pipedrive webhook: the body is not JSON"
        raise BadPayloadError(message) from None
    meta = payload.get("meta") if isinstance(payload, dict) else None
    if not isinstance(meta, dict):
        message = "pipedrive webhook: no meta object (not a Pipedrive webhook payload)"
        raise BadPayloadError(message)
    if "entity" in meta:  # v2
        kind, record_id = meta.get("entity"), meta.get("entity_id")
        changed = set(_dict(payload.get("previous")))
    else:  # v1: previous and current are whole objects
        kind, record_id = meta.get("object"), meta.get("id")
        current, previous = _dict(payload.get("current")), _dict(payload.get("previous"))
        changed = {k for k in current.keys() | previous.keys()
                   if previous and current.get(k) != previous.get(k)}
    action = str(meta.get("action") or "")
    echo = (meta.get("change_source") == "api" and action in {"change", "updated"}
            and bool(changed) and all(_ours(key) for key in changed))
    entity = ENTITIES.get(str(kind)) if kind else None
    ids = (str(record_id),) if record_id not in (None, "") else ()
    return WebhookHint(entity=entity, ids=ids, echo=echo)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _ours(key: str) -> bool:
    return key in _BOOKKEEPING or bool(_CUSTOM_KEY.match(key))
