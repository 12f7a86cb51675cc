"""Secret indirection and redaction.

A secret never sits in a config file. It is written as ``{$env: NAME}`` (an environment
variable) or ``{$file: /path}`` (a file's content, stripped), resolved when the tenant is
loaded. Every resolved secret is registered here, and ``redact`` replaces any registered
secret (and token-looking query parameters) in text that is about to be logged, raised,
reported or stored.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_known: set[str] = set()
MASK = "***"
_QUERY_SECRET = re.compile(
    r"(?i)((?:api_token|access_token|refresh_token|token|client_secret|password|key)=)[^&\s\"']+"
)
_HEADER_SECRET = re.compile(r"(?i)((?:authorization|x-api-token)\s*[:=]\s*)(\S+(?: \S+)?)")


class SecretError(ValueError):
    """A secret reference could not be resolved (missing variable or file)."""


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in {"$env", "$file"}


def resolve(value: Any, base_dir: Path | None = None) -> str:
    """Resolve ``{$env: NAME}`` or ``{$file: path}``; register the secret for redaction."""
    kind, target = next(iter(value.items()))
    if kind == "$env":
        secret = os.environ.get(str(target))
        if not secret:
            message = f"environment variable {target} is not set"
            raise SecretError(message)
    else:
        path = Path(str(target)).expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            message = f"secret file {path} cannot be read ({exc.strerror})"
            raise SecretError(message) from None
        if not secret:
            message = f"secret file {path} is empty"
            raise SecretError(message)
    register(secret)
    return secret


def resolve_all(value: Any, base_dir: Path | None = None) -> Any:
    """``value`` with every ``$env``/``$file`` reference inside it resolved (recursively)."""
    if is_reference(value):
        return resolve(value, base_dir)
    if isinstance(value, dict):
        return {k: resolve_all(v, base_dir) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_all(v, base_dir) for v in value]
    return value


def register(secret: str) -> None:
    """Remember a secret so ``redact`` masks it wherever it appears."""
    if secret and len(secret) >= 4:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    """Mask every registered secret and token-looking parameter in ``text``."""
    if not text:
        return text
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return _HEADER_SECRET.sub(lambda m: m.group(1) + MASK, text)
