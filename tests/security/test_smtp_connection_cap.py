"""The mail responder's public SMTP listener caps connections like the tunnel listeners.

Before: ``loop.create_server`` with no cap: one source holding connections used every
descriptor (then asyncio logged a traceback per failed ``accept()``); now at most
``default_caps()[1]`` sessions per source are served, the rest closed without a greeting,
and other sources are still answered.
"""

from __future__ import annotations

import asyncio

from onehop.net.acceptgate import default_caps
from tests.mail.conftest import export, sink, start_responder  # noqa: F401  (fixtures)


async def _greeting(port: int, source: str) -> tuple[bytes, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    return await asyncio.wait_for(reader.readline(), 10), writer


async def test_one_source_gets_at_most_its_share_of_smtp_sessions(export, sink, start_responder):  # noqa: F811
    responder = await start_responder(export, sink.port)
    per_source = default_caps()[1]
    results = [await _greeting(responder.port, "127.0.0.7") for _ in range(per_source + 5)]
    greeted = [line for line, _ in results if line.startswith(b"220")]
    refused = [line for line, _ in results if line == b""]
    assert len(greeted) == per_source and len(refused) == 5
    line, writer = await _greeting(responder.port, "127.0.0.1")
    assert line.startswith(b"220")
    for _, w in results + [(line, writer)]:
        w.close()
