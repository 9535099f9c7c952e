"""Fixtures for end-to-end tests: real servers and clients on loopback sockets."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core.serverentry import ServerEntry, decode_server_entry
from onehop.demo import serve_page
from onehop.server.config import parse_server_config
from onehop.server.generate import generate_server
from onehop.server.service import TunnelServer
from tests.helpers.net import free_port, start_echo_server
from tests.helpers.waiting import wait_until


@dataclass
class RunningServer:
    server: TunnelServer
    entry: ServerEntry
    config: dict


class Network:
    """Starts servers on distinct 127.0.0.x addresses and stops them all afterwards."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[RunningServer] = []
        self._next_ip = 10

    async def add(self, *, ossh: bool = True, ssh: bool = True, allow_bogons: bool = True,
                  region: str = "", handshake_timeout_ms: int | None = None, **extra) -> RunningServer:
        ip = f"127.0.0.{self._next_ip}"
        self._next_ip += 1
        generated = generate_server(ip, ossh_port=free_port(ip) if ossh else None,
                                    ssh_port=free_port(ip) if ssh else None,
                                    allow_bogons=allow_bogons, region=region)
        # One key-derivation worker per server: the production path, at a small cost.
        config = dict(generated.config, OSSHKeyDerivationWorkers=1, **extra)
        if handshake_timeout_ms is not None:
            config["SSHHandshakeTimeoutMilliseconds"] = handshake_timeout_ms
        server = TunnelServer(parse_server_config(config, "test", str(self.tmp_path)))
        await server.start()
        running = RunningServer(server, decode_server_entry(generated.encoded_entry), config)
        self.servers.append(running)
        return running

    async def close(self) -> None:
        for running in self.servers:
            await running.server.stop()


@pytest.fixture
async def network(tmp_path):
    net = Network(tmp_path)
    yield net
    await net.close()


class NoticeLog:
    def __init__(self) -> None:
        self.notices = Notices(None)
        self.seen: list[dict] = []
        self.notices.subscribe(self.seen.append)

    def of_type(self, notice_type: str) -> list[dict]:
        return [n for n in self.seen if n["noticeType"] == notice_type]


@pytest.fixture
def notice_log():
    return NoticeLog()


@pytest.fixture
async def make_client(tmp_path, notice_log):
    controllers: list[Controller] = []
    tasks: list[asyncio.Task] = []

    async def start(entries, wait_for_tunnel: bool = True, **overrides) -> Controller:
        config = ClientConfig(data_dir=str(tmp_path / f"client{len(controllers)}"), socks_port=0,
                              http_port=0, **{"tunnel_connect_timeout": 5.0, "establish_pause": 0.2,
                                              **overrides})
        controller = Controller(config, MemoryStore(entries), notice_log.notices)
        controllers.append(controller)
        await controller.start_proxies()
        tasks.append(asyncio.get_running_loop().create_task(controller.run()))
        if wait_for_tunnel:
            await wait_until(lambda: controller.active is not None, 20)
        return controller

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for controller in controllers:
        await controller.close()


@pytest.fixture
async def page():
    body = os.urandom(300 * 1024)
    server, port = await serve_page(body)
    yield body, port
    server.close()


@pytest.fixture
async def echo_server():
    server, port = await start_echo_server()
    yield port
    server.close()
