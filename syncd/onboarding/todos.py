"""Find what ``syncd init`` left undecided in tenant files, for ``syncd check``.

A TODO is a comment ``# TODO(syncd init) [dotted.key] what to decide`` or a value that is
exactly ``TODO``. Each one is a warning naming the file and the key: the tenant runs, but
what the TODO names is not yet audited the way the Sales Book means it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from syncd.errors import ConfigProblem
from syncd.i18n import Text

_COMMENT = re.compile(r"#\s*TODO\(syncd init\)\s*(?:\[(?P<key>[^\]]*)\])?\s*(?P<text>.*)$")


def _todo_values(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        found = []
        for key, value in node.items():
            found += _todo_values(value, f"{prefix}.{key}" if prefix else str(key))
        return found
    if isinstance(node, list):
        return [k for i, v in enumerate(node) for k in _todo_values(v, f"{prefix}[{i}]")]
    return [prefix] if isinstance(node, str) and node.strip() == "TODO" else []


def file_todos(path: Path) -> list[ConfigProblem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []  # the tenant loader reports unreadable and binary files
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        found = _COMMENT.search(line)
        if found:
            problems.append(ConfigProblem(
                str(path), found.group("key") or f"line {number}",
                Text("TODO left by syncd init (line {line}): {text}", line=number,
                     text=found.group("text").strip()),
                severity="warning"))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return problems
    for key in _todo_values(data):
        problems.append(ConfigProblem(str(path), key, Text("value is TODO: decide it"),
                                      severity="warning"))
    return problems


def todo_problems(tenant_files: dict[str, Path]) -> list[ConfigProblem]:
    """Warnings for every TODO in the tenant files."""
    return [p for path in tenant_files.values() for p in file_todos(path)]
