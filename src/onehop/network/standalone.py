"""Standalone client builds: one native executable, no Python needed (PyInstaller).

Two steps, so that a publish of many campaigns freezes Python once:

1. the **runtime** (:func:`freeze_runtime`): PyInstaller ``--onefile`` of ``onehop.cli``
   with the client's modules (not ``network``, ``mail``, ``lab``) and nothing else that
   happens to be installed here: every top-level module of a distribution outside the
   client's runtime closure is excluded, with a few stdlib and optional-import extras
   (:func:`excluded_modules`). Cached by its inputs (the staged runtime's digest, the
   PyInstaller and Python versions, the platform).
2. each **build** (:func:`embed`): the runtime's CArchive (PyInstaller's PKG) rewritten
   with ``onehop_embedded/{__init__.py,config.json,server_list.dat}`` added as data
   entries, which the bootloader extracts beside the bundled modules, where
   ``onehop.client.app`` finds them. On Linux the PKG lives in the ELF section
   ``pydata`` (``objcopy --update-section``); on Windows and macOS it is appended to the
   bootloader (macOS builds must be signed again afterwards: ``codesign``).

:func:`verify_standalone` re-reads a build: cookie, table of contents, every entry
inflates (zlib checks each one), and the embedded files are exactly the ones given;
``publish`` runs it before it signs anything. See docs/client-builds.md.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import importlib.util
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

from .errors import BuildError
from .fileio import write_atomic

EMBEDDED_PACKAGE = "onehop_embedded"
COOKIE_MAGIC = b"MEI\014\013\012\013\016"
COOKIE = struct.Struct("!8sIIII64s")
TOC_ENTRY = struct.Struct("!IIIIBc")
DATA_TYPECODE = b"x"
ELF_SECTION = "pydata"
#: What a standalone build can be made for: (sys.platform prefix, machines).
SUPPORTED = {"linux": ("x86_64", "aarch64"), "win32": ("AMD64", "ARM64"), "darwin": ("x86_64", "arm64")}
#: Never needed by the client, yet reachable through optional imports of what it uses.
ALWAYS_EXCLUDED = ("tkinter", "_tkinter", "unittest", "pydoc", "pydoc_data", "doctest", "lib2to3", "idlelib",
                   "distutils", "setuptools", "pkg_resources", "pip", "test", "xmlrpc", "curses",
                   "pygments", "markdown_it", "IPython", "ipywidgets", "numpy", "pandas", "matplotlib")
CLIENT_PACKAGES_SKIPPED = ("network", "mail", "lab")


def check_platform(system: str | None = None, machine: str | None = None) -> str:
    """The platform tag of standalone builds made here (``linux-x86_64``); refuses the rest."""
    system = system or sys.platform
    machine = machine or platform.machine()
    for prefix, machines in SUPPORTED.items():
        if system.startswith(prefix) and machine in machines:
            return f"{prefix}-{machine}"
    raise BuildError(f"standalone builds cannot be made on {system} {machine}: build on the platform your "
                     "users run (Linux x86_64/aarch64, Windows AMD64/ARM64 or macOS), or use --format zipapp")


def executable_name(base: str, system: str | None = None) -> str:
    return f"{base}.exe" if (system or sys.platform).startswith("win") else base


def pyinstaller_version() -> str:
    if importlib.util.find_spec("PyInstaller") is None:
        raise BuildError("standalone builds need PyInstaller, which comes with the 'network' extra: "
                         "pip install 'onehop[network]'")
    return metadata.version("pyinstaller")


def _top_levels(dist: metadata.Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        first = file.parts[0] if file.parts else ""
        if first.endswith((".dist-info", ".egg-info", ".data")) or first in ("..", "__pycache__", "bin"):
            continue
        names.add(first[:-3] if first.endswith(".py") else first.split(".")[0])
    return {n for n in names if n.isidentifier()}


def excluded_modules(closure: dict[str, metadata.Distribution]) -> list[str]:
    """Top-level modules installed here that the client's runtime closure does not bring."""
    keep = set().union(*(_top_levels(d) for d in closure.values())) | {"onehop", "_cffi_backend"}
    others = set()
    for dist in metadata.distributions():
        others |= _top_levels(dist)
    excluded = (others - keep) | set(ALWAYS_EXCLUDED)
    excluded |= {f"onehop.{name}" for name in CLIENT_PACKAGES_SKIPPED}
    return sorted(excluded)


