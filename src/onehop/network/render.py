"""Output of ``onehop network``: plain tables for people, JSON (``--json``) for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

Column = tuple[str, str]  # (header, key)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    if not rows:
        return "(none)"
    grid = [[header for header, _ in columns]] + [[cell(row.get(key)) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip() for line in grid]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def record(data: dict, keys: Sequence[str] | None = None) -> str:
    keys = keys or list(data)
    width = max((len(k) for k in keys), default=0)
    return "\n".join(f"{k.ljust(width)}  {cell(data.get(k))}" for k in keys)


def output(as_json: bool, data: Any, human: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if as_json:
        stream.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    else:
        stream.write(human.rstrip("\n") + "\n")
