"""What a client does on ClientUpgradeAvailable: fetch, verify, install (or instruct).

:func:`check_and_download_upgrade` needs only ``controller.config`` (a ClientConfig),
``controller.notices`` and ``controller.outbound_opener()``. In order:

1. nothing to do unless UpgradeDownloadURLs and UpgradeSignaturePublicKey are set,
   the offered version is newer than ours and was not rolled back here;
2. a single-file client first tries the delta from its own version (``<build>.<ours>-
   <new>.delta.upgrade`` next to the full package); any problem (absent, bad
   signature, wrong base, wrong result) falls back to the full package;
3. the full package downloads to ``<data dir>/upgrade/<name>.<version>`` (resumable);
4. key digest and signature are verified, and the build decoded, before anything is
   written next to the running client; a package that fails is deleted (a fresh copy
   is fetched next time) and the installed client is untouched;
5. a single-file client is replaced atomically (``<file>.previous`` kept); for a
   pip-installed client the verified build is saved and the notice says what to run.

Notices: ``ClientUpgradeDownloaded`` ``{"filename": ...}`` (Psiphon's), Info notices
for progress, the delta saving and what to do next; Alert when a package is rejected.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...core.api import normalize_client_platform
from ...errors import OnehopError
from ...net.http_client import request
from ..notices import CLIENT_UPGRADE_DOWNLOADED
from ..ports import OutboundClient
from ..transfer_urls import canonical, parse_transfer_urls
from .errors import UpgradeError
from .fetch import DEFAULT_POLICY, Downloader, FetchPolicy, delta_url, file_name
from .install import (
    Installation,
    detect_installation,
    install_file,
    is_rolled_back,
    pip_instructions,
    record_install,
)
from .package import (
    apply_delta,
    check_offer,
    delta_name,
    is_newer,
    read_delta_package,
    read_upgrade_package,
)
from .progress import make_progress

UPGRADE_DIR = "upgrade"


@dataclass(frozen=True)
class UpgradeResult:
    """``status``: installed | downloaded (pip: see ``command``) | current | disabled |
    skipped (rolled back here before) | failed (see ``error``)."""

    status: str
    version: str
    path: str | None = None
    previous: str | None = None
    command: str | None = None
    message: str = ""
    delta: bool = False
    bytes_downloaded: int = 0
    error: str | None = None


@dataclass(frozen=True)
class _Context:
    config: Any
    notices: Any
    version: str
    installation: Installation
    downloader: Downloader
    progress: Any
    public_key: str


async def check_and_download_upgrade(controller: OutboundClient, version: str | int, *,
                                     installation: Installation | None = None,
                                     policy: FetchPolicy = DEFAULT_POLICY, terminal: bool | None = None,
                                     rng: random.Random | None = None,
                                     sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> UpgradeResult:
    """Handle one ClientUpgradeAvailable(version); never raises for a failed upgrade."""
    config, version = controller.config, str(version)
    skip = _skip_reason(config, version)
    if skip is not None:
        return UpgradeResult(skip, version)
    notices = getattr(controller, "notices", None)
    progress = make_progress(notices, terminal)
    try:
        urls = parse_transfer_urls(config.upgrade_download_urls, "UpgradeDownloadURLs")
        downloader = Downloader(urls, os.path.join(config.data_dir, UPGRADE_DIR), controller.outbound_opener,
                                policy=policy, rng=rng, sleep=sleep, progress=progress)
        ctx = _Context(config, notices, version, installation or detect_installation(), downloader, progress,
                       config.upgrade_signature_public_key)
        build, delta_used, received = await _obtain(ctx, urls)
        return await _install(ctx, build, delta_used, received)
    except (OnehopError, OSError) as exc:  # OSError: the data directory itself failed
        if notices is not None:
            notices.alert("client upgrade failed", version=version, error=str(exc))
        return UpgradeResult("failed", version, error=str(exc))


async def probe_available_version(config: Any, open_socket: Any, *, timeout: float = 30.0) -> str | None:
    """Psiphon's out-of-band check: HEAD the canonical upgrade URL and read the version from
    the header named by ``UpgradeDownloadClientVersionHeader`` (operators set S3 metadata
    ``x-amz-meta-psiphon-client-version``). None when not configured or not answered."""
    header = (getattr(config, "extra", None) or {}).get("UpgradeDownloadClientVersionHeader")
    if not header or not config.upgrade_download_urls:
        return None
    target = canonical(parse_transfer_urls(config.upgrade_download_urls, "UpgradeDownloadURLs"))
    try:
        head, _ = await request("HEAD", target.url, open_socket, headers={"User-Agent": "onehop"},
                                timeout=timeout, verify_tls=not target.skip_verify)
    except OnehopError:
        return None
    value = head.header(header) if head.status == 200 else None
    return value.strip() if value and value.strip() else None


def _skip_reason(config: Any, version: str) -> str | None:
    if not config.upgrade_download_urls or not config.upgrade_signature_public_key:
        return "disabled"
    if not is_newer(version, config.client_version):
        return "current"
    if is_rolled_back(config.data_dir, version):
        return "skipped"
    return None


async def _obtain(ctx: _Context, urls) -> tuple[bytes, bool, int]:
    """The verified new build: from the delta when possible, else the full package.

    Reading, verifying and patching (tens of MB) run in a worker thread so the tunnel's
    event loop keeps serving; notices are emitted from the loop only.
    """
    installed = ctx.installation.path if ctx.installation.single_file else None
    if installed:
        found = await _try_delta(ctx, urls, installed)
        if found is not None:
            return found[0], True, found[1]
    name = f"{file_name(urls[0].url)}.{ctx.version}"
    fetched = await ctx.downloader.fetch(name)
    try:
        build = await asyncio.to_thread(_verified_full, fetched.path, ctx)
    except OnehopError as exc:
        _remove(fetched.path)  # never install it, never keep it: the next attempt fetches a fresh copy
        if ctx.notices is not None:
            ctx.notices.alert("upgrade package rejected", version=ctx.version, error=str(exc))
        raise
    return build, False, fetched.size


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UpgradeError(f"cannot read {path}: {exc.strerror}") from None


def _platform(ctx: _Context) -> str:
    return normalize_client_platform(ctx.config.client_platform)


def _verified_full(path: str, ctx: _Context) -> bytes:
    """The build, once signed as the offered version, for our platform, newer than ours."""
    signed = read_upgrade_package(_read(path), ctx.public_key)
    check_offer(signed.version, signed.platform, offered=ctx.version, platform=_platform(ctx),
                running=str(ctx.config.client_version))
    return signed.build


def _patched(installed: str, delta_path: str, ctx: _Context, ours: str) -> tuple[bytes, int]:
    delta = read_delta_package(_read(delta_path), ctx.public_key)
    build = apply_delta(_read(installed), delta, from_version=ours, to_version=ctx.version, platform=_platform(ctx))
    return build, delta.header.full_package_size


async def _try_delta(ctx: _Context, urls, installed: str) -> tuple[bytes, int] | None:
    """Patch the ``installed`` single file with a delta; None when no usable delta."""
    ours = str(ctx.config.client_version)
    name = delta_name(file_name(urls[0].url), ours, ctx.version)
    path = os.path.join(ctx.downloader.directory, name)
    try:
        fetched = await ctx.downloader.fetch(name, lambda t: delta_url(t.url, ours, ctx.version),
                                             attempts=ctx.downloader.policy.delta_attempts,
                                             final_statuses=frozenset({403, 404, 410}))
        build, full_size = await asyncio.to_thread(_patched, installed, fetched.path, ctx, ours)
    except OnehopError as exc:
        ctx.progress.note("delta upgrade not usable, fetching the full package", version=ctx.version,
                          reason=str(exc))
        return None
    finally:
        _remove(path)
    _report_saving(ctx, fetched.size, full_size)
    return build, fetched.size


def _report_saving(ctx: _Context, got: int, full: int) -> None:
    if full > 0:
        saved = 100.0 * (full - got) / full
        text = (f"delta upgrade to {ctx.version}: downloaded {_human(got)} instead of {_human(full)} "
                f"({saved:.1f}% saved)")
    else:
        text = f"delta upgrade to {ctx.version}: downloaded {_human(got)}"
    ctx.progress.note(text, version=ctx.version, deltaBytes=got, fullBytes=full)


def _human(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


async def _install(ctx: _Context, build: bytes, delta_used: bool, received: int) -> UpgradeResult:
    directory = ctx.downloader.directory
    _remove(os.path.join(directory, f"{file_name(ctx.downloader.urls[0].url)}.{ctx.version}"))
    if ctx.installation.single_file and ctx.installation.path:
        done = await asyncio.to_thread(install_file, ctx.installation.path, build)
        record_install(ctx.config.data_dir, ctx.version, str(ctx.config.client_version), done.path)
        message = f"onehop {ctx.version} installed at {done.path}; restart onehop to use it"
        _announce(ctx, done.path, message)
        return UpgradeResult("installed", ctx.version, done.path, done.previous, message=message,
                             delta=delta_used, bytes_downloaded=received)
    how = await asyncio.to_thread(pip_instructions, directory, build, ctx.version, ctx.installation)
    _announce(ctx, how.path, how.message, command=how.command)
    return UpgradeResult("downloaded", ctx.version, how.path, command=how.command, message=how.message,
                         delta=delta_used, bytes_downloaded=received)


def _announce(ctx: _Context, path: str, message: str, **data: Any) -> None:
    if ctx.notices is not None:
        ctx.notices.emit(CLIENT_UPGRADE_DOWNLOADED, filename=path, version=ctx.version)
    ctx.progress.note(message, version=ctx.version, **data)


def _remove(path: str) -> None:
    for candidate in (path, path + ".part", path + ".part.etag"):
        try:
            os.remove(candidate)
        except OSError:
            pass
