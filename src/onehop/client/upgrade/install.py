"""Installing a verified build: atomically in place, with the previous one kept.

A single-file client (a per-channel build: zipapp or standalone executable) is replaced in place:
the new build is written to a temporary file in the same directory, fsynced, given the
old file's mode, and renamed over the running file (``os.replace``, atomic on POSIX and
Windows), after the running file was hard-linked (else copied) to ``<file>.previous``.
At every moment ``<file>`` is a complete build; :func:`rollback` puts the previous one
back and keeps the rejected one as ``<file>.rolledback``.

A pip-installed client is never modified: the verified build is saved in the data
directory and the user is told exactly what to run (:func:`pip_instructions`).

``<data dir>/upgrade/state.json`` remembers what was installed and which versions were
rolled back (they are not offered again).
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import sys
import zipfile
from dataclasses import dataclass

from ...atomicfile import fsync_directory, link_beside, replace_file, write_beside
from .errors import UpgradeError

PREVIOUS_SUFFIX = ".previous"
ROLLED_BACK_SUFFIX = ".rolledback"
STATE_FILE = ("upgrade", "state.json")


@dataclass(frozen=True)
class Installation:
    """How this onehop runs: ``single-file`` (``path`` is the file) or ``pip``."""

    kind: str
    path: str | None
    python: str

    @property
    def single_file(self) -> bool:
        return self.kind == "single-file"


def detect_installation(argv0: str | None = None, executable: str | None = None,
                        frozen: bool | None = None) -> Installation:
    """A standalone build (PyInstaller: ``sys.frozen``, the file is ``sys.executable``) or a
    zipapp named by ``sys.argv[0]`` is a single-file client; anything else is pip."""
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    if frozen:
        path = os.path.realpath(executable or sys.executable)
        return Installation("single-file", path, path)
    argv0 = sys.argv[0] if argv0 is None else argv0
    python = executable or sys.executable or "python3"
    path = os.path.realpath(argv0) if argv0 else ""
    if path and os.path.isfile(path) and zipfile.is_zipfile(path):
        return Installation("single-file", path, python)
    return Installation("pip", None, python)


# ----------------------------------------------------------------------- replacing

def _link_or_copy(source: str, destination: str) -> None:
    """``destination`` becomes a complete copy of ``source`` (atomically replaced)."""
    tmp = link_beside(source, destination)  # unpredictable name: a planted symlink is never followed
    try:
        os.replace(tmp, destination)
    except BaseException:
        _quiet_remove(tmp)
        raise


@dataclass(frozen=True)
class InstallResult:
    path: str
    previous: str | None


def install_file(target: str, build: bytes) -> InstallResult:
    """Replace ``target`` by ``build`` atomically, keeping ``<target>.previous``."""
    exists = os.path.exists(target)
    try:
        mode = os.stat(target).st_mode & 0o7777 if exists else 0o755
        tmp = write_beside(target, build, mode)
    except OSError as exc:
        raise UpgradeError(f"cannot write the new build next to {target}: {exc}") from None
    previous = target + PREVIOUS_SUFFIX if exists else None
    try:
        if previous:
            _link_or_copy(target, previous)
        os.replace(tmp, target)
    except OSError as exc:
        _quiet_remove(tmp)
        raise UpgradeError(f"cannot install the new build at {target}: {exc}") from None
    fsync_directory(os.path.dirname(os.path.abspath(target)))
    return InstallResult(target, previous)


def _quiet_remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


@dataclass(frozen=True)
class RollbackResult:
    path: str
    rolled_back: str
    restored_version: str | None = None
    rolled_back_version: str | None = None


def rollback(target: str) -> RollbackResult:
    """Put ``<target>.previous`` back in place; the current build becomes ``.rolledback``."""
    previous = target + PREVIOUS_SUFFIX
    if not os.path.isfile(previous):
        raise UpgradeError(f"no previous version to roll back to ({previous} does not exist)")
    rolled = target + ROLLED_BACK_SUFFIX
    try:
        if os.path.exists(target):
            _link_or_copy(target, rolled)
        os.replace(previous, target)
    except OSError as exc:
        raise UpgradeError(f"cannot roll back {target}: {exc}") from None
    fsync_directory(os.path.dirname(os.path.abspath(target)))
    return RollbackResult(target, rolled)


# ----------------------------------------------------------------------- state

def state_path(data_dir: str) -> str:
    return os.path.join(data_dir, *STATE_FILE)


def load_state(data_dir: str) -> dict:
    try:
        with open(state_path(data_dir), encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def save_state(data_dir: str, state: dict) -> None:
    path = state_path(data_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    replace_file(path, json.dumps(state, indent=1, sort_keys=True).encode("utf-8"), 0o600)


def record_install(data_dir: str, version: str, previous_version: str, path: str | None) -> None:
    state = load_state(data_dir)
    state["installed"] = {"version": str(version), "previous_version": str(previous_version), "path": path}
    save_state(data_dir, state)


def is_rolled_back(data_dir: str, version: str) -> bool:
    return str(version) in load_state(data_dir).get("rolled_back_versions", [])


def rollback_client(data_dir: str, installation: Installation | None = None) -> RollbackResult:
    """What ``onehop client --rollback`` runs: restore the previous single-file build and
    stop offering the version that was rolled back."""
    installation = installation or detect_installation()
    if not installation.single_file or not installation.path:
        raise UpgradeError("this onehop was installed with pip: roll back with "
                           f"`{installation.python} -m pip install onehop==<version>`")
    result = rollback(installation.path)
    state = load_state(data_dir)
    installed = state.get("installed") or {}
    bad = installed.get("version")
    if bad:
        state["rolled_back_versions"] = sorted(set(state.get("rolled_back_versions", [])) | {str(bad)})
    state["installed"] = {"version": installed.get("previous_version"), "previous_version": None,
                          "path": installation.path}
    save_state(data_dir, state)
    return RollbackResult(result.path, result.rolled_back, installed.get("previous_version"), bad)


# ----------------------------------------------------------------------- pip

_DIST_INFO = re.compile(r"^([^/]+)\.dist-info/WHEEL$")


def wheel_filename(build: bytes) -> str | None:
    """``name-version-tag.whl`` when ``build`` is a wheel, else None."""
    try:
        with zipfile.ZipFile(io.BytesIO(build)) as archive:
            for name in archive.namelist():
                match = _DIST_INFO.match(name)
                if match:
                    text = archive.read(name).decode("utf-8", "replace")
                    tag = re.search(r"^Tag:\s*(\S+)", text, re.MULTILINE)
                    return f"{match.group(1)}-{tag.group(1) if tag else 'py3-none-any'}.whl"
    except (zipfile.BadZipFile, OSError, KeyError):
        return None
    return None


@dataclass(frozen=True)
class PipInstructions:
    path: str
    command: str
    message: str


def pip_instructions(directory: str, build: bytes, version: str, installation: Installation) -> PipInstructions:
    """Save the verified build in ``directory``; say exactly what the user should run."""
    wheel = wheel_filename(build)
    name = wheel or f"onehop-client-{version}.pyz"
    path = os.path.join(directory, name)
    try:
        os.makedirs(directory, exist_ok=True)
        replace_file(path, build, 0o644 if wheel else 0o755)
    except OSError as exc:
        raise UpgradeError(f"cannot save the verified build as {path}: {exc}") from None
    python = shlex.quote(installation.python)
    if wheel:
        command = f"{python} -m pip install --upgrade {shlex.quote(path)}"
        message = f"onehop {version} is verified and ready; this onehop was installed with pip: run `{command}`"
    else:
        command = f"{python} {shlex.quote(path)} client"
        message = (f"onehop {version} is verified and saved as a single-file client; this onehop was "
                   f"installed with pip, so it was not replaced: run the new one with `{command}`, "
                   f"or upgrade the package with `{python} -m pip install --upgrade onehop`")
    return PipInstructions(path, command, message)
