"""Loading and validating configuration once, reporting every problem at once.

A ``Checker`` walks a raw mapping (usually parsed JSON) key by key; each ``take``
records a ConfigProblem instead of raising, so a single ``ConfigError`` lists
everything that is wrong, each with the offending key. Unknown keys are problems too.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any
from collections.abc import Callable, Mapping

from .errors import ConfigError, ConfigProblem

_MISSING = object()


def parse_json_text(text: str, source: str) -> dict:
    """Parse a JSON object from ``text``; ConfigError naming ``source`` if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem(source, f"not valid JSON: {exc.msg} at line {exc.lineno}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(source, "the top level must be a JSON object")])
    return data


def read_json_file(path: str | os.PathLike) -> dict:
    """Parse a JSON object from ``path``; ConfigError (naming the file) if unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(str(path), f"cannot read: {exc}")]) from None
    except json.JSONDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), f"not valid JSON: {exc.msg} at line {exc.lineno}")]) from None
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(str(path), "the top level must be a JSON object")])
    return data


class Checker:
    """Collects problems while values are taken out of ``raw``."""

    def __init__(self, raw: Mapping[str, Any], source: str = "", prefix: str = "") -> None:
        self.raw = raw
        self.source = source
        self.prefix = prefix
        self.problems: list[ConfigProblem] = []
        self._seen: set[str] = set()

    def problem(self, key: str, message: str) -> None:
        self.problems.append(ConfigProblem(self.prefix + key, message))

    def take(self, key: str, kind: type | tuple, default: Any = _MISSING,
             check: Callable[[Any], str | None] | None = None) -> Any:
        """The value at ``key`` if it has type ``kind`` and passes ``check`` (which returns
        an error message or None); otherwise a problem is recorded and ``default`` (or
        None) returned."""
        self._seen.add(key)
        if key not in self.raw or self.raw[key] is None:
            if default is _MISSING:
                self.problem(key, "required")
                return None
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kind):
            self.problem(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
            return None if default is _MISSING else default
        message = check(value) if check else None
        if message:
            self.problem(key, message)
            return None if default is _MISSING else default
        return value

    def take_silently(self, keys) -> None:
        """Mark ``keys`` as known without checking them (accepted for compatibility)."""
        self._seen.update(keys)

    def reject_unknown(self) -> None:
        for key in sorted(set(self.raw) - self._seen):
            self.problem(key, "unknown key")

    def raise_if_problems(self) -> None:
        if self.problems:
            raise ConfigError(self.problems, self.source)


def _kind_name(kind) -> str:
    if isinstance(kind, tuple):
        return " or ".join(_kind_name(k) for k in kind)
    return {int: "an integer", str: "a string", bool: "true or false", list: "a list",
            dict: "an object", float: "a number"}.get(kind, kind.__name__)


def port_check(value: int) -> str | None:
    return None if 1 <= value <= 65535 else "must be a port number between 1 and 65535"


def ip_check(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "not an IP address"
    return None


def nonempty_check(value) -> str | None:
    return None if value else "must not be empty"


def positive_check(value) -> str | None:
    return None if value > 0 else "must be positive"
