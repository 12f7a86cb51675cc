"""A small WSGI application (Werkzeug routing) and the thread that serves it.

Werkzeug gives routing, request parsing and well-formed responses; the server is Werkzeug's
threaded ``make_server`` on a background thread, stopped with ``WebServer.stop()``. syncd's
pages are few and read-only and the webhooks are tiny, so this is enough; put a reverse proxy
(TLS) in front when binding beyond localhost.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server, select_address_family
from werkzeug.wrappers import Request, Response

log = logging.getLogger(__name__)

Handler = Callable[..., Response]


@dataclass
class WebContext:
    """What route handlers may use. Fields are filled by whoever builds the server."""

    settings: Any = None  # syncd.config.Settings
    db: Any = None  # syncd.store.Database
    plugins: Any = None  # syncd.plugins.Plugins
    extras: dict[str, Any] = field(default_factory=dict)


class WebApp:
    """Routes -> handlers. ``handler(request, **url_args) -> Response``."""

    def __init__(self) -> None:
        self.url_map = Map(strict_slashes=False)
        self.handlers: dict[str, Handler] = {}

    def route(self, rule: str, *, methods: Iterable[str] = ("GET",),
              endpoint: str | None = None) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            name = endpoint or f"{handler.__module__}.{handler.__qualname__}"
            self.url_map.add(Rule(rule, endpoint=name, methods=list(methods)))
            self.handlers[name] = handler
            return handler
        return decorate

    def dispatch(self, request: Request) -> Response:
        adapter = self.url_map.bind_to_environ(request.environ)
        try:
            endpoint, args = adapter.match()
            return self.handlers[endpoint](request, **args)
        except HTTPException as exc:
            return exc.get_response(request.environ)  # type: ignore[return-value]
        except Exception:
            log.exception("web handler failed for %s %s", request.method, request.path)
            return Response("internal error\n", status=500, mimetype="text/plain")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)


class WebServer:
    """Serve a ``WebApp`` on ``host:port`` from a daemon thread (port 0: pick a free one)."""

    def __init__(self, app: WebApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        # Werkzeug's access log prints request paths; webhook paths may carry a token.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # Bind here, so a taken port is an OSError for the caller to report (Werkzeug
        # would print its own message and exit the whole process with code 1).
        listener = _listen(host, port)
        try:
            self._server: BaseWSGIServer = make_server(host, port, app, threaded=True,
                                                       fd=listener.fileno())
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="syncd-web", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        log.info("serving HTTP on %s", self.url)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (raises OSError, e.g. the port is taken)."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
