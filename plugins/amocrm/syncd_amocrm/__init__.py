"""The amoCRM / Kommo connector for syncd (API v4); see docs/amocrm.md.

``connector`` (the streams, gates and inspection), ``client`` (HTTP, OAuth, HAL paging),
``streams`` (parsers), ``writer`` (write-back), ``settings``, ``webhooks``.
"""

from syncd_amocrm.connector import AmoCRMConnector
from syncd_amocrm.settings import AmoCRMSettings

__all__ = ["AmoCRMConnector", "AmoCRMSettings"]