def client_modules(stage: Path) -> list[str]:
    """Every module of the staged onehop (imported lazily by the CLI: PyInstaller cannot see them)."""
    root = stage / "onehop"
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(stage).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


ENTRY_SCRIPT = "import sys\nfrom onehop.cli import main\nsys.exit(main())\n"


FREEZE_RECIPE = "2"  # bump when freeze_runtime's command changes: cached runtimes of the old recipe are not reused


def package_data(stage: Path) -> list[str]:
    """--add-data for every non-Python file of the staged onehop (the UI's page: PyInstaller bundles only modules)."""
    root = stage / "onehop"
    return [f"--add-data={path}{os.pathsep}{path.parent.relative_to(stage).as_posix()}"
            for path in sorted(root.rglob("*")) if path.is_file() and path.suffix not in (".py", ".pyc")]


def runtime_key(stage_digest: str, excluded: list[str]) -> str:
    text = "\n".join([FREEZE_RECIPE, stage_digest, pyinstaller_version(), sys.version, check_platform(), *excluded])
    return hashlib.sha256(text.encode()).hexdigest()


def freeze_runtime(stage: Path, excluded: list[str], workdir: Path, out: Path, name: str) -> None:
    """Run PyInstaller once: ``out`` becomes the channel-less one-file runtime."""
    check_platform()
    pyinstaller_version()
    entry = workdir / "onehop_client_entry.py"
    entry.write_text(ENTRY_SCRIPT)
    command = [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--clean", "--log-level", "WARN",
               "--name", name, "--distpath", str(workdir / "dist"), "--workpath", str(workdir / "work"),
               "--specpath", str(workdir), "--paths", str(stage), "--noupx", "--strip"]
    command += [f"--hidden-import={m}" for m in client_modules(stage)]
    command += [f"--exclude-module={m}" for m in excluded]
    command += package_data(stage)
    command.append(str(entry))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, "PYTHONHASHSEED": "0",
           "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH", "315532800")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, cwd=workdir)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"cannot run PyInstaller: {exc}") from None
    built = workdir / "dist" / executable_name(name)
    if done.returncode != 0 or not built.is_file():
        raise BuildError(f"PyInstaller failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")
    os.replace(built, out)


# ----------------------------------------------------------------------- the PKG archive

def find_archive(data: bytes) -> tuple[int, int, tuple]:
    """(start, end, cookie fields) of the CArchive in an executable; BuildError if absent."""
    at = data.rfind(COOKIE_MAGIC)
    while at >= 0:
        if at + COOKIE.size <= len(data):
            fields = COOKIE.unpack_from(data, at)
            end = at + COOKIE.size
            start = end - fields[1]
            if start >= 0 and fields[2] + fields[3] + COOKIE.size == fields[1]:
                return start, end, fields
        at = data.rfind(COOKIE_MAGIC, 0, at)
    raise BuildError("not a standalone build: no PyInstaller archive found")


def read_toc(pkg: bytes, toc_offset: int, toc_length: int) -> list[tuple[int, int, int, int, bytes, str]]:
    """[(offset, stored length, length, compressed, typecode, name)] of a PKG."""
    entries, at, end = [], toc_offset, toc_offset + toc_length
    while at < end:
        size, offset, stored, length, flag, code = TOC_ENTRY.unpack_from(pkg, at)
        if size < TOC_ENTRY.size or at + size > end:
            raise BuildError("standalone build: corrupt archive table of contents")
        name = pkg[at + TOC_ENTRY.size:at + size].rstrip(b"\0").decode("utf-8", "replace")
        entries.append((offset, stored, length, flag, code, name))
        at += size
    return entries


