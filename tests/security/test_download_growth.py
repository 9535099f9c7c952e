"""Issue 18 item 4: a resumable download is bounded per file, not per attempt.

A hostile mirror answers every ``Range: bytes=N-`` with a 206 that "resumes" at N and
then sends more than the limit (or ignores Range and sends an endless 200). Before the
fix the limit applied to each attempt while the ``.part`` file was appended to, so it
grew by the limit on every retry; the remote-list path then read the whole file into
memory.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from onehop.client.datastore import Datastore
from onehop.client.notices import Notices
from onehop.client.remote_lists import RemoteListFetcher
from onehop.client.transfer_urls import parse_transfer_urls
from onehop.client.upgrade.fetch import Downloader, FetchPolicy
from onehop.errors import TransferError
from onehop.net.dial import socket_opener
from onehop.net.resumable import download

LIMIT = 64 * 1024
ATTEMPTS = 4


class HostileMirror:
    """Loopback HTTP server: claims to resume anywhere, then floods (bounded per answer)."""

    def __init__(self, mode: str, flood: int = 3 * LIMIT) -> None:
        self.mode, self.flood = mode, flood
        self.requests: list[dict] = []
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/file"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line)
            self.requests.append(headers)
            start = int(headers.get("Range", "bytes=0-")[6:-1])
            if self.mode == "resume-forever" and start:
                writer.write(f"HTTP/1.1 206 Partial Content\r\nETag: \"e\"\r\n"
                             f"Content-Range: bytes {start}-{start + self.flood - 1}/*\r\n"
                             "Connection: close\r\n\r\n".encode())
            elif self.mode == "lying-length":  # declares little, sends a flood
                writer.write(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 100\r\n"
                             b"Connection: close\r\n\r\n")
            elif self.mode == "declares-too-much":
                writer.write(f"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: {self.flood}\r\n"
                             "Connection: close\r\n\r\n".encode())
            else:  # ignores Range: a close-delimited 200, bigger than the limit
                writer.write(b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nConnection: close\r\n\r\n")
            chunk = b"x" * 8192
            for _ in range(self.flood // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()


def _part_size(path: str) -> int:
    try:
        return os.path.getsize(path + ".part")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("mode", ["resume-forever", "ignores-range"])
async def test_part_file_never_exceeds_the_limit_over_retries(tmp_path, mode):
    mirror = HostileMirror(mode)
    url = await mirror.start()
    path = str(tmp_path / "file")
    # A first honest-looking attempt leaves a partial file, as a cut connection would.
    with open(path + ".part", "wb") as f:
        f.write(b"y" * (LIMIT // 2))
    sizes = []
    for _ in range(ATTEMPTS):
        with pytest.raises(TransferError):
            await download(url, path, socket_opener(None), timeout=5, max_size=LIMIT)
        sizes.append(_part_size(path))
    await mirror.close()
    assert max(sizes) <= LIMIT, sizes
    assert not os.path.exists(path)


async def test_a_declared_length_over_the_limit_is_refused_before_writing(tmp_path):
    mirror = HostileMirror("declares-too-much", flood=2 * LIMIT)
    url = await mirror.start()
    path = str(tmp_path / "file")
    with pytest.raises(TransferError, match="limit"):
        await download(url, path, socket_opener(None), timeout=5, max_size=LIMIT)
    assert _part_size(path) == 0  # nothing written for a body that could never fit
    await mirror.close()


async def test_bytes_past_the_declared_length_are_ignored(tmp_path):
    mirror = HostileMirror("lying-length")
    url = await mirror.start()
    path = str(tmp_path / "file")
    result = await download(url, path, socket_opener(None), timeout=5, max_size=LIMIT)
    await mirror.close()
    assert result.bytes_received == 100 and os.path.getsize(path) == 100


async def test_upgrade_downloader_bounds_the_file_across_its_attempts(tmp_path):
    mirror = HostileMirror("resume-forever")
    url = await mirror.start()
    urls = parse_transfer_urls([url], "UpgradeDownloadURLs")

    async def no_sleep(_):
        return None

    downloader = Downloader(urls, str(tmp_path / "upgrade"), lambda: socket_opener(None),
                            policy=FetchPolicy(max_attempts=ATTEMPTS, retry_delay=0, timeout=5, max_size=LIMIT),
                            rng=random.Random(1), sleep=no_sleep)
    os.makedirs(tmp_path / "upgrade")
    with open(tmp_path / "upgrade" / "client.part", "wb") as f:
        f.write(b"y" * (LIMIT // 2))
    with pytest.raises(TransferError):
        await downloader.fetch("client")
    await mirror.close()
    assert _part_size(str(tmp_path / "upgrade" / "client")) <= LIMIT


async def test_remote_list_fetcher_bounds_the_file_and_never_slurps_it(tmp_path):
    mirror = HostileMirror("resume-forever")
    url = await mirror.start()
    store = Datastore(str(tmp_path / "data"))
    fetcher = RemoteListFetcher(parse_transfer_urls([url], "RemoteServerListURLs"), "key", store,
                                Notices(None), str(tmp_path / "data"), max_size=LIMIT)
    with open(fetcher.path + ".part", "wb") as f:
        f.write(b"y" * (LIMIT // 2))
    for _ in range(ATTEMPTS):
        assert await fetcher.fetch(socket_opener(None), tunneled=False) == 0
        assert _part_size(fetcher.path) <= LIMIT
    await mirror.close()
    store.close()


async def test_remote_list_is_read_in_bounded_chunks(tmp_path, monkeypatch):
    """A list file bigger than the limit (left there by anyone) is refused without reading it whole."""
    store = Datastore(str(tmp_path / "data"))
    fetcher = RemoteListFetcher((), "key", store, Notices(None), str(tmp_path / "data"), max_size=LIMIT)
    with open(fetcher.path, "wb") as f:
        f.write(b"z" * (4 * LIMIT))
    reads: list[int] = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            reads.append(n)
            return self.f.read(n)

        def fileno(self):
            return self.f.fileno()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def spying_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return Spy(f) if str(file) == fetcher.path and "b" in mode else f

    import onehop.client.remote_lists as module
    monkeypatch.setattr(module, "open", spying_open, raising=False)
    assert await fetcher._verify_and_import(fetcher.path, tunneled=False) is None
    assert all(0 < n <= LIMIT for n in reads), reads
    with open(fetcher.path, "wb") as f:  # within the limit: read in pieces, never whole
        f.write(b"z" * LIMIT)
    reads.clear()
    assert await fetcher._verify_and_import(fetcher.path, tunneled=False) is None
    assert reads and all(0 < n <= LIMIT for n in reads), reads
    store.close()
