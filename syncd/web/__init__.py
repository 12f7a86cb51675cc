"""The daemon's HTTP side: one WSGI app, routes contributed by small modules.

``syncd.web.app`` holds the app and the server thread. Route modules each expose
``register(app: WebApp, context: WebContext) -> None``:

- ``syncd.web.dashboard`` the read-only dashboard (issue: people karma, KPIs, dashboard)
- ``syncd.web.ops`` /healthz, /readyz, /metrics and the CRM webhooks (production operation)
"""

from syncd.web.app import WebApp, WebContext, WebServer

__all__ = ["WebApp", "WebContext", "WebServer"]
