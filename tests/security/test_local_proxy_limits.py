"""Issue 18 item 9: the local SOCKS/HTTP proxies bound idle and concurrent connections.

Before the fix a local program could open hundreds of connections, send nothing and
hold them (600 held 45 s in the review); running out of descriptors then printed an
asyncio traceback on every accept retry.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.candidates import MemoryStore
from onehop.client.notices import Notices


def _config(tmp_path, **overrides) -> ClientConfig:
    values = dict(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0,
                  local_proxy_request_timeout=0.5, local_proxy_max_connections=5)
    values.update(overrides)
    return ClientConfig(**values)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(100), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.fixture
async def controller(tmp_path):
    controller = Controller(_config(tmp_path), MemoryStore(), Notices(None))
    await controller.start_proxies()
    yield controller
    await controller.close()


@pytest.mark.parametrize("kind", ["socks", "http"])
async def test_a_connection_that_never_sends_a_request_is_closed(controller, kind):
    port = controller.socks_port if kind == "socks" else controller.http_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if kind == "http":
        writer.write(b"GET http://example.com/ HTTP/1.1\r\n")  # an incomplete request head
    started = time.monotonic()
    assert await _closed_within(reader, 5)
    assert time.monotonic() - started < 3
    writer.close()


@pytest.mark.parametrize("kind", ["socks", "http"])
async def test_connections_over_the_cap_are_closed_at_once(controller, kind):
    port = controller.socks_port if kind == "socks" else controller.http_port
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    await asyncio.sleep(0.05)
    extra_reader, extra_writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed_within(extra_reader, 0.4)  # before the request timeout could act
    for _reader, writer in held:
        writer.close()
    extra_writer.close()
    await asyncio.sleep(0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # room again
    assert not await _closed_within(reader, 0.2)
    writer.close()


SERVER = textwrap.dedent("""
    import asyncio, resource, socket, sys
    from onehop.client.config import ClientConfig
    from onehop.client.controller import Controller
    from onehop.client.candidates import MemoryStore
    from onehop.client.notices import Notices

    async def main():
        config = ClientConfig(data_dir=sys.argv[1], socks_port=0, http_port=0,
                              local_proxy_request_timeout=30.0, local_proxy_max_connections=1000)
        controller = Controller(config, MemoryStore(), Notices(sys.stdout))
        await controller.start_proxies()
        hold = []
        while True:  # use up every descriptor but a few
            try:
                hold.append(socket.socket())
            except OSError:
                break
        for s in hold[-3:]:
            s.close()
        print("READY", controller.socks_port, flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        await controller.close()

    resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    asyncio.run(main())
""")


async def test_running_out_of_descriptors_is_one_line_not_tracebacks(tmp_path):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, str(tmp_path / "client"), "3.5",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, (await proc.stderr.read()).decode()
        lines.append(line)
        if line.startswith("READY"):
            break
    port = int(line.split()[1])
    clients = []
    for _ in range(20):
        try:
            clients.append(await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2))
        except (TimeoutError, OSError):
            break
        await asyncio.sleep(0.05)
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    for _, writer in clients:
        writer.close()
    out, err = out.decode(), err.decode()
    assert "Traceback" not in err and "out of system resource" not in err, err
    said = [line for line in out.splitlines() if "descriptors" in line]
    assert len(said) == 1, out
    assert proc.returncode == 0, err
