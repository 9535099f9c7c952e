"""``onehop feedback receive`` (a public PUT endpoint) caps connections per source.

Before: aiohttp's TCPSite accepted without limit: one source holding idle connections
used every descriptor and locked out real uploads (then asyncio logged a traceback per
failed ``accept()``). Now a source gets at most ``default_caps()[1]`` connections; the
rest are closed without a byte, and other sources can still upload.
"""

from __future__ import annotations

import asyncio

from onehop.feedback.receive import ReceiveOptions, start
from onehop.net.acceptgate import default_caps


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False


async def test_idle_connections_from_one_source_cannot_lock_out_uploads(tmp_path):
    runner, port = await start(ReceiveOptions("127.0.0.1", 0, str(tmp_path)))
    writers = []
    try:
        per_source = default_caps()[1]
        opened = [await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.8", 0))
                  for _ in range(per_source + 5)]
        writers += [w for _, w in opened]
        closed = await asyncio.gather(*(_eof_within(r, 0.5) for r, _ in opened))
        assert closed.count(True) == 5 and closed.count(False) == per_source
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.1", 0))
        writers.append(writer)
        body = b"encrypted package"
        writer.write(b"PUT /uploads/0123456789abcdef HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))
        status = await asyncio.wait_for(reader.readline(), 10)
        assert status.split()[1].startswith(b"2"), status
    finally:
        for w in writers:
            w.close()
        await runner.cleanup()
