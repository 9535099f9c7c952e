"""server.json: the server's configuration, validated once into a frozen dataclass.

Key names follow Psiphon's server configuration where one exists (ServerIPAddress,
TunnelProtocolPorts, SSHPrivateKey, SSHUserName, SSHPassword, ObfuscatedSSHKey,
AllowBogons, SSHHandshakeTimeoutMilliseconds, PsinetDatabaseFilename,
GeoIPDatabaseFilenames, TrafficRulesFilename, UDPInterceptUdpgwServerAddress,
DNSResolverIPAddress, LogFilename, HostID, ...). DNSResolverIPAddress may carry a port
("IP:PORT", an onehop extension for tests); UDPInterceptUdpgwServerAddress "" turns UDP off.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from ..core.api.protocols import SERVER_PROTOCOLS
from ..core.ossh.prefix import DEFAULT_SERVER_PREFIX_SPECS, prefix_specs_problem

from ..configtools import Checker, ip_check, nonempty_check, port_check, positive_check, read_json_file

#: Where clients send udpgw; Psiphon's generate uses the same address.
DEFAULT_UDPGW_ADDRESS = ("127.0.0.1", 7300)
DNS_PORT = 53
MAX_WORKERS = 256


@dataclass(frozen=True)
class ServerConfig:
    server_ip_address: str
    listen_ip_address: str
    tunnel_protocol_ports: dict[str, int]
    ssh_private_key: str
    ssh_username: str
    ssh_password: str
    obfuscated_ssh_key: str
    web_server_secret: str
    ssh_server_version: str | None = None
    allow_bogons: bool = False
    handshake_timeout: float = 30.0
    allow_tcp_ports: tuple[int, ...] = ()
    disallow_tcp_ports: tuple[int, ...] = ()
    psinet_database_filename: str | None = None
    own_encoded_server_entries: dict[str, str] = field(default_factory=dict)
    log_filename: str | None = None
    host_id: str = ""
    discovery_value_hmac_key: str = ""
    geoip_database_filenames: tuple[str, ...] = ()
    traffic_rules_filename: str | None = None
    udpgw_server_address: tuple[str, int] | None = DEFAULT_UDPGW_ADDRESS
    dns_resolver_address: tuple[str, int] | None = None  # None: first nameserver of resolv.conf
    ossh_prefix_specs: dict[str, str] = field(default_factory=dict)  # spec name -> reply pattern
    ossh_key_workers: int = 0  # worker processes for OSSH key derivation; 0: on the event loop
    max_concurrent_handshakes: int = 0  # connections still in their handshake; 0: from RLIMIT_NOFILE
    max_concurrent_handshakes_per_source: int = 0  # the same per client IP address; 0: from the total
    workers: int = 1  # processes serving the ports (`onehop server run`); server.json's default: one per core
    worker_heartbeat_timeout: int = 60  # seconds of silence after which a worker counts as hung; 0: never
    base_dir: str = "."

    def path(self, name: str) -> str:
        """Resolve a file name relative to the config file's directory."""
        return name if os.path.isabs(name) else os.path.join(self.base_dir, name)

    def host_key(self) -> asyncssh.SSHKey:
        return asyncssh.import_private_key(self.ssh_private_key)


def _ports_check(value: dict) -> str | None:
    if not value:
        return "at least one protocol port is required"
    for name, port in value.items():
        if name not in SERVER_PROTOCOLS:
            return f"unsupported protocol {name!r} (supported: {', '.join(SERVER_PROTOCOLS)})"
        if isinstance(port, bool) or not isinstance(port, int) or port_check(port):
            return f"port for {name} must be an integer between 1 and 65535"
    if len(set(value.values())) != len(value):
        return "each protocol needs its own port"
    return None


def _key_check(value: str) -> str | None:
    try:
        key = asyncssh.import_private_key(value)
    except (asyncssh.KeyImportError, ValueError) as exc:
        return f"not a usable private key ({exc})"
    return None if key.algorithm == b"ssh-rsa" else "must be an RSA key (Psiphon clients pin ssh-rsa)"


def _port_list_check(value: list) -> str | None:
    bad = [p for p in value if isinstance(p, bool) or not isinstance(p, int) or port_check(p)]
    return f"not port numbers: {bad}" if bad else None


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int] | None:
    """(ip, port) from "IP:PORT", "[IPv6]:PORT" or, with ``default_port``, a bare IP."""
    host, port = text, default_port
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else (None if rest else default_port)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text) if port_text.isdigit() else None
    if ip_check(host) or port is None or port_check(port):
        return None
    return host, port


