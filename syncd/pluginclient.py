"""What every plugin's HTTP client over one ``syncd.http.ApiClient`` shares.

The connector swaps ``on_request`` per stream (the progress display counts requests as
they happen); ``requests_made`` is the client's total; ``close`` ends its session. A
plugin's client subclasses ``PluginClient``, sets ``api`` and passes ``on_request=
self.count`` to its ``ApiClient``.
"""

from __future__ import annotations

from collections.abc import Callable

from syncd.http import ApiClient


def _ignore(n: int) -> None:
    """No one is listening."""


class PluginClient:
    api: ApiClient
    #: Told of every request; set per stream by the connector (``on_requests``).
    on_request: Callable[[int], None] = staticmethod(_ignore)

    def count(self, n: int) -> None:
        self.on_request(n)  # looked up per call: the connector swaps it per stream

    @property
    def requests_made(self) -> int:
        return self.api.requests_made

    def close(self) -> None:
        self.api.close()
