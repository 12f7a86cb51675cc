"""Logging setup: one line per event, secrets redacted from every message.

``text`` (the default) is for people; ``json`` (one object per line: time, level, logger,
message, plus ``tenant``/``replica``/``fence`` when a record carries them) is for log
collectors. Both go through ``redact`` last, so a registered secret never leaves the process.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from syncd.secrets import redact

#: Extra record attributes copied into JSON lines when present.
JSON_EXTRAS = ("tenant", "replica", "fence", "run_id")


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then masks every registered secret and token-looking value."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object per line; text fields are redacted before encoding (JSON escaping
    could hide a secret from the scrubber) and the line once more after."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key in JSON_EXTRAS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return redact(json.dumps(line, ensure_ascii=False, default=str))


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def logging_setup() -> tuple[str, str]:
    """This process's ``setup_logging`` arguments (level, format), for a worker process to
    log the same way."""
    root = logging.getLogger()
    json_lines = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return logging.getLevelName(root.level), "json" if json_lines else "text"
