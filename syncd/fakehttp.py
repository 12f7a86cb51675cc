"""What every plugin's fake CRM shares: a threaded HTTP server on 127.0.0.1 and its lifecycle.

The fakes (tests, `syncd demo`, benchmarks) subclass ``FakeHTTPServer``, set
``handler_class`` to their request handler (which reaches the fake as ``self.fake``), and
call ``self._bind(host, port)`` in their ``__init__``. Port 0 picks a free port.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self


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
