"""Who may see which tenant's dashboard: the admin token and per-tenant tokens.

- ``http.auth_token`` of the daemon config (the consultancy's admin token) and tokens made
  by ``syncd tokens create --admin`` see every tenant.
- A tenant token (``syncd tokens create TENANT``) sees that tenant only, read-only.
- Presented as ``Authorization: Bearer <token>``, as the HTTP Basic password, or in the
  link form ``/t/<token>/...`` (``syncd.web.app.move_path_token``), the one a sales head
  can bookmark.
- No token presented: allowed (everything) only when no admin token is configured and the
  store holds no live token, i.e. a loopback-only setup that never handed out a token.
  Creating the first token closes the open door.

The store keeps SHA-256 hashes (``syncd.store.tokens``); the admin token is compared in
constant time. Revocation takes effect on the next request (one indexed lookup each).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import exists, select
from werkzeug.wrappers import Request

from syncd.store.models import DashboardTokenRow
from syncd.store.tokens import find_token
from syncd.web.app import PATH_TOKEN

if TYPE_CHECKING:
    from syncd.store import Database


@dataclass(frozen=True)
class Access:
    """What a request may see: every tenant (``tenant`` None) or one."""

    tenant: str | None = None
    #: How the request got in: "open" (no token needed), "admin" or "tenant".
    via: str = "open"

    def sees(self, key: str) -> bool:
        return self.tenant is None or self.tenant == key


def presented_token(request: Request) -> str | None:
    token = request.environ.get(PATH_TOKEN)
    if token:
        return str(token)
    auth = request.authorization
    if auth is None:
        return None
    return auth.token if auth.type == "bearer" else auth.password


class Gate:
    def __init__(self, db: Database | None, admin_token: str | None) -> None:
        self.db = db
        self.admin_token = admin_token

    def check(self, request: Request) -> Access | None:
        """The request's access, or None when it must be refused (401)."""
        presented = presented_token(request)
        if presented is None:
            return Access() if self.open() else None
        if self.admin_token and hmac.compare_digest(presented.encode(),
                                                    self.admin_token.encode()):
            return Access(via="admin")
        if self.db is None:
            return None
        with self.db.session() as session:
            row = find_token(session, presented)
            if row is None:
                return None
            return Access(row.tenant_key, "admin" if row.tenant_key is None else "tenant")

    def open(self) -> bool:
        """No token needed: no admin token configured and no live token stored."""
        if self.admin_token:
            return False
        if self.db is None:
            return True
        with self.db.session() as session:
            return not session.scalar(select(exists().where(
                DashboardTokenRow.revoked_at.is_(None))))


__all__ = ["Access", "Gate", "presented_token"]
