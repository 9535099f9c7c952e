"""``onehop feedback receive``: a connection that sends nothing, or trickles its request,
cannot hold its place for ever.

Before: aiohttp has no header or body read timeout, so connections that never sent a byte
(or one byte every ten seconds) kept their place in the connection cap indefinitely; a few
sources (or one IPv6 /64) held all of them and real uploads waited in the backlog.
Now a connection must average ``MIN_BYTES_PER_SECOND`` after ``GRACE_SECONDS``.
"""

from __future__ import annotations

import asyncio

from onehop.feedback import receive
from onehop.feedback.receive import ReceiveOptions, start


async def _eof_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        while True:
            if await asyncio.wait_for(reader.read(4096), seconds) == b"":
                return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_silent_and_trickling_connections_are_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(receive, "GRACE_SECONDS", 0.5, raising=False)
    monkeypatch.setattr(receive, "MIN_BYTES_PER_SECOND", 200, raising=False)
    runner, port = await start(ReceiveOptions("127.0.0.1", 0, str(tmp_path)))
    writers = []
    try:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.81", 0))
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.81", 0))
        writers += [silent_w, slow_w]
        slow_w.write(b"PUT /uploads/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")

        async def trickle():
            for _ in range(30):
                await asyncio.sleep(0.1)
                if slow_w.is_closing():
                    return
                slow_w.write(b"x")
        trickling = asyncio.ensure_future(trickle())
        closed = await asyncio.gather(_eof_within(silent_r, 2.5), _eof_within(slow_r, 2.5))
        trickling.cancel()
        assert closed == [True, True]
        # an upload at a decent pace is untouched
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.82", 0))
        writers.append(writer)
        body = b"y" * 4000
        writer.write(b"PUT /uploads/fine HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                     % len(body))
        for i in range(0, len(body), 1000):
            await asyncio.sleep(0.2)
            writer.write(body[i:i + 1000])
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] == b"200", status
        assert (tmp_path / "fine").read_bytes() == body
    finally:
        for w in writers:
            w.close()
        await runner.cleanup()
