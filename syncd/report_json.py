"""JSON text exactly as ``json.dumps(value, ensure_ascii=False, indent=2)`` writes it, fast.

The report is written indented (``syncd.report_stream``), and the standard library's
encoder has no C path for indented output: every streamed row went through its pure-Python
generator (about a third of a 20k-deal pass's report CPU, issue 13 item 7). ``indented``
builds the same text with joins, C string escaping (``json.encoder.encode_basestring``) and
the number ``repr``s the encoder uses; anything outside plain JSON types (a subclass, a
non-string key, a value the encoder refuses) goes through ``json.dumps`` itself, so the
text and the errors stay the standard library's (tests/test_report_json.py compares them on
random values).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from json.encoder import encode_basestring  # the C escaper when available (no ASCII-only)
from typing import Any

_STEP = "  "  # indent=2


def indented(value: Any, indent: str = "") -> str:
    """``value`` as ``json.dumps(value, ensure_ascii=False, indent=2)`` with every line
    after the first prefixed with ``indent`` (the value written ``indent`` deep)."""
    kind = type(value)
    if kind is dict:
        return _object(value, indent)
    if kind is list or kind is tuple:
        return _array(value, indent)
    scalar = _SCALARS.get(kind)
    text = scalar(value) if scalar is not None else None
    return text if text is not None else _standard(value, indent)


def pieces(value: Any, indent: str = "", levels: int = 2) -> Iterator[str]:
    """``indented(value, indent)`` in pieces: the containers of the first ``levels`` levels
    opened and closed here, each value below them one piece (a big section, such as the
    contact matrix, is never one string)."""
    kind = type(value)
    if levels <= 0 or not value or not (kind is dict or kind is list or kind is tuple) \
            or (kind is dict and any(type(key) is not str for key in value)):
        yield indented(value, indent)
        return
    inner = indent + _STEP
    items = value.items() if kind is dict else ((None, item) for item in value)
    first = True
    for key, item in items:
        opening = ("{" if kind is dict else "[") if first else ","
        yield opening + "\n" + inner + ("" if key is None else encode_basestring(key) + ": ")
        yield from pieces(item, inner, levels - 1)
        first = False
    yield "\n" + indent + ("}" if kind is dict else "]")


def _object(value: dict[Any, Any], indent: str) -> str:
    if not value:
        return "{}"
    inner = indent + _STEP
    items = []
    for key, item in value.items():
        if type(key) is not str:  # json turns int/float/bool/None keys into text
            return _standard(value, indent)
        items.append(encode_basestring(key) + ": " + indented(item, inner))
    return "{\n" + inner + (",\n" + inner).join(items) + "\n" + indent + "}"


def _array(value: list[Any] | tuple[Any, ...], indent: str) -> str:
    if not value:
        return "[]"
    inner = indent + _STEP
    return ("[\n" + inner + (",\n" + inner).join([indented(item, inner) for item in value])
            + "\n" + indent + "]")


def _float(value: float) -> str | None:
    return float.__repr__(value) if math.isfinite(value) else None  # NaN, infinities: json's


def _standard(value: Any, indent: str) -> str:
    """Subclasses, other types, non-finite floats: the standard library's own text."""
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return text.replace("\n", "\n" + indent) if indent else text


#: Exact types (bool is not int here) -> their JSON text (None: the standard library's).
_SCALARS: dict[type, Callable[[Any], str | None]] = {
    str: encode_basestring,
    int: int.__repr__,
    float: _float,
    bool: lambda value: "true" if value else "false",
    type(None): lambda value: "null",
}
