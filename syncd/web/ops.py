"""Operations routes: /healthz, /readyz, /metrics and the CRM webhooks.

- ``GET /healthz`` liveness: the scheduler loop ticked recently. It never touches the
  database, so a database blip does not make every replica restart at once.
- ``GET /readyz`` readiness: the database answers, its schema is at this code's migration,
  the scheduler runs and the replica is not draining (503 with the failing checks otherwise).
  The body also lists ``broken_tenants``: tenant files that do not load, each with its
  problems. They are skipped, not a readiness failure: one tenant's typo must not take the
  replica (and every other tenant's webhooks) out of service.
- ``GET /metrics`` Prometheus text format (the bearer token / password of ``http.auth_token``
  when one is configured).
- ``POST /webhooks/<tenant>`` (and ``/webhooks/<tenant>/<secret>``): a CRM says something
  changed. Authenticated per tenant with the tenant file's ``webhook_secret``, presented as
  the HTTP Basic password (Pipedrive's ``http_auth_password``), the last path segment or a
  ``?token=`` (amoCRM, which cannot send headers), or Bitrix24's ``auth[application_token]``
  form field; compared in constant time. The payload is only a hint: the connector's
  ``webhook_hint`` spots our own write-back echoes, everything else makes the tenant due
  (debounced by the daemon) and the pass re-reads the data from the API.

Context extras used: ``daemon`` (syncd.daemon.Daemon), ``metrics`` (syncd.metrics.Metrics),
``tenants`` (key -> Tenant), ``webhook_secrets`` (key -> secret), ``auth_token``.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from werkzeug.wrappers import Request, Response

from syncd.connector import Connector
from syncd.errors import BadPayloadError
from syncd.secrets import redact
from syncd.web.app import WebApp, WebContext

log = logging.getLogger(__name__)
#: Webhook bodies are small notifications; anything bigger is not one.
MAX_WEBHOOK_BYTES = 1024 * 1024
UNKNOWN = "_unknown"  # metrics label for calls naming no configured tenant (bounded)


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(data) + "\n", status=status, mimetype="application/json")


def _same(presented: str, secret: str) -> bool:
    return hmac.compare_digest(presented.encode(), secret.encode())


def bearer_or_password(request: Request) -> str | None:
    """The credential a client presented: a bearer token or a Basic password."""
    auth = request.authorization
    if auth is None:
        return None
    return auth.token if auth.type == "bearer" else auth.password


class Ops:
    """The handlers, bound to one daemon's context."""

    def __init__(self, context: WebContext) -> None:
        self.context = context
        extras = context.extras
        self.daemon = extras.get("daemon")
        self.metrics = extras.get("metrics")
        self.tenants: dict[str, Any] = extras.get("tenants", {})
        self.secrets: dict[str, str] = extras.get("webhook_secrets", {})
        self.auth_token: str | None = extras.get("auth_token")
        self._connectors: dict[str, tuple[Any, Connector]] = {}  # key -> (tenant, conn.)
        self._lock = threading.Lock()

    # -- probes ------------------------------------------------------------------------------
    def healthz(self, request: Request) -> Response:
        if self.daemon is not None and not self.daemon.alive():
            return Response("scheduler stalled\n", status=503, mimetype="text/plain")
        return Response("ok\n", mimetype="text/plain")

    def readyz(self, request: Request) -> Response:
        checks = {"database": False, "schema": False, "scheduler": False, "draining": False}
        try:
            db = self.context.database
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = True
            checks["schema"] = db.is_current()
        except Exception as exc:
            log.warning("readiness: database check failed: %s", type(exc).__name__)
        if self.daemon is not None:
            checks["scheduler"] = self.daemon.started and self.daemon.alive()
            checks["draining"] = self.daemon.stopping
        ready = (checks["database"] and checks["schema"] and checks["scheduler"]
                 and not checks["draining"])
        broken = self.daemon.broken_report() if self.daemon is not None else {}
        return _json({"ready": ready, "checks": checks, "broken_tenants": broken},
                     200 if ready else 503)

    def metrics_page(self, request: Request) -> Response:
        if self.auth_token:
            presented = bearer_or_password(request) or ""
            if not _same(presented, self.auth_token):
                return Response("unauthorized\n", status=401, mimetype="text/plain",
                                headers={"WWW-Authenticate": 'Basic realm="syncd"'})
        if self.metrics is None:
            return Response("no metrics\n", status=404, mimetype="text/plain")
        return Response(self.metrics.exposition(), mimetype=CONTENT_TYPE_LATEST)

    # -- webhooks ----------------------------------------------------------------------------
    def webhook(self, request: Request, tenant: str, secret: str | None = None) -> Response:
        expected = self.secrets.get(tenant)
        if tenant not in self.tenants or not expected:
            self._count(UNKNOWN, "unknown_tenant")
            return _json({"error": "no such webhook"}, 404)
        if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
            self._count(tenant, "bad_payload")
            return _json({"error": "payload too large"}, 413)
        body = request.get_data(cache=True)[:MAX_WEBHOOK_BYTES + 1]
        if len(body) > MAX_WEBHOOK_BYTES:
            self._count(tenant, "bad_payload")
            return _json({"error": "payload too large"}, 413)
        if not any(_same(candidate, expected) for candidate in
                   _presented(request, secret, body)):
            self._count(tenant, "unauthorized")
            log.warning("webhook for tenant %s rejected: not authenticated", tenant)
            return Response(json.dumps({"error": "unauthorized"}) + "\n", status=401,
                            mimetype="application/json",
                            headers={"WWW-Authenticate": 'Basic realm="syncd webhooks"'})
        try:
            hint = self._connector(tenant).webhook_hint(dict(request.headers), body)
        except (BadPayloadError, RecursionError) as exc:
            self._count(tenant, "bad_payload")
            reason = ("nested too deeply" if isinstance(exc, RecursionError)
                      else redact(str(exc)))
            log.warning("webhook for tenant %s: bad payload: %s", tenant, reason)
            return _json({"error": "bad payload"}, 400)
        if hint.echo:
            self._count(tenant, "echo")
            return _json({"status": "ignored", "reason": "our own write-back"})
        queued = self.daemon.trigger(tenant) if self.daemon is not None else False
        self._count(tenant, "accepted")
        log.info("webhook for tenant %s (%s %s): sync %s", tenant, hint.entity or "-",
                 ",".join(hint.ids[:5]) or "-", "queued" if queued else "already queued")
        return _json({"status": "queued" if queued else "coalesced"}, 202)

    def _connector(self, key: str) -> Connector:
        with self._lock:
            tenant = self.tenants[key]
            cached = self._connectors.get(key)
            if cached is None or cached[0] is not tenant:  # new, or its file was reloaded
                cached = self._connectors[key] = (tenant, tenant.make_connector())
            return cached[1]

    def _count(self, tenant: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.webhooks.labels(tenant=tenant, result=result).inc()


def _presented(request: Request, path_secret: str | None, body: bytes) -> list[str]:
    """Every place a CRM may carry the tenant's webhook secret."""
    found = [path_secret] if path_secret else []
    credential = bearer_or_password(request)
    if credential:
        found.append(credential)
    token = request.args.get("token")
    if token:
        found.append(token)
    if request.mimetype == "application/x-www-form-urlencoded":  # Bitrix24 event handlers
        form = parse_qs(body.decode("utf-8", "replace"))
        found += form.get("auth[application_token]", [])[:1]
    return found


def register(app: WebApp, context: WebContext) -> None:
    ops = Ops(context)
    app.route("/healthz", endpoint="ops.healthz")(ops.healthz)
    app.route("/readyz", endpoint="ops.readyz")(ops.readyz)
    app.route("/metrics", endpoint="ops.metrics")(ops.metrics_page)
    app.route("/webhooks/<tenant>", methods=("POST",), endpoint="ops.webhook")(ops.webhook)
    app.route("/webhooks/<tenant>/<secret>", methods=("POST",),
              endpoint="ops.webhook_secret")(ops.webhook)


__all__ = ["MAX_WEBHOOK_BYTES", "Ops", "register"]
