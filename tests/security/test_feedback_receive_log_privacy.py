"""``onehop feedback receive`` writes no client address to its log.

Before: an upload cut off mid-body made aiohttp log "Error handling request from
<client IP>" and a traceback, once per dropped upload.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

from onehop.feedback.receive import ReceiveOptions, start

CLIENT = "127.0.0.83"


async def test_a_dropped_upload_logs_no_address(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    runner, port = await start(ReceiveOptions("127.0.0.1", 0, str(tmp_path)))
    try:
        for abort in (False, True):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(CLIENT, 0))
            writer.write(b"PUT /uploads/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"z" * 500)
            await writer.drain()
            await asyncio.sleep(0.2)
            if abort:  # a reset, as a dropped mobile connection gives
                writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                           struct.pack("ii", 1, 0))
            writer.close()
            await asyncio.sleep(0.3)
    finally:
        await runner.cleanup()
    assert CLIENT not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[:500]
