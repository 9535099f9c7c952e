"""Staging the runtime of a client build from what is installed here, offline.

The client build carries onehop and the closure of its base dependencies
(``importlib.metadata`` requirements, markers evaluated for this interpreter, extras
followed), pinned by ``onehop.network.pins`` (constraints/client-build.txt): by default
each distribution's files are copied from its RECORD (with its ``.dist-info``), so
nothing is downloaded, but only when the installed versions are exactly the pinned ones
and every file matches its RECORD's SHA-256; with ``wheels`` ("pypi" or a wheelhouse
directory) pip installs the pinned wheels with ``--require-hashes`` instead. onehop
itself is copied from its package directory (it may be an editable install) without
the operator-only parts (``network``, ``mail``, ``lab``): users get the client, not
the operator's tooling.
The staged tree is specific to this Python version and platform (C extensions).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import re
import shutil
import sys
from pathlib import Path
from typing import cast

import onehop

from .errors import BuildError
from .pins import CONSTRAINTS, environment_problems, load_pins, pip_install

try:
    from packaging.markers import default_environment
    from packaging.requirements import Requirement
except ImportError:  # pragma: no cover - pip always vendors it
    # pip's vendored copy is typed as its release's packaging was: older ones differ
    from pip._vendor.packaging.markers import default_environment  # type: ignore[assignment,unused-ignore]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[assignment,unused-ignore]

OPERATOR_ONLY = ("network", "mail", "lab")
ENTRY_POINT = "onehop.cli:main"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = cast("dict[str, str]", default_environment())
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""}))


def runtime_closure(root: str = "onehop") -> dict[str, metadata.Distribution]:
    """Installed distributions onehop's base dependencies need, transitively (not onehop)."""
    try:
        requires = metadata.distribution(root).requires or []
    except metadata.PackageNotFoundError:
        raise BuildError(f"{root} is not installed as a distribution (pip install -e .)") from None
    todo: list[tuple[Requirement, frozenset[str]]] = [(Requirement(r), frozenset()) for r in requires]
    todo = [(r, e) for r, e in todo if _wanted(r, frozenset())]
    found: dict[str, tuple[metadata.Distribution, frozenset[str]]] = {}
    while todo:
        requirement, _ = todo.pop()
        key, extras = canonical(requirement.name), frozenset(requirement.extras)
        if key in found and extras <= found[key][1]:
            continue
        try:
            dist = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"{requirement.name} (needed by the client) is not installed") from None
        extras |= found.get(key, (dist, frozenset()))[1]
        found[key] = (dist, extras)
        todo += [(Requirement(r), extras) for r in dist.requires or [] if _wanted(Requirement(r), extras)]
    return {key: dist for key, (dist, _) in sorted(found.items())}


def _recorded(file: metadata.PackagePath, data: bytes) -> bool:
    """Whether ``data`` is what the distribution's RECORD says ``file`` holds (files
    RECORD lists without a hash, such as RECORD itself, pass)."""
    if file.hash is None:
        return True
    if file.hash.mode != "sha256":
        return False
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode() == file.hash.value


def _copy_distribution(dist: metadata.Distribution, stage: Path) -> int:
    copied = 0
    for file in dist.files or []:
        if ".." in file.parts or "__pycache__" in file.parts or file.suffix == ".pyc":
            continue
        source = Path(str(dist.locate_file(file)))
        if not source.is_file():
            continue
        data = source.read_bytes()
        if not _recorded(file, data):
            raise BuildError(f"{dist.metadata['Name']} {dist.version}: {file} differs from its RECORD "
                             "(modified after installation): reinstall it")
        target = stage / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        shutil.copystat(source, target)
        copied += 1
    if not copied:
        raise BuildError(f"{dist.metadata['Name']} has no files to copy (no RECORD?)")
    return copied


def _copy_onehop(stage: Path) -> None:
    source = Path(onehop.__file__).resolve().parent

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == source
        return {n for n in names if n == "__pycache__" or n.endswith(".pyc") or (top and n in OPERATOR_ONLY)}

    shutil.copytree(source, stage / "onehop", ignore=ignore)
    info = stage / f"onehop-{onehop.__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: onehop\nVersion: {onehop.__version__}\n")


def stage_runtime(stage: Path, wheels: str = "installed", constraints: Path = CONSTRAINTS) -> None:
    """Fill ``stage`` (an empty directory) with onehop and its pinned runtime closure.

    ``wheels``: "installed" (copy what is installed, refused unless it is exactly the
    pinned set), "pypi" or a wheelhouse directory (pip --require-hashes).
    """
    pins = load_pins(constraints)
    if wheels == "installed":
        closure = runtime_closure()
        problems = environment_problems({key: dist.version for key, dist in closure.items()}, pins)
        if problems:
            raise BuildError(f"this environment is not the pinned client runtime ({constraints}): "
                             + "; ".join(problems) + ". Install the pins (pip install -r "
                             f"{constraints}), build with --wheels pypi, or update the pins "
                             "(docs/client-builds.md)")
        for dist in closure.values():
            _copy_distribution(dist, stage)
    else:
        pip_install(stage, wheels, constraints)
    _copy_onehop(stage)


def tree_digest(root: Path) -> str:
    """SHA-256 over the sorted relative paths and contents of every file under ``root``."""
    digest = hashlib.sha256(f"python {sys.version_info[:2]} {sys.platform}\n".encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
