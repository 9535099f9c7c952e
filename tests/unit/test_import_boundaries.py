"""The layer boundaries of DESIGN.md, checked on the source with ``ast`` (nothing is
imported): core is pure and sans-IO; client and server never import each other; net and
tunnel import neither; nothing in the product path imports network, mail or lab.

Between top-level packages, one table says which way every import may go:
``LAYERS`` of ``tools/import_report.py`` (lowest first; a package imports only packages
of lower layers). Every package must be in it, no import may go against it, and no
modules may import each other at module level (a circle that only works because one
side imports late).

Every form of import counts: ``import``, ``from``, relative imports (resolved to absolute
names), imports inside functions or ``if TYPE_CHECKING:``, ``__import__("x")`` and
``importlib.import_module("x")`` with a literal name, and ``os.urandom`` used as an
attribute of an imported ``os``.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = SRC / "onehop"


def _load_report():
    """``tools/import_report.py``: the layer table and the circle finder live there."""
    spec = importlib.util.spec_from_file_location("import_report", ROOT / "tools" / "import_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REPORT = _load_report()

CORE_FORBIDDEN = (
    # no I/O, event loop, clock, logging, threads or ambient randomness
    "asyncio", "socket", "selectors", "logging", "time", "threading", "random", "secrets", "os.urandom",
    # "core imports nothing async"
    "asyncssh", "aiohttp", "aiosmtpd", "aiosmtplib",
    # nothing above it
    "onehop.net", "onehop.tunnel", "onehop.client", "onehop.server", "onehop.cli",
)
OPERATOR_ONLY = ("onehop.network", "onehop.mail", "onehop.lab")


@dataclass(frozen=True)
class Rule:
    layer: str              # modules named this or below it are checked
    forbidden: tuple[str, ...]


RULES = (
    Rule("onehop.core", CORE_FORBIDDEN),
    Rule("onehop.client", ("onehop.server",) + OPERATOR_ONLY),
    Rule("onehop.server", ("onehop.client",) + OPERATOR_ONLY),
    Rule("onehop.net", ("onehop.client", "onehop.server") + OPERATOR_ONLY),
    Rule("onehop.tunnel", ("onehop.client", "onehop.server") + OPERATOR_ONLY),
)


# -- reading imports --------------------------------------------------------------------

def module_name(path: Path, root: Path = SRC) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of a source file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def resolve_from(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name ``from <level dots><target> import ...`` refers to in ``module``."""
    if level == 0:
        assert target, "absolute from-import without a module"
        return target
    package = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 >= len(package):
        raise ImportError(f"relative import beyond the top package in {module}")
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _literal_import_call(node: ast.Call) -> str | None:
    func = node.func
    is_dunder = isinstance(func, ast.Name) and func.id == "__import__"
    is_importlib = (isinstance(func, ast.Attribute) and func.attr == "import_module"
                    and isinstance(func.value, ast.Name) and func.value.id == "importlib")
    if (is_dunder or is_importlib) and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def imported_names(source: str, module: str, is_package: bool) -> set[str]:
    """Every absolute module (or ``module.attribute``) name the source refers to."""
    tree = ast.parse(source)
    names: set[str] = set()
    aliases: dict[str, str] = {}  # local name bound by ``import x`` / ``import x as y``
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    aliases[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(module, is_package, node.level, node.module)
            names.add(base)
            for alias in node.names:
                if alias.name != "*":
                    names.add(f"{base}.{alias.name}")  # a submodule or an attribute
        elif isinstance(node, ast.Call):
            literal = _literal_import_call(node)
            if literal is not None:
                names.add(literal)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            names.add(f"{aliases[node.value.id]}.{node.attr}")
    return names


def matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(rule: Rule, module: str, names: set[str]) -> list[str]:
    if not matches(module, rule.layer):
        return []
    return sorted(f"{module} uses {name} (forbidden: {banned})"
                  for name in names for banned in rule.forbidden if matches(name, banned))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_level_imports(source: str, module: str, is_package: bool) -> set[str]:
    """The names imported when the module is imported: not inside a function, not under
    ``if TYPE_CHECKING:`` (class bodies and other ``if``/``try`` blocks run, so they count)."""
    names: set[str] = set()

    def walk(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                walk(node.orelse)
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = resolve_from(module, is_package, node.level, node.module)
                # ``from . import x`` runs ``x``, not its package's other modules: name the
                # submodule or attribute only (``onehop_modules`` trims an attribute away)
                names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                walk([n for n in getattr(node, field, []) if isinstance(n, (ast.stmt, ast.excepthandler))])

    walk(ast.parse(source).body)
    return names


def onehop_modules(names: set[str], known: set[str]) -> set[str]:
    """The onehop modules ``names`` refer to (``pkg.mod.attribute`` -> ``pkg.mod``)."""
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith("onehop"):
            found.add(name)
    return found


def source_modules() -> dict[str, set[str]]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = module_name(path)
        modules[module] = imported_names(path.read_text(encoding="utf-8"), module, is_package)
    return modules


def module_level_graph() -> dict[str, set[str]]:
    sources = {module_name(p): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}
    known = {name for name, _ in sources}
    return {name: onehop_modules(module_level_imports(text, name, is_package), known) - {name}
            for (name, is_package), text in sources.items()}


def layer_violations(modules: dict[str, set[str]]) -> list[str]:
    """Every import between onehop modules the layer table does not allow."""
    known = set(modules)
    return sorted(f"{module} imports {target}" for module, names in modules.items()
                  for target in onehop_modules(names, known) - {module}
                  if not REPORT.may_import(module, target))


MODULES = source_modules()


# -- the rules on the real tree ---------------------------------------------------------

def test_the_tree_was_found():
    for layer in ("onehop.core", "onehop.client", "onehop.server", "onehop.net", "onehop.tunnel"):
        assert sum(matches(m, layer) for m in MODULES) >= 2, layer
    assert "onehop.core.ossh.prefix" in MODULES and "onehop.core.ossh" in MODULES


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.layer)
def test_layer_rule(rule):
    found = [v for module, names in MODULES.items() for v in violations(rule, module, names)]
    assert found == []


def test_every_package_has_a_layer():
    assert sorted(m for m in MODULES if REPORT.layer_of(m) is None) == []


def test_imports_follow_the_layer_table():
    """Any import (top level, in a function, under TYPE_CHECKING) against ``LAYERS``."""
    assert layer_violations(MODULES) == []


def test_no_module_level_circles():
    assert REPORT.circles(module_level_graph()) == []


def test_the_layer_table_is_strict():
    """One entry per package, and each pair of packages ordered one way only."""
    entries = [entry for layer in REPORT.LAYERS for entry in layer]
    assert len(entries) == len(set(entries))
    assert REPORT.may_import("onehop.client.app", "onehop.core.api")
    assert not REPORT.may_import("onehop.core.api", "onehop.client.app")
    assert not REPORT.may_import("onehop.client.app", "onehop.server.service")   # one layer: neither way
    assert not REPORT.may_import("onehop.server.service", "onehop.client.app")
    assert REPORT.may_import("onehop.feedback.cli", "onehop.client.feedback.send")
    assert not REPORT.may_import("onehop.client.feedback.send", "onehop.feedback.collect")
    assert REPORT.may_import("onehop.client.app", "onehop.client.upgrade.install")  # within a package
    assert REPORT.may_import("onehop.cli", "onehop")  # the version
    assert REPORT.layer_of("onehop.brandnew.x") is None and not REPORT.may_import("onehop.brandnew.x", "onehop.errors")


def test_relative_imports_were_resolved_on_the_real_tree():
    # core/ossh/prefix.py has ``from ...errors import`` and ``from . import regen``
    assert "onehop.errors" in MODULES["onehop.core.ossh.prefix"]
    assert "onehop.core.ossh.regen" in MODULES["onehop.core.ossh.prefix"]
    # client/dialer.py has ``from ..core import api``
    assert "onehop.core.api" in MODULES["onehop.client.dialer"]


def clock_reads(source: str) -> list[str]:
    """``datetime.now()`` and friends: reading the clock without importing ``time``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("now", "utcnow", "today"):
            found.append(f"line {node.lineno}: .{node.func.attr}()")
    return found


def test_core_never_reads_the_clock():
    found = {path.name: clock_reads(path.read_text(encoding="utf-8"))
             for path in sorted((PACKAGE / "core").rglob("*.py"))}
    assert {name: reads for name, reads in found.items() if reads} == {}


def test_clock_reads_are_found():
    assert clock_reads("from datetime import datetime\nx = datetime.now(timezone.utc)")
    assert clock_reads("import datetime\nx = datetime.date.today()")
    assert not clock_reads("def f(now):\n    return now.isoformat()")


# -- the checker itself -----------------------------------------------------------------

@pytest.mark.parametrize("module, is_package, level, target, expected", [
    ("onehop.core.ossh.prefix", False, 1, None, "onehop.core.ossh"),
    ("onehop.core.ossh.prefix", False, 2, "prng", "onehop.core.prng"),
    ("onehop.core.ossh.prefix", False, 3, "errors", "onehop.errors"),
    ("onehop.core.ossh", True, 1, "client", "onehop.core.ossh.client"),
    ("onehop.core.ossh", True, 2, None, "onehop.core"),
    ("onehop.client.dialer", False, 2, "server.policy", "onehop.server.policy"),
    ("onehop.cli", False, 0, "onehop.errors", "onehop.errors"),
])
def test_resolve_from(module, is_package, level, target, expected):
    assert resolve_from(module, is_package, level, target) == expected


def test_resolve_from_beyond_the_top_is_an_error():
    with pytest.raises(ImportError):
        resolve_from("onehop.cli", False, 3, "x")


def test_module_name():
    assert module_name(SRC / "onehop" / "core" / "ossh" / "__init__.py") == ("onehop.core.ossh", True)
    assert module_name(SRC / "onehop" / "client" / "dialer.py") == ("onehop.client.dialer", False)


@pytest.mark.parametrize("layer, module, is_package, source, culprit", [
    ("onehop.core", "onehop.core.x", False, "import asyncio", "asyncio"),
    ("onehop.core", "onehop.core.x", False, "import asyncio.streams as s", "asyncio.streams"),
    ("onehop.core", "onehop.core.x", False, "from time import monotonic", "time"),
    ("onehop.core", "onehop.core.x", False, "def f():\n    import logging", "logging"),
    ("onehop.core", "onehop.core.x", False, "import os\nkey = os.urandom(16)", "os.urandom"),
    ("onehop.core", "onehop.core.x", False, "from os import urandom", "os.urandom"),
    ("onehop.core", "onehop.core.x", False, "import os as o\no.urandom(1)", "os.urandom"),
    ("onehop.core", "onehop.core.x", False, "import secrets", "secrets"),
    ("onehop.core", "onehop.core.x", False, "from random import Random", "random"),
    ("onehop.core", "onehop.core.ossh.y", False, "from ...net import ossh", "onehop.net"),
    ("onehop.core", "onehop.core.x", False, "from .. import tunnel", "onehop.tunnel"),
    ("onehop.core", "onehop.core", True, "from ..client import app", "onehop.client"),
    ("onehop.core", "onehop.core.x", False, "m = __import__('threading')", "threading"),
    ("onehop.core", "onehop.core.x", False, "import importlib\nimportlib.import_module('socket')", "socket"),
    ("onehop.client", "onehop.client.x", False, "from ..server.policy import ForwardPolicy", "onehop.server"),
    ("onehop.client", "onehop.client.x", False,
     "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from onehop.server import api", "onehop.server"),
    ("onehop.server", "onehop.server.x", False, "from .. import client", "onehop.client"),
    ("onehop.net", "onehop.net.x", False, "import onehop.client.notices", "onehop.client"),
    ("onehop.tunnel", "onehop.tunnel", True, "from ..server import service", "onehop.server"),
])
def test_checker_catches(layer, module, is_package, source, culprit):
    (rule,) = [r for r in RULES if r.layer == layer]
    found = violations(rule, module, imported_names(source, module, is_package))
    assert found and any(f" uses {culprit}" in v for v in found), found


@pytest.mark.parametrize("module, source", [
    ("onehop.core.x", "from datetime import time"),                  # not the time module
    ("onehop.core.x", "import os\nos.path.join('a', 'b')"),         # os itself is fine
    ("onehop.core.x", "import timeit"),                              # a prefix of a name is not the name
    ("onehop.core.x", "from .prng import SeededPRNG"),
    ("onehop.core.x", "from ..errors import RemoteProtocolError"),
    ("onehop.client.x", "from ..tunnel.client import open_tunnel"),  # tunnel.client is not onehop.client
    ("onehop.server.x", "from ..tunnel.server import TunnelServerPolicy"),
])
def test_checker_allows(module, source):
    names = imported_names(source, module, False)
    assert [v for rule in RULES for v in violations(rule, module, names)] == []


# -- the layer table and the circle check, on planted sources ---------------------------

def _planted(files: dict[str, str]) -> dict[str, set[str]]:
    return {name: imported_names(text, name, False) for name, text in files.items()}


@pytest.mark.parametrize("importer, source, culprit", [
    ("onehop.core.x", "from ..configtools import Checker\nfrom ..client import app", "onehop.client.app"),
    ("onehop.client.feedback.send", "from ...feedback import collect", "onehop.feedback.collect"),
    ("onehop.client.x", "def f():\n    from ..upgrade import artifacts", "onehop.upgrade.artifacts"),
    ("onehop.network.models", "from ..feedback import sqlstore", "onehop.feedback.sqlstore"),
    ("onehop.net.x", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..tunnel import relay",
     "onehop.tunnel.relay"),
    ("onehop.upgrade.artifacts", "import onehop.mail.options", "onehop.mail.options"),  # sideways
])
def test_the_layer_check_catches_a_planted_import(importer, source, culprit):
    modules = {**MODULES, **_planted({importer: source})}
    assert f"{importer} imports {culprit}" in layer_violations(modules)


def test_the_layer_check_passes_what_the_table_allows():
    planted = _planted({"onehop.feedback.x": "from ..network import db\nfrom ..client.feedback import send",
                        "onehop.client.y": "from .upgrade import check\nfrom ..core import api"})
    assert layer_violations({**MODULES, **planted}) == layer_violations(MODULES) == []


def test_module_level_imports_skip_functions_and_type_checking():
    source = ("import onehop.errors\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\n"
              "else:\n    from . import c\ntry:\n    from . import d\nexcept ImportError:\n    from . import e\n"
              "class K:\n    from . import f\ndef g():\n    from . import h\n")
    names = module_level_imports(source, "onehop.pkg.a", False)
    assert {"onehop.errors", "onehop.pkg.c", "onehop.pkg.d", "onehop.pkg.e", "onehop.pkg.f"} <= names
    assert not names & {"onehop.pkg.b", "onehop.pkg.h"}


def test_a_planted_module_level_circle_is_found():
    graph = {"onehop.x.a": {"onehop.x.b"}, "onehop.x.b": {"onehop.x.c"}, "onehop.x.c": {"onehop.x.a"},
             "onehop.x.d": {"onehop.x.a"}}
    assert REPORT.circles(graph) == [["onehop.x.a", "onehop.x.b", "onehop.x.c"]]
    assert REPORT.circles({**graph, "onehop.x.c": set()}) == []
