"""The onehop wheel a deploy installs, and the versions its dependencies are pinned to.

``--source`` names a wheel file or a source tree (default: the tree this onehop runs
from). A tree is copied (``pyproject.toml``, ``README.md``, ``src/``) to a temporary
directory and built there with ``pip wheel --no-deps`` and a fixed SOURCE_DATE_EPOCH,
so the operator's tree gets no ``build/`` leftovers and unchanged sources give the same
wheel (and no reinstall). Dependencies come from the host's pip index, constrained to
the versions installed here (the ones the operator tested) unless ``--no-pin``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onehop

from ..errors import DeployError
from ..pins import load_pins
from ..staging import runtime_closure

SERVER_EXTRA = ("maxminddb",)
REPRODUCIBLE_EPOCH = "315532800"  # 1980-01-01, the earliest time a zip can hold


@dataclass(frozen=True)
class Wheel:
    name: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def source_tree() -> Path:
    """The source tree this onehop was installed from (an editable install)."""
    here = Path(onehop.__file__).resolve().parent
    for candidate in here.parents:
        if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "onehop").is_dir():
            return candidate
    raise DeployError("this onehop is not installed from a source tree: give --source WHEEL")


def _copy_tree(tree: Path, stage: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".*")
    for name in ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in", "LICENSE"):
        if (tree / name).is_file():
            shutil.copy2(tree / name, stage / name)
    shutil.copytree(tree / "src", stage / "src", ignore=ignore)


def build_wheel(tree: Path) -> Wheel:
    if not (tree / "pyproject.toml").is_file():
        raise DeployError(f"{tree} has no pyproject.toml: give a onehop source tree or a .whl file")
    with tempfile.TemporaryDirectory(prefix="onehop-wheel-") as tmp:
        stage, out = Path(tmp) / "src-tree", Path(tmp) / "out"
        stage.mkdir()
        _copy_tree(tree, stage)
        env = {**os.environ, "SOURCE_DATE_EPOCH": REPRODUCIBLE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(stage)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DeployError(f"cannot run pip wheel: {exc}") from None
        wheels = sorted(out.glob("onehop-*.whl")) if out.is_dir() else []
        if done.returncode != 0 or len(wheels) != 1:
            raise DeployError(f"pip wheel failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
        return Wheel(wheels[0].name, wheels[0].read_bytes())


def local_wheel(source: str | None) -> Wheel:
    """The wheel for ``--source`` (a .whl file or a source tree; default this tree)."""
    if source and source.endswith(".whl"):
        path = Path(source).expanduser()
        if not path.is_file():
            raise DeployError(f"no wheel at {path}")
        if not path.name.startswith("onehop-"):
            raise DeployError(f"{path.name} is not a onehop wheel")
        return Wheel(path.name, path.read_bytes())
    return build_wheel(Path(source).expanduser() if source else source_tree())


def constraints(pin: bool) -> str:
    """``name==version`` for the server's runtime (empty without pinning): the project's pins
    (``onehop.network.pins``, the same runtime as client builds) rather than whatever is
    installed on the operator's machine; what the pins do not name, as installed here."""
    if not pin:
        return ""
    pins = load_pins()
    versions = {key: (pins[key].version if key in pins else dist.version)
                for key, dist in runtime_closure().items()}
    for name in SERVER_EXTRA:
        if name in pins:
            versions[name] = pins[name].version
            continue
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return "".join(f"{name}=={version}\n" for name, version in sorted(versions.items()))
