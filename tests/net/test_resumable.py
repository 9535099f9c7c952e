"""Resumable downloads against a real HTTP server that cuts, changes and caches."""

from __future__ import annotations

import os

import pytest

from onehop.core.upstreamproxy import ProxySpec
from onehop.errors import TransferError
from onehop.net.dial import socket_opener
from onehop.net.resumable import download
from tests.e2e.fakes import CountingProxy, FileServer

BODY = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture
async def files():
    server = FileServer()
    await server.start()
    server.files["/list"] = BODY
    yield server
    await server.close()


async def test_interrupted_download_resumes_with_range_and_if_match(files, tmp_path):
    path = str(tmp_path / "list")
    files.cut_after["/list"] = 1_000_000
    with pytest.raises(TransferError):
        await download(files.url("/list"), path, socket_opener(None))
    assert os.path.getsize(path + ".part") == 1_000_000  # the partial file is kept
    result = await download(files.url("/list"), path, socket_opener(None))
    with open(path, "rb") as f:
        assert f.read() == BODY
    assert result.etag == files.etag("/list")
    last = files.requests[-1]
    assert last["Range"] == "bytes=1000000-" and last["If-Match"] == files.etag("/list")
    assert not os.path.exists(path + ".part")


async def test_changed_etag_mid_download_restarts_from_zero(files, tmp_path):
    path = str(tmp_path / "list")
    files.cut_after["/list"] = 500_000
    with pytest.raises(TransferError):
        await download(files.url("/list"), path, socket_opener(None))
    files.files["/list"] = new_body = os.urandom(200_000)
    with pytest.raises(TransferError, match="412"):
        await download(files.url("/list"), path, socket_opener(None))
    assert not os.path.exists(path + ".part")  # the stale partial file is gone
    await download(files.url("/list"), path, socket_opener(None))
    with open(path, "rb") as f:
        assert f.read() == new_body


async def test_if_none_match_gives_not_modified(files, tmp_path):
    path = str(tmp_path / "list")
    first = await download(files.url("/list"), path, socket_opener(None))
    second = await download(files.url("/list"), path + "2", socket_opener(None), if_none_match=first.etag)
    assert second.not_modified and not os.path.exists(path + "2")


async def test_http_errors_are_clear_and_keep_nothing(files, tmp_path):
    with pytest.raises(TransferError, match="HTTP 404"):
        await download(files.url("/missing"), str(tmp_path / "x"), socket_opener(None))
    with pytest.raises(TransferError):
        await download("http://127.0.0.1:1/none", str(tmp_path / "y"), socket_opener(None), timeout=3)


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_download_through_upstream_proxy(files, tmp_path, kind):
    proxy = CountingProxy(kind, *(("user", "pw") if kind == "socks5" else ()))
    port = await proxy.start()
    spec = ProxySpec(kind, "127.0.0.1", port, *(("user", "pw") if kind == "socks5" else ()))
    path = str(tmp_path / "list")
    await download(files.url("/list"), path, socket_opener(spec))
    assert proxy.bytes_relayed >= len(BODY)
    assert proxy.targets == [("127.0.0.1", files.port)]
    proxy.close()
