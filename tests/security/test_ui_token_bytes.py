"""The UI's token check with a token that is not UTF-8 text.

Before the fix: any local process sending ``X-Onehop-Token: \\xff\\xfe`` (no token needed)
made the access check itself raise (``str.encode`` of aiohttp's surrogate-escaped header):
a 500 without the security headers and a 20-line traceback on the client's stderr for
every such request. Now it is refused like any wrong token.
"""

from __future__ import annotations

import asyncio
import logging

from onehop.client.ui.server import UIServer
from tests.ui.test_ui_api import FakeControl


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()


async def test_a_token_that_is_not_utf8_is_refused_quietly(caplog):
    server = UIServer(FakeControl())
    await server.start()
    try:
        with caplog.at_level(logging.ERROR):
            answer = await _raw(server.port, b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                             b"X-Onehop-Token: \xff\xfe\r\nConnection: close\r\n\r\n" % server.port)
    finally:
        await server.close()
    head = answer.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 403"), head
    assert b"Content-Security-Policy" in head
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
