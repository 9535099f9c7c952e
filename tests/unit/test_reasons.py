"""Every reason onehop raises or logs comes from a ``Reason`` vocabulary in ``onehop.errors``.

The source is scanned rather than trusted: a reason written as a string literal (or an
f-string) where an error is raised, a forward is refused or an irregular tunnel is logged
fails here, so the logs keep one spelling per event.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import onehop
from onehop import errors
from onehop.core.api import gojson
from onehop.errors import APIReason, Reason

SRC = Path(onehop.__file__).parent
SNAKE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
#: call name -> index of the positional argument that carries the reason
REASON_ARGUMENT = {"LocalProtocolError": 0, "RemoteProtocolError": 0, "ProtocolError": 0, "_bad": 0,
                   "deny": 0, "irregular": 1, "irregular_tunnel": 1}
#: the same for names that mean a reason in one package only (the web UI's _refuse takes text)
PACKAGE_REASON_ARGUMENT = {"mail": {"_refuse": 1, "note_refusal": 1}}
#: gojson helpers whose ``what`` argument names an ``APIReason`` ("invalid_" + what)
WHAT_ARGUMENT = {"parse_json_text": 1, "parse_json_object": 1, "json_members": 1, "member": 3}


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def _sources():
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def literal_reasons() -> list[str]:
    """``file:line: text`` for every reason given as text instead of a ``Reason`` member."""
    found = []
    for path, tree in _sources():
        calls = {**REASON_ARGUMENT, **PACKAGE_REASON_ARGUMENT.get(path.relative_to(SRC).parts[0], {})}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            index = calls.get(_call_name(node))
            if index is None:
                continue
            given = [node.args[index]] if len(node.args) > index else []
            given += [kw.value for kw in node.keywords if kw.arg == "reason"]
            if any(_is_text(arg) for arg in given):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_reason_is_a_string_literal():
    assert literal_reasons() == []


def test_the_scan_would_notice_a_literal_reason():
    tree = ast.parse('raise RemoteProtocolError("bad-magic", "x")\nlog.irregular("OSSH", f"{x}", ip)')
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) in REASON_ARGUMENT]
    assert all(_is_text(c.args[REASON_ARGUMENT[_call_name(c)]]) for c in calls) and len(calls) == 2


def vocabularies() -> list[type[Reason]]:
    return [value for value in vars(errors).values()
            if isinstance(value, type) and issubclass(value, Reason) and value is not Reason]


@pytest.mark.parametrize("vocabulary", vocabularies(), ids=lambda v: v.__name__)
def test_every_reason_is_snake_case(vocabulary):
    assert list(vocabulary), f"{vocabulary.__name__} is empty"
    assert [m.value for m in vocabulary if not SNAKE.fullmatch(m.value)] == []


def test_gojson_names_only_reasons_that_exist():
    """``gojson`` builds ``invalid_<what>``: every ``what`` in the source must be an APIReason."""
    whats = set()
    for _path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node) in WHAT_ARGUMENT:
                index = WHAT_ARGUMENT[_call_name(node)]
                if len(node.args) > index and isinstance(node.args[index], ast.Constant):
                    whats.add(node.args[index].value)
            elif isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["what"] \
                    and isinstance(node.value, ast.Constant):
                whats.add(node.value.value)
    whats.discard("embedded config.json")  # configtools' own parse_json_text, not gojson's
    assert {"handshake_response", "request_params", "ssh_password_payload"} <= whats
    assert {w for w in whats if f"invalid_{w}" not in set(APIReason)} == set()
    assert gojson._invalid("status_response") is APIReason.INVALID_STATUS_RESPONSE
