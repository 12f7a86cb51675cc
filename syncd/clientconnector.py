"""A declared-streams connector over one plugin client: the boilerplate written once.

Request accounting (``requests_made``, this thread's count on the client's ``ApiClient``),
routing request notifications to the progress display (``on_requests``), closing the
client, and the dashboard's link to a deal card built from ``deal_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Generic, TypeVar
from urllib.parse import quote

from syncd.connector import ConnectionSettings
from syncd.pluginclient import PluginClient
from syncd.streams import StreamConnector

C = TypeVar("C", bound=PluginClient)


class ClientConnector(StreamConnector, Generic[C]):
    """A ``StreamConnector`` whose every request goes through ``self.client``."""

    client: C
    #: The deal card's path on ``base_url`` in the CRM's web app (``{id}``: the deal id,
    #: URL-quoted); None: no link.
    deal_path: ClassVar[str | None] = None

    @classmethod
    def deal_url(cls, settings: ConnectionSettings, deal_id: str) -> str | None:
        if cls.deal_path is None:
            return None
        return settings.base_url.rstrip("/") + cls.deal_path.format(
            id=quote(str(deal_id), safe=""))

    def requests_made(self) -> int:
        return self.client.api.requests_here

    def on_requests(self, callback: Callable[[int], None]) -> None:
        self.client.on_request = callback

    def close(self) -> None:
        self.client.close()