def _toc_bytes(entries: list[tuple[int, int, int, int, bytes, str]]) -> bytes:
    out = []
    for offset, stored, length, flag, code, name in entries:
        raw = name.encode("utf-8") + b"\0"
        raw += b"\0" * (-(TOC_ENTRY.size + len(raw)) % 16)
        out.append(TOC_ENTRY.pack(TOC_ENTRY.size + len(raw), offset, stored, length, flag, code) + raw)
    return b"".join(out)


def rewrite_archive(pkg: bytes, cookie: tuple, files: dict[str, bytes]) -> bytes:
    """The PKG with ``onehop_embedded/<name>`` data entries for ``files`` (replacing old ones)."""
    _, _, toc_offset, toc_length, pyvers, pylib = cookie
    prefix = EMBEDDED_PACKAGE + "/"
    kept = [e for e in read_toc(pkg, toc_offset, toc_length) if not e[5].replace("\\", "/").startswith(prefix)]
    body = bytearray(pkg[:toc_offset])
    entries = list(kept)
    for name, data in sorted(files.items()):
        packed = zlib.compress(data, 9)
        entries.append((len(body), len(packed), len(data), 1, DATA_TYPECODE, prefix + name))
        body += packed
    toc = _toc_bytes(entries)
    length = len(body) + len(toc) + COOKIE.size
    return bytes(body) + toc + COOKIE.pack(COOKIE_MAGIC, length, len(body), len(toc), pyvers, pylib)


def embed(runtime: Path, files: dict[str, bytes], out: Path) -> None:
    """Write ``out``: ``runtime`` carrying ``files`` as its ``onehop_embedded`` package."""
    data = runtime.read_bytes()
    start, end, cookie = find_archive(data)
    pkg = rewrite_archive(data[start:end], cookie, files)
    if data[:4] != b"\x7fELF":
        if end != len(data):
            raise BuildError("standalone runtime: unexpected data after the archive")
        write_atomic(out, data[:start] + pkg, 0o755)
        return
    with tempfile.TemporaryDirectory(prefix="onehop-embed-") as tmp:
        section = Path(tmp) / "pkg"
        section.write_bytes(pkg)
        staged = Path(tmp) / "build"
        command = ["objcopy", "--update-section", f"{ELF_SECTION}={section}", str(runtime), str(staged)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildError(f"cannot run objcopy (binutils): {exc}") from None
        if done.returncode != 0:
            raise BuildError(f"objcopy failed: {done.stderr.strip()[-300:]}")
        write_atomic(out, staged.read_bytes(), 0o755)


def verify_standalone(data: bytes, files: dict[str, bytes] | None = None) -> int:
    """Check a standalone build's archive; with ``files``, that it embeds exactly them.
    Returns the number of entries; raises BuildError on anything wrong."""
    start, end, cookie = find_archive(data)
    pkg = data[start:end]
    entries = read_toc(pkg, cookie[2], cookie[3])
    found: dict[str, bytes] = {}
    for offset, stored, length, flag, _code, name in entries:
        if offset + stored > cookie[2]:
            raise BuildError(f"standalone build: entry {name} lies outside the archive")
        raw = pkg[offset:offset + stored]
        try:
            body = zlib.decompress(raw) if flag else raw
        except zlib.error:
            raise BuildError(f"standalone build: entry {name} is corrupt (tampered?)") from None
        if len(body) != length:
            raise BuildError(f"standalone build: entry {name} has the wrong length (tampered?)")
        if name.replace("\\", "/").startswith(EMBEDDED_PACKAGE + "/"):
            found[name.replace("\\", "/").split("/", 1)[1]] = body
    if files is not None and found != files:
        differ = sorted(set(found) ^ set(files) | {n for n in set(found) & set(files) if found[n] != files[n]})
        raise BuildError(f"standalone build: embedded {', '.join(differ) or 'files'} differ from what this "
                         "channel's build must carry")
    return len(entries)


def copy_runtime(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
