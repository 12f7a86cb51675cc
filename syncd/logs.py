"""Logging setup: one line per event, secrets redacted from every message."""

from __future__ import annotations

import logging
import sys

from syncd.secrets import redact


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks every registered secret and token-looking value."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
