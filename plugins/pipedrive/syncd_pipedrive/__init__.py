"""The Pipedrive connector for syncd (API v2 where it exists, v1 for the rest).

``connector`` (the streams, gates and inspection), ``client`` (HTTP and paging),
``streams`` (parsers), ``writer`` (write-back), ``settings``, ``webhooks``.
"""

from syncd_pipedrive.connector import PipedriveConnector
from syncd_pipedrive.settings import PipedriveSettings

__all__ = ["PipedriveConnector", "PipedriveSettings"]
