#!/usr/bin/env python3
"""Figures about onehop's own imports, read from the source with ``ast``.

Prints, for ``src/onehop``:

* circles: groups of modules that import each other (strongly connected components of the
  module graph, every import counted: top level, inside functions, ``if TYPE_CHECKING:``);
* package circles: pairs of top-level packages (``onehop.client``, ``onehop.feedback``, ...)
  that import each other in either direction;
* upward arrows: imports against the layer order of ``LAYERS`` below (upward, or sideways
  between two packages of one layer);
* function-local imports of onehop modules (imports inside a function body).

    python tools/import_report.py            # the figures
    python tools/import_report.py --list     # and every circle, arrow and local import
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: The layers of onehop's top-level packages, lowest first: a module may import its own
#: package and any package of a lower layer, never one of its own layer or above (so the
#: client and the server never import each other). ``=name`` matches that module alone
#: (the package's ``__init__`` holds only its version). A package missing here is an
#: error in ``tests/unit/test_import_boundaries.py``, which checks the tree against this
#: one table.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("=onehop", "onehop.errors", "onehop.cliargs"),        # import nothing of onehop's
    ("onehop.atomicfile", "onehop.configtools", "onehop.extras", "onehop.procworker"),
    ("onehop.procpool", "onehop.stopsignals"),              # processes and signals, for every service
    ("onehop.core",),                                       # pure, sans-IO
    ("onehop.net",),
    ("onehop.tunnel",),
    ("onehop.server", "onehop.client"),                     # client: with its feedback/upgrade halves
    ("onehop.demo", "onehop.upgrade", "onehop.mail"),       # upgrade: the operator half
    ("onehop.network", "onehop.lab"),
    ("onehop.feedback",),                                   # the operator half, on network's database
    ("onehop.cli",),
)

def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join(base + ([target] if target else []))


class _Imports(ast.NodeVisitor):
    """Every onehop import of one module, each marked as local (inside a function) or not."""

    def __init__(self, module: str, is_package: bool, known: set[str]) -> None:
        self.module, self.is_package, self.known = module, is_package, known
        self.depth = 0
        self.found: list[tuple[str, bool, int]] = []  # (module imported, local?, line)

    def _add(self, name: str, line: int) -> None:
        while name and name not in self.known:
            name = name.rpartition(".")[0]
        if name and name != self.module:
            self.found.append((name, self.depth > 0, line))

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.startswith("onehop"):
                self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve(self.module, self.is_package, node.level, node.module)
        if not base.startswith("onehop"):
            return
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.known else base, node.lineno)


def read_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, int]]]:
    paths = sorted((SRC / "onehop").rglob("*.py"))
    names = {module_name(p) for p in paths}
    known = {name for name, _ in names}
    graph: dict[str, set[str]] = defaultdict(set)
    local: list[tuple[str, str, int]] = []
    for path in paths:
        module, is_package = module_name(path)
        visitor = _Imports(module, is_package, known)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        graph[module]  # every module is a node
        for target, is_local, line in visitor.found:
            graph[module].add(target)
            if is_local:
                local.append((module, target, line))
    return graph, local


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def top_package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def layer_of(module: str) -> int | None:
    """The number of the layer ``module`` belongs to (longest matching entry), None if none."""
    best: int | None = None
    best_len = -1
    for number, layer in enumerate(LAYERS):
        for prefix in layer:
            if prefix.startswith("="):
                if module == prefix[1:]:
                    return number
                continue
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = number, len(prefix)
    return best


def may_import(importer: str, imported: str) -> bool:
    """Whether the layer table lets ``importer`` import ``imported`` (both onehop modules)."""
    if top_package(importer) == top_package(imported):
        return True
    mine, theirs = layer_of(importer), layer_of(imported)
    return mine is not None and theirs is not None and theirs < mine

def package_circles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    edges = {(top_package(a), top_package(b)) for a, targets in graph.items() for b in targets
             if top_package(a) != top_package(b)}
    return sorted((a, b) for a, b in edges if a < b and (b, a) in edges)


def upward_arrows(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports the layer table does not allow: upward, sideways within a layer, or from or
    to a package the table does not place."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if not may_import(a, b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every circle, arrow and local import")
    args = parser.parse_args(argv)
    graph, local = read_graph()
    found_circles = circles(graph)
    pairs = package_circles(graph)
    arrows = upward_arrows(graph)
    print(f"modules: {len(graph)}")
    print(f"circles (modules importing each other): {len(found_circles)}, "
          f"{sum(len(c) for c in found_circles)} modules in them")
    print(f"package pairs importing each other: {len(pairs)}")
    print(f"upward arrows (against the layer order): {len(arrows)}")
    print(f"function-local imports of onehop modules: {len(local)}")
    if args.list:
        for group in found_circles:
            print("circle:", " ".join(group))
        for a, b in pairs:
            print(f"packages: {a} <-> {b}")
        for a, b in arrows:
            print(f"upward: {a} -> {b}")
        for module, target, line in local:
            print(f"local: {module}:{line} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
