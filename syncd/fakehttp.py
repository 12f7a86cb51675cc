"""What every plugin's fake CRM shares: a threaded HTTP server on 127.0.0.1 and its lifecycle.

The fakes (tests, `syncd demo`, benchmarks) subclass ``FakeHTTPServer``, set
``handler_class`` to their request handler (usually ``FakeHandler``, which hands each
request to ``fake.handle(handler, method)``), and call ``self._bind(host, port)`` in their
``__init__``. Port 0 picks a free port.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass
class Fault:
    """Misbehave on the ``nth``..``nth + times - 1`` request a fake matches to this fault.

    ``method``/``path`` select requests (an HTTP method and a path prefix; a fake may match
    ``method`` its own way, e.g. Bitrix24 against REST method names). ``kind`` names the
    misbehaviour; each fake documents the kinds it knows (429, 503, HTML pages, truncated
    JSON, ...). "block" holds the request until ``release`` is set, then answers it
    normally; ``reached`` is set when it arrives, ``finished`` once it is answered."""

    kind: str
    method: str | None = None
    path: str | None = None  # prefix of the request path
    nth: int = 1
    times: int = 1
    release: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # answer sent
    timeout: float = 60.0
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method.upper():
            return False
        return self.path is None or path.startswith(self.path)


def choose_fault(faults: Iterable[Fault], matches: Callable[[Fault], bool]) -> Fault | None:
    """The fault due for this request: every fault counts every request it ``matches``;
    the first whose turn it is wins. Call with the fake's lock held."""
    chosen = None
    for fault in faults:
        if matches(fault):
            fault.seen += 1
            if chosen is None and fault.nth <= fault.seen < fault.nth + fault.times:
                chosen = fault
    return chosen


class FakeHTTPServer:
    """Start, stop and address one fake CRM server; usable as a context manager."""

    handler_class: ClassVar[type[BaseHTTPRequestHandler]]
    thread_name: ClassVar[str] = "fake-crm"

    def _bind(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        """Serve from a daemon thread; returns the base URL."""
        handler = type("Handler", (self.handler_class,), {"fake": self})
        self._server = ThreadingHTTPServer(self._address, handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            message = "the fake server is not started"
            raise RuntimeError(message)
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeHandler(BaseHTTPRequestHandler):
    """Hands every request to ``self.fake.handle(self, method)``; replies in JSON.

    ``fake`` is set per server by ``FakeHTTPServer.start``. Subclasses may override
    ``content_type_for`` (a CRM that answers errors as problem+json, say)."""

    fake: Any
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def do_GET(self) -> None:
        self.fake.handle(self, "GET")

    def do_POST(self) -> None:
        self.fake.handle(self, "POST")

    def do_PATCH(self) -> None:
        self.fake.handle(self, "PATCH")

    def do_PUT(self) -> None:
        self.fake.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.fake.handle(self, "DELETE")

    def content_type_for(self, status: int) -> str:
        return "application/json; charset=utf-8"

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        self.reply_raw(status, body, self.content_type_for(status), headers)

    def reply_raw(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""
