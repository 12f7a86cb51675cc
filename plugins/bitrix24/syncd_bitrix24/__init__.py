"""The Bitrix24 connector for syncd (``crm.*`` REST methods through ``batch``); see
docs/bitrix24.md.

``connector`` (the streams, gates and inspection), ``client`` (HTTP, OAuth, ``batch``),
``streams`` (parsers), ``writer`` (write-back), ``settings``, ``webhooks``.
"""

from syncd_bitrix24.connector import Bitrix24Connector
from syncd_bitrix24.settings import Bitrix24Settings
from syncd_bitrix24.webhooks import parse_event

__all__ = ["Bitrix24Connector", "Bitrix24Settings", "parse_event"]
