"""A small WSGI application (Werkzeug routing) and the thread that serves it.

Werkzeug gives routing, request parsing and well-formed responses; the server is waitress,
a production WSGI server (pure Python, a fixed pool of worker threads, request-size and
header limits, no development-only behaviour), run on a background thread and stopped with
``WebServer.stop()``. Put a reverse proxy (TLS) in front when binding beyond localhost.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from waitress import wasyncore
from waitress.server import create_server
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from syncd.config import Settings
    from syncd.plugins import Plugins
    from syncd.store import Database

log = logging.getLogger(__name__)

Handler = Callable[..., Response]


@dataclass
class WebContext:
    """What route handlers may use. Fields are filled by whoever builds the server."""

    settings: Settings | None = None
    db: Database | None = None
    plugins: Plugins | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def database(self) -> Database:
        """``db``, for the routes that read the store (every server but a bare test's)."""
        if self.db is None:
            raise RuntimeError("this web server was built without a database")
        return self.db


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
            return exc.get_response(request.environ)
        except Exception:
            log.exception("web handler failed for %s %s", request.method, request.path)
            return Response("internal error\n", status=500, mimetype="text/plain")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        move_path_token(environ)
        return self.dispatch(Request(environ))(environ, start_response)


#: The environ key of a token given in the link form ``/t/<token>/...``.
PATH_TOKEN = "syncd.path_token"  # noqa: S105 - an environ key, not a secret


def move_path_token(environ: dict[str, Any]) -> None:
    """``/t/<token>/rest``: the token goes to ``environ[PATH_TOKEN]``, ``/t/<token>`` to
    ``SCRIPT_NAME`` (so ``request.script_root`` prefixes the page's own links and a shared
    link keeps working page to page), and ``/rest`` is routed as usual."""
    path = environ.get("PATH_INFO") or ""
    if not path.startswith("/t/"):
        return
    token, slash, rest = path[3:].partition("/")
    if token and slash:
        environ[PATH_TOKEN] = token
        environ["SCRIPT_NAME"] = f"{environ.get('SCRIPT_NAME', '')}/t/{token}"
        environ["PATH_INFO"] = "/" + rest


class WebServer:
    """Serve a ``WebApp`` on ``host:port`` from a daemon thread (port 0: pick a free one)."""

    #: Worker threads answering requests (a page build takes a database read).
    THREADS = 8

    def __init__(self, app: WebApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        # Bind here, so a taken port is an OSError for the caller to report.
        listener = _listen(host, port)
        self._port = int(listener.getsockname()[1])
        self._map: dict[int, Any] = {}
        try:
            # waitress logs no request paths (webhook paths may carry a token).
            self._server = create_server(app, map=self._map, sockets=[listener],
                                         threads=self.THREADS, ident="syncd",
                                         clear_untrusted_proxy_headers=True)
        except Exception:
            listener.close()
            raise
        self._thread = threading.Thread(target=self._server.run, name="syncd-web",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> WebServer:
        self._thread.start()
        log.info("serving HTTP on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, let the workers finish their requests, end the thread."""
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)  # the loop ends once its map is empty
        self._thread.join(timeout=5)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (raises OSError, e.g. the port is taken)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
