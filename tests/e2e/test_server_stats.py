"""The server's stats events end to end: server_tunnel, unique_user, remote_server_list,
failed_tunnel and irregular_tunnel, each with the HostID and GeoIP names of the client,
and never the client's address in any file the server writes or any log line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket

import pytest

from onehop.client.candidates import MemoryStore
from onehop.client.config import ClientConfig
from onehop.client.controller import Controller
from onehop.client.notices import Notices
from onehop.core import api
from onehop.errors import OSSHReason, SSHReason
from tests.helpers.waiting import wait_until
from tests.e2e.proxyclient import http_get_via_socks
from tests.server.mmdb import city_record, isp_record, write_mmdb

pytestmark = pytest.mark.e2e

CLIENT_IP, PROBE_IP, SSH_PROBE_IP = "127.0.0.77", "127.0.0.78", "127.0.0.79"
HOST_ID = "host-0007"


def source_bound_opener(source_ip: str):
    async def open_socket(host: str, port: int) -> socket.socket:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source_ip, 0))
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return sock
    return open_socket


def events(path) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def named(path, name: str) -> list[dict]:
    return [e for e in events(path) if e["event_name"] == name]


def geoip_files(tmp_path) -> list[str]:
    city, isp = tmp_path / "city.mmdb", tmp_path / "isp.mmdb"
    write_mmdb(city, {"127.0.0.0/8": city_record("DE", "Berlin Mitte")})
    write_mmdb(isp, {"127.0.0.0/8": isp_record("Example ISP", 64500, "Example Org")},
               database_type="GeoIP2-ISP")
    return [str(city), str(isp)]


async def probe(source_ip: str, host: str, port: int, payload: bytes) -> None:
    def send() -> None:
        with socket.socket() as sock:
            sock.bind((source_ip, 0))
            sock.settimeout(5)
            sock.connect((host, port))
            sock.sendall(payload)
            try:
                sock.recv(100)
            except (TimeoutError, ConnectionError):
                pass
    await asyncio.to_thread(send)


async def send_status(controller: Controller, status_data: dict) -> None:
    params = {"propagation_channel_id": "ABCDEF0123456789", "sponsor_id": "0123456789ABCDEF",
              "client_version": "1", "client_platform": "Linux_onehop", "statusData": status_data}
    raw = await controller.active.client.api_request(api.REQUEST_STATUS,
                                                     api.encode_request_params(params, packed=True))
    api.decode_status_response(raw)


STATUS_DATA = {
    "remote_server_list_stats": [
        {"client_download_timestamp": "2026-03-04T05:06:07Z", "url": "https://s3.example/l",
         "etag": "e1", "bytes": "1000", "duration": "20", "tunneled": "1", "authenticated": "1"},
        {"url": "missing its timestamp"},
    ],
    "failed_tunnel_stats": [
        {"client_failed_timestamp": "2026-03-04T05:59:07Z", "session_id": "ab" * 16,
         "tunnel_error": f"read tcp {CLIENT_IP}:51000->203.0.113.9:443: reset", "last_connected": "None",
         "client_ip": CLIENT_IP},
    ],
}


async def test_events_carry_geoip_and_host_id_and_never_the_client_address(tmp_path, network, caplog, page):
    caplog.set_level(logging.DEBUG)
    log_path = tmp_path / "server-events.log"
    running = await network.add(LogFilename=str(log_path), HostID=HOST_ID,
                                GeoIPDatabaseFilenames=geoip_files(tmp_path), handshake_timeout_ms=1000)
    config = ClientConfig(data_dir=str(tmp_path / "client"), socks_port=0, http_port=0,
                          tunnel_connect_timeout=5.0, establish_pause=0.2, protocols=("OSSH",))
    controller = Controller(config, MemoryStore([running.entry]), Notices(None),
                            open_socket=source_bound_opener(CLIENT_IP))
    await controller.start_proxies()
    task = asyncio.get_running_loop().create_task(controller.run())
    try:
        await wait_until(lambda: controller.active is not None, 20)
        assert controller.active.handshake.client_region == "DE"
        assert controller.active.handshake.client_address.startswith(CLIENT_IP)  # told, not logged
        body, port = page
        assert await http_get_via_socks(controller.socks_port, "127.0.0.1", port) == body
        await wait_until(lambda: named(log_path, "unique_user"), 10)
        await send_status(controller, STATUS_DATA)
        await probe(PROBE_IP, running.entry.ip_address, running.entry.ssh_obfuscated_port, os.urandom(300))
        await probe(SSH_PROBE_IP, running.entry.ip_address, running.entry.ssh_port,
                    b"SSH-2.0-OpenSSH_9.6\r\n" + b"\x00\x00\x00\x0c\x0a" + os.urandom(64))
        await wait_until(lambda: len(named(log_path, "irregular_tunnel")) == 2, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await controller.close()
    await wait_until(lambda: named(log_path, "server_tunnel"), 10)
    await running.server.stop()

    everything = events(log_path)
    assert {e["event_name"] for e in everything} == {
        "server_tunnel", "unique_user", "remote_server_list", "failed_tunnel", "irregular_tunnel"}
    assert all(e["host_id"] == HOST_ID for e in everything)
    geo = {"client_region": "DE", "client_city": "Berlin_Mitte", "client_isp": "Example_ISP",
           "client_asn": "64500", "client_aso": "Example_Org"}
    assert all(e.items() >= geo.items() for e in everything)

    (tunnel,) = named(log_path, "server_tunnel")
    assert tunnel["relay_protocol"] == "OSSH" and tunnel["handshake_completed"] is True
    assert tunnel["sponsor_id"] == "0000000000000000" and tunnel["client_version"] == 1
    assert tunnel["client_platform"] == "Linux_onehop" and tunnel["propagation_channel_id"] == "0000000000000000"
    assert tunnel["bytes_down"] >= len(body) and tunnel["bytes_up"] > 0 and tunnel["duration"] > 0
    assert tunnel["total_port_forward_count_tcp"] == 1 and tunnel["client_stats_logged"] == 2
    assert tunnel["start_time"].endswith("Z")
    (user,) = named(log_path, "unique_user")
    assert user["last_connected"] == "None" and user["sponsor_id"] == "0000000000000000"
    (rsl,) = named(log_path, "remote_server_list")
    assert rsl["client_download_timestamp"] == "2026-03-04T05:00:00Z" and rsl["bytes"] == 1000
    (failed,) = named(log_path, "failed_tunnel")
    assert failed["client_failed_timestamp"] == "2026-03-04T05:00:00Z" and "client_ip" not in failed
    assert failed["tunnel_error"] == "read tcp [ip]:51000->[ip]:443: reset"
    assert failed["sponsor_id"] == "0000000000000000"  # inherited from the reporting tunnel
    irregular = sorted(named(log_path, "irregular_tunnel"), key=lambda e: e["listener_protocol"])
    assert [e["listener_protocol"] for e in irregular] == ["OSSH", "SSH"]
    assert irregular[0]["tunnel_error"] in set(OSSHReason) and irregular[1]["tunnel_error"] in set(SSHReason)

    addresses = (CLIENT_IP, PROBE_IP, SSH_PROBE_IP)
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            assert not any(a.encode() in data for a in addresses), f"a client address is in {name}"
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "irregular OSSH connection" in logged  # logging did happen
    assert not any(a in logged for a in addresses)


async def test_irregular_ossh_connections_are_reported_once_each(tmp_path, network):
    log_path = tmp_path / "events.log"
    running = await network.add(LogFilename=str(log_path), handshake_timeout_ms=300)
    host, port = running.entry.ip_address, running.entry.ssh_obfuscated_port

    def connect_and(action) -> None:
        with socket.socket() as sock:
            sock.settimeout(3)
            sock.connect((host, port))
            action(sock)

    def wait_for_close(sock) -> None:
        sock.sendall(b"\x01" * 10)  # part of a seed, then nothing: the deadline passes
        sock.recv(10)

    await asyncio.to_thread(connect_and, lambda sock: None)                  # a port scan: not reported
    await asyncio.to_thread(connect_and, lambda sock: sock.sendall(b"\x02" * 10))  # closes early
    await asyncio.to_thread(connect_and, wait_for_close)
    await wait_until(lambda: len(named(log_path, "irregular_tunnel")) == 2, 5)
    await asyncio.sleep(0.5)
    reasons = sorted(e["tunnel_error"] for e in named(log_path, "irregular_tunnel"))
    assert reasons == ["handshake_timeout", "incomplete_preamble"]
    assert all(e["client_region"] == "None" for e in named(log_path, "irregular_tunnel"))  # no GeoIP files
