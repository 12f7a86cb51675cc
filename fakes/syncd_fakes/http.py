"""What every plugin's fake CRM shares: a threaded HTTP server on 127.0.0.1 and its lifecycle.

The fakes (tests, `syncd demo`, benchmarks) subclass ``FakeHTTPServer``, set
``handler_class`` to their request handler (usually ``FakeHandler``, which hands each
request to ``fake.handle(handler, method)``), and call ``self._bind(host, port)`` in their
``__init__``. Port 0 picks a free port.

Two kinds of misbehaviour: ``Fault`` (deterministic: the Nth matching request, for tests
that need one precise failure) and ``Weather`` (random: every request independently
misbehaves with a given probability from a seeded RNG, so a retried request can fail
again; what real CRMs and their proxies do on a bad day).
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Protocol, Self


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


#: What ``Weather`` injects: a proxy's 502 page, a 503, a 429 with ``Retry-After``, an HTML
#: maintenance page served with status 200, and a JSON body cut in the middle.
WEATHER_KINDS = ("502", "503", "429", "html200", "truncated")
GATEWAY_PAGE = (b"<html><head><title>502 Bad Gateway</title></head><body><center>"
                b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>")
UNAVAILABLE_PAGE = (b"<html><head><title>503 Service Temporarily Unavailable</title></head>"
                    b"<body><h1>503 Service Temporarily Unavailable</h1></body></html>")
MAINTENANCE_PAGE = (b"<!DOCTYPE html><html><head><title>Technical works</title></head><body>"
                    b"<h1>\xd0\xa2\xd0\xb5\xd1\x85\xd0\xbd\xd0\xb8\xd1\x87\xd0\xb5"
                    b"\xd1\x81\xd0\xba\xd0\xb8\xd0\xb5 \xd1\x80\xd0\xb0\xd0\xb1\xd0"
                    b"\xbe\xd1\x82\xd1\x8b</h1><p>We will be back soon.</p></body></html>")


class Replier(Protocol):
    """What the weather needs of a request handler: a way to send raw bytes."""

    def reply_raw(self, status: int, body: bytes, content_type: str,
                  headers: dict[str, str] | None = None) -> None: ...


@dataclass(frozen=True)
class Forecast:
    """What the weather does to one request. ``after``: the request is processed first (a
    write lands) and only its answer is spoiled (a 502 page, or the body cut short)."""

    kind: str
    after: bool = False


class Weather:
    """Each request independently misbehaves with probability ``rate`` (seeded RNG).

    The kind is drawn uniformly from ``kinds``. A truncated body is always the real answer
    cut short (the request was processed); a 502 on a write is, with probability
    ``after_share``, sent after the write was applied -- the client sees a failure for a
    write that landed, as behind a real proxy whose upstream answered too late. ``spare``
    (method, path) -> True exempts requests (e.g. a token endpoint). Thread-safe; counts
    what it injected in ``injected`` and the writes it spoiled after applying them in
    ``landed_then_failed``."""

    def __init__(self, rate: float = 0.2, *, seed: int = 0,
                 kinds: Iterable[str] = WEATHER_KINDS, after_share: float = 0.5,
                 retry_after: str = "1",
                 spare: Callable[[str, str], bool] | None = None) -> None:
        self.rate = rate
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(WEATHER_KINDS)
        if unknown:
            message = f"unknown weather kinds {sorted(unknown)}; known: {WEATHER_KINDS}"
            raise ValueError(message)
        self.after_share = after_share
        self.retry_after = retry_after
        self.spare = spare
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self.landed_then_failed = 0

    def draw(self, method: str, path: str, *, write: bool) -> Forecast | None:
        """The forecast for one request (None: answered normally)."""
        with self._lock:
            self.requests += 1
            if self.spare is not None and self.spare(method, path):
                return None
            if self._rng.random() >= self.rate:
                return None
            kind = self._rng.choice(self.kinds)
            after = kind == "truncated" or (
                kind == "502" and write and self._rng.random() < self.after_share)
            self.injected[kind] += 1
            if after and write:
                self.landed_then_failed += 1
            return Forecast(kind, after)

    def answer_instead(self, handler: Replier, forecast: Forecast) -> None:
        """Answer a request that was *not* processed (a proxy or maintenance answer)."""
        kind = forecast.kind
        if kind == "502":
            handler.reply_raw(502, GATEWAY_PAGE, "text/html")
        elif kind == "503":
            handler.reply_raw(503, UNAVAILABLE_PAGE, "text/html")
        elif kind == "429":
            handler.reply_raw(429, b'{"error":"Too Many Requests"}', "application/json",
                              {"Retry-After": self.retry_after})
        elif kind == "html200":
            handler.reply_raw(200, MAINTENANCE_PAGE, "text/html; charset=utf-8")
        else:  # "truncated" is always drawn with after=True
            message = f"weather kind {kind!r} needs the real answer"
            raise ValueError(message)

    def spoil(self, handler: Replier, forecast: Forecast, status: int, body: bytes,
              content_type: str, headers: dict[str, str] | None = None) -> None:
        """Answer a request that *was* processed: a 502 page, or its real body cut short
        (with a matching Content-Length, as a proxy that lost the upstream mid-body)."""
        if forecast.kind == "502":
            handler.reply_raw(502, GATEWAY_PAGE, "text/html")
            return
        cut = body[: max(1, len(body) // 2)] if body else b"{"
        handler.reply_raw(status if status != 204 else 200, cut,
                          content_type or "application/json", headers)


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
        if isinstance(host, bytes):  # only an AF_UNIX server has a bytes address
            host = host.decode()
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

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              forecast: Forecast | None = None, weather: Weather | None = None) -> None:
        """Answer ``payload`` as JSON; with an ``after`` forecast, spoil it instead."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if forecast is not None and weather is not None:
            weather.spoil(self, forecast, status, body, self.content_type_for(status), headers)
            return
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


def serve_until_interrupted(fake: Any, banner: Callable[[str], str]) -> None:
    """Start ``fake`` (``start()`` returns its URL), print ``banner(url)`` and serve until
    Ctrl-C: the fakes' ``python -m`` entry points."""
    print(banner(fake.start()))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