def _udpgw_check(value: str) -> str | None:
    if value == "" or parse_host_port(value):
        return None
    return "must be IP:PORT (or empty to turn UDP off)"


def _resolver_check(value: str) -> str | None:
    return None if parse_host_port(value, DNS_PORT) else "must be an IP address (optionally IP:PORT)"


def _filenames_check(value: list) -> str | None:
    return None if all(isinstance(v, str) and v for v in value) else "must be a list of file names"


def parse_server_config(raw: dict, source: str = "", base_dir: str = ".") -> ServerConfig:
    """Validate ``raw``; raise ConfigError listing every problem."""
    c = Checker(raw, source)
    ip = c.take("ServerIPAddress", str, check=ip_check)
    values = dict(
        server_ip_address=ip,
        listen_ip_address=c.take("ListenIPAddress", str, ip, ip_check),
        tunnel_protocol_ports=c.take("TunnelProtocolPorts", dict, check=_ports_check),
        ssh_private_key=c.take("SSHPrivateKey", str, check=_key_check),
        ssh_username=c.take("SSHUserName", str, check=nonempty_check),
        ssh_password=c.take("SSHPassword", str, check=nonempty_check),
        obfuscated_ssh_key=c.take("ObfuscatedSSHKey", str, check=nonempty_check),
        web_server_secret=c.take("WebServerSecret", str, check=nonempty_check),
        ssh_server_version=c.take("SSHServerVersion", str, None),
        allow_bogons=c.take("AllowBogons", bool, False),
        handshake_timeout=c.take("SSHHandshakeTimeoutMilliseconds", int, 30000, positive_check) / 1000.0,
        allow_tcp_ports=tuple(c.take("AllowTCPPorts", list, [], _port_list_check)),
        disallow_tcp_ports=tuple(c.take("DisallowTCPPorts", list, [], _port_list_check)),
        psinet_database_filename=c.take("PsinetDatabaseFilename", str, None),
        own_encoded_server_entries=c.take("OwnEncodedServerEntries", dict, {}),
        log_filename=c.take("LogFilename", str, None),
        host_id=c.take("HostID", str, ""),
        discovery_value_hmac_key=c.take("DiscoveryValueHMACKey", str, ""),
        geoip_database_filenames=tuple(c.take("GeoIPDatabaseFilenames", list, [], _filenames_check)),
        traffic_rules_filename=c.take("TrafficRulesFilename", str, None, nonempty_check),
        ossh_prefix_specs={**DEFAULT_SERVER_PREFIX_SPECS,
                           **c.take("ServerOSSHPrefixSpecs", dict, {}, prefix_specs_problem)},
        ossh_key_workers=c.take("OSSHKeyDerivationWorkers", int, os.cpu_count() or 1,
                                lambda v: None if 0 <= v <= 64 else "must be between 0 and 64"),
        max_concurrent_handshakes=c.take("MaxConcurrentSSHHandshakes", int, 0, _cap_check),
        max_concurrent_handshakes_per_source=c.take("MaxConcurrentSSHHandshakesPerClient", int, 0, _cap_check),
        workers=c.take("Workers", int, usable_cores(), workers_problem),
        worker_heartbeat_timeout=c.take("WorkerHeartbeatTimeoutSeconds", int, 60,
                                        lambda v: None if 0 <= v <= 86400 else "must be between 0 (never) and 86400"),
    )
    udpgw = c.take("UDPInterceptUdpgwServerAddress", str, None, _udpgw_check)
    values["udpgw_server_address"] = DEFAULT_UDPGW_ADDRESS if udpgw is None else parse_host_port(udpgw)
    resolver = c.take("DNSResolverIPAddress", str, None, _resolver_check)
    values["dns_resolver_address"] = parse_host_port(resolver, DNS_PORT) if resolver else None
    c.reject_unknown()
    c.raise_if_problems()
    return ServerConfig(**values, base_dir=base_dir)


def usable_cores() -> int:
    """The cores this process may run on (as ``taskset`` or a cgroup's cpuset leaves them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def workers_problem(value: int) -> str | None:
    return None if 1 <= value <= MAX_WORKERS else f"must be between 1 and {MAX_WORKERS}"


def _cap_check(value: int) -> str | None:
    return None if 0 <= value <= 1_000_000 else "must be between 0 (automatic) and 1000000"


def load_server_config(path: str | os.PathLike) -> ServerConfig:
    raw = read_json_file(path)
    return parse_server_config(raw, str(path), str(Path(path).resolve().parent))


def server_config_to_json(config_fields: dict) -> str:
    return json.dumps(config_fields, indent=2, sort_keys=False) + "\n"
