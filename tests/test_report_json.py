"""``syncd.report_json.indented`` writes what ``json.dumps(..., ensure_ascii=False,
indent=2)`` writes, re-indented to a depth: the report's bytes must not change."""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from enum import IntEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.report_json import indented, pieces

SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text())
KEYS = st.text() | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
VALUES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=5)
                   | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(st.text(), inner, max_size=5)
                   | st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=30,
)


def standard(value: Any, depth: int) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=2)
    return text.replace("\n", "\n" + "  " * depth) if depth else text


@settings(max_examples=400, deadline=None)
@given(value=VALUES, depth=st.integers(min_value=0, max_value=3))
def test_same_text_as_the_standard_library(value: Any, depth: int) -> None:
    assert indented(value, "  " * depth) == standard(value, depth)


@settings(max_examples=300, deadline=None)
@given(value=VALUES, depth=st.integers(min_value=0, max_value=2),
       levels=st.integers(min_value=0, max_value=3))
def test_in_pieces_the_same_text(value: Any, depth: int, levels: int) -> None:
    assert "".join(pieces(value, "  " * depth, levels)) == standard(value, depth)


def test_a_big_section_is_written_in_pieces() -> None:
    matrix = {"rows": [{"owner": str(n), "cells": list(range(50))} for n in range(100)]}
    written = list(pieces(matrix, "  "))
    assert len(written) > 100
    assert max(map(len, written)) < len("".join(written)) / 50


class Level(IntEnum):
    LOW = 1


@pytest.mark.parametrize("value", [
    {"a": [], "b": {}, "c": [{}], "d": ""},
    {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "big": 10 ** 30, "tiny": 5e-324},
    {"text": "Сделка «Север» \u2028 \x00 \\ \" \n\t", "emoji": "\U0001f600"},
    {"enum": Level.LOW, "ordered": OrderedDict(b=1, a=2)},
    [True, False, None, 1.0, -0.0, 0],
])
def test_edge_values(value: Any) -> None:
    for depth in (0, 2):
        assert indented(value, "  " * depth) == standard(value, depth)


def test_what_json_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        indented({"when": object()})
