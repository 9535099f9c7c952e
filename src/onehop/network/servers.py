"""Adding servers: every secret generated (through ``onehop.server.generate``), a
readable ID allocated, duplicate IPs and port clashes refused.

A server without a discovery window is embedded in its channel's builds and lists;
``--discovery-days N`` makes it a discovery server instead (window [now, now+N days),
never embedded); ``--permanent`` keeps an embedded server embedded when its channel
is replaced and puts it in other channels' embedded lists too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..configtools import ip_check
from ..core.serverentry import decode_server_entry
from ..errors import ConfigError, ConfigProblem
from ..server.generate import generate_server
from . import audit, ids
from .errors import Conflict
from .models import Channel, Host, Server

DEFAULT_OSSH_PORT = 443
MAX_DISCOVERY_DAYS = 3650


@dataclass(frozen=True)
class ServerSecrets:
    """What ``onehop server generate`` makes for one server."""

    ssh_private_key: str   # PEM, RSA 2048
    ssh_host_key: str      # base64 SSH wire form of the public key, as entries carry it
    ssh_username: str
    ssh_password: str
    obfuscated_ssh_key: str
    web_server_secret: str
    capabilities: tuple[str, ...]


SecretsFactory = Callable[[str, "int | None", "int | None"], ServerSecrets]


def generated_secrets(ip: str, ossh_port: int | None, ssh_port: int | None) -> ServerSecrets:
    generated = generate_server(ip, ossh_port=ossh_port, ssh_port=ssh_port)
    config, entry = generated.config, decode_server_entry(generated.encoded_entry)
    return ServerSecrets(config["SSHPrivateKey"], entry.ssh_host_key, config["SSHUserName"],
                         config["SSHPassword"], config["ObfuscatedSSHKey"], config["WebServerSecret"],
                         tuple(entry.capabilities))


@dataclass(frozen=True)
class ServerSpec:
    """What the operator asked for (validated by :func:`spec_problems`)."""

    ip: str | None = None
    listen_ip: str | None = None
    ossh_port: int | None = DEFAULT_OSSH_PORT
    ssh_port: int | None = None
    discovery_days: int | None = None
    permanent: bool = False
    allow_bogons: bool = False


def spec_problems(spec: ServerSpec) -> list[ConfigProblem]:
    problems = []
    for key, port in (("--ossh-port", spec.ossh_port), ("--ssh-port", spec.ssh_port)):
        if port is not None and not 1 <= port <= 65535:
            problems.append(ConfigProblem(key, "must be a port number between 1 and 65535"))
    if spec.ossh_port is None and spec.ssh_port is None:
        problems.append(ConfigProblem("--ossh-port", "serve at least one of OSSH and SSH"))
    elif spec.ossh_port and spec.ossh_port == spec.ssh_port:
        problems.append(ConfigProblem("--ssh-port", "must differ from --ossh-port"))
    for key, value in (("--ip", spec.ip), ("--listen-ip", spec.listen_ip)):
        if value is not None and ip_check(value):
            problems.append(ConfigProblem(key, "not an IP address"))
    if spec.discovery_days is not None and not 1 <= spec.discovery_days <= MAX_DISCOVERY_DAYS:
        problems.append(ConfigProblem("--discovery-days", f"must be between 1 and {MAX_DISCOVERY_DAYS}"))
    if spec.permanent and spec.discovery_days is not None:
        problems.append(ConfigProblem("--permanent", "only embedded servers can be permanent"))
    return problems


def ports_of(ossh_port: int | None, ssh_port: int | None) -> set[int]:
    return {p for p in (ossh_port, ssh_port) if p}


def check_conflicts(session: Session, host: Host, ip: str, listen_ip: str, ports: set[int]) -> None:
    """Refuse an IP another live server has, and ports already used on the same address."""
    same_ip = session.scalars(select(Server).where(Server.ip_address == ip, Server.retired_at.is_(None))).first()
    if same_ip is not None:
        raise Conflict(f"server {same_ip.id} already uses this IP address")
    neighbours = session.scalars(select(Server).where(
        Server.host_id == host.id, Server.retired_at.is_(None),
        or_(Server.listen_ip_address == listen_ip, Server.ip_address == listen_ip))).all()
    for other in neighbours:
        clash = ports & ports_of(other.ossh_port, other.ssh_port)
        if clash:
            raise Conflict(f"port clash on host {host.name}: port {min(clash)} is used by server {other.id}")
    if listen_ip == host.ip_address and host.ssh_port in ports:
        raise Conflict(f"port clash on host {host.name}: port {host.ssh_port} is its management SSH port")


def allocate_id(session: Session, host: Host) -> str:
    while True:
        alias = ids.server_alias(host.name, host.next_server_number)
        host.next_server_number += 1
        if session.get(Server, alias) is None:
            return alias


def add_server(session: Session, ctx: audit.Context, host: Host, channel: Channel, spec: ServerSpec,
               secrets_factory: SecretsFactory = generated_secrets) -> Server:
    problems = spec_problems(spec)
    if problems:
        raise ConfigError(problems)
    session.refresh(host, with_for_update=True)  # serialises ID allocation per host
    ip = spec.ip or host.ip_address
    listen_ip = spec.listen_ip or ip
    check_conflicts(session, host, ip, listen_ip, ports_of(spec.ossh_port, spec.ssh_port))
    secrets = secrets_factory(ip, spec.ossh_port, spec.ssh_port)
    start = ctx.now if spec.discovery_days else None
    server = Server(
        id=allocate_id(session, host), host_id=host.id, channel_id=channel.id, ip_address=ip,
        listen_ip_address=spec.listen_ip, ossh_port=spec.ossh_port, ssh_port=spec.ssh_port,
        capabilities=list(secrets.capabilities), ssh_username=secrets.ssh_username,
        ssh_password=secrets.ssh_password, ssh_private_key=secrets.ssh_private_key,
        ssh_host_key=secrets.ssh_host_key, obfuscated_ssh_key=secrets.obfuscated_ssh_key,
        web_server_secret=secrets.web_server_secret, allow_bogons=spec.allow_bogons,
        is_embedded=spec.discovery_days is None, is_permanent=spec.permanent,
        discovery_start=start, discovery_end=(start + timedelta(days=spec.discovery_days)
                                                  if start is not None and spec.discovery_days is not None else None),
        created_at=ctx.now)
    session.add(server)
    session.flush()
    audit.record(session, ctx, "server.add", "server", [server.id, host.name, channel.id],
                 kind=server_kind(server), discovery_days=spec.discovery_days)
    return server


def server_kind(server: Server) -> str:
    """Embedded, permanent, discovery or propagation (an old, un-embedded one), or retired."""
    if server.retired_at is not None:
        return "retired"
    if server.discovery_start is not None:
        return "discovery"
    if server.is_embedded:
        return "permanent" if server.is_permanent else "embedded"
    return "propagation"


def list_servers(session: Session, channel: Channel | None = None, include_retired: bool = False) -> list[Server]:
    query = select(Server).order_by(Server.created_at, Server.id)
    if channel is not None:
        query = query.where(Server.channel_id == channel.id)
    if not include_retired:
        query = query.where(Server.retired_at.is_(None))
    return list(session.scalars(query))


def _stamp(value) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def server_dict(server: Server) -> dict:
    """The record without its secrets."""
    return {"id": server.id, "host": server.host.name, "channel": server.channel_id,
            "channel_name": server.channel.name, "region": server.host.region,
            "ip_address": server.ip_address, "listen_ip_address": server.listen_ip_address,
            "ossh_port": server.ossh_port, "ssh_port": server.ssh_port,
            "capabilities": list(server.capabilities), "kind": server_kind(server),
            "embedded": server.is_embedded, "permanent": server.is_permanent,
            "allow_bogons": server.allow_bogons,
            "discovery_start": _stamp(server.discovery_start), "discovery_end": _stamp(server.discovery_end),
            "created_at": _stamp(server.created_at), "retired_at": _stamp(server.retired_at)}


def server_ids_by_ip(session: Session) -> dict[str, str]:
    """{IP address: server ID} for every server ever (retired ones too), to replace server
    addresses in feedback; where an address was reused, its live (else newest) server wins."""
    rows = session.execute(select(Server.ip_address, Server.id, Server.retired_at, Server.created_at)).all()
    mapping: dict[str, str] = {}
    for ip, server_id, _, _ in sorted(rows, key=lambda r: (r[2] is None, r[3], r[1])):
        mapping[ip] = server_id
    return mapping
