"""amoCRM's outgoing webhooks: a form-encoded POST naming what changed.

The body is a nested form (``leads[update][0][id]=7``, ``leads[status][0][id]=7``,
``contacts[add][0][id]=3``, ``account[subdomain]=acme``...). It is only a hint: the
records are re-read through the API. The payload carries the entity's state, not the list
of fields that changed, so a change made by syncd itself cannot be told apart here; our
echoes are absorbed later instead (the written record is read back and stored, so the
re-read finds nothing new).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import parse_qsl

from syncd.connector import WebhookHint
from syncd.errors import BadPayloadError

#: amoCRM entity (plural, as in the form keys) -> syncd entity.
ENTITIES = {"leads": "deal", "contacts": "contact", "companies": "company", "task": "activity",
            "tasks": "activity", "customers": "customer"}
_KEY = re.compile(r"^(?P<entity>[a-z_]+)\[(?P<action>[a-z_]+)\]\[(?P<n>\d+)\]\[id\]$")


def parse_webhook(headers: Mapping[str, str], body: bytes) -> WebhookHint:
    """The entity and ids a webhook call names; ``BadPayloadError`` if it is not amoCRM's."""
    content_type = ""
    for name, value in headers.items():
        if name.lower() == "content-type":
            content_type = value.lower()
    if content_type and "x-www-form-urlencoded" not in content_type:
        message = f"amocrm webhook: expected a form-encoded body, got {content_type}"
        raise BadPayloadError(message)
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        message = "amocrm webhook: the body is not a form-encoded amoCRM payload"
        raise BadPayloadError(message) from None
    ids: dict[str, list[str]] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None or match["entity"] not in ENTITIES:
            continue
        if value.strip().isdigit():
            ids.setdefault(ENTITIES[match["entity"]], []).append(str(int(value)))
    if not ids:
        if any(key.startswith("account[") for key, _ in pairs):
            return WebhookHint()  # an amoCRM call about nothing we read
        message = "amocrm webhook: no entity ids (expected keys like leads[update][0][id])"
        raise BadPayloadError(message)
    entity = "deal" if "deal" in ids else next(iter(ids))
    return WebhookHint(entity=entity, ids=tuple(dict.fromkeys(ids[entity])))
