"""One candidate, one attempt: dial a server entry with a protocol and run the handshake.

All per-dial randomness (OSSH seed, padding seed, prefix seed, SSH version string,
request padding) is drawn here and handed to the pure layers below.
"""

from __future__ import annotations

import base64
import os
import random
import time
from dataclasses import dataclass
from collections.abc import Awaitable, Callable

from asyncssh.public_key import KeyImportError, decode_ssh_public_key

from ..core import api
from ..core.api import HandshakeParams, HandshakeResponse, RequestParams, SSHPasswordPayload, TunnelProtocol
from ..core.ossh import PrefixSpec
from ..core.serverentry import ServerEntry, has_ssh_api_requests, supported_protocols
from ..errors import RemoteProtocolError, TunnelError
from ..tunnel.algorithms import openssh_version
from ..tunnel.client import DialTarget, ObfuscationParams, SocketOpener, TunnelClient, open_tunnel
from .config import ClientConfig, prefix_patterns

_rng = random.SystemRandom()


def protocols_for(entry: ServerEntry, allowed: tuple[str, ...]) -> list[TunnelProtocol]:
    """Protocols the entry supports and the user allows (OSSH-PREFIX rides on OSSH)."""
    offered = supported_protocols(entry)
    choices = [TunnelProtocol(p) for p in allowed if p in offered]
    if (TunnelProtocol.OSSH_PREFIX in allowed and TunnelProtocol.OSSH in offered
            and not entry.disable_ossh_prefix):
        choices.append(TunnelProtocol.OSSH_PREFIX)
    return choices


def uses_packed_api(entry: ServerEntry, config: ClientConfig) -> bool:
    """Packed CBOR API payloads, as Psiphon's client: where the entry supports SSH API
    requests, unless ``TargetAPIEncoding`` asks for JSON."""
    return has_ssh_api_requests(entry) and config.api_encoding != "json"


@dataclass
class EstablishedTunnel:
    """A tunnel that completed SSH and the API handshake."""

    entry: ServerEntry
    protocol: str
    client: TunnelClient
    handshake: HandshakeResponse
    dial_duration: float
    candidate_number: int
    packed_api: bool = True  # every request of this tunnel uses the handshake's encoding

    @property
    def diagnostic_id(self) -> str:
        return self.entry.diagnostic_id


def _dial_target(entry: ServerEntry, protocol: str, password: str, config: ClientConfig) -> DialTarget:
    try:
        host_key = decode_ssh_public_key(base64.b64decode(entry.ssh_host_key))
    except (KeyImportError, ValueError):
        raise TunnelError("server-entry", "the entry's sshHostKey is not a usable SSH key") from None
    obfuscation = None
    port = entry.ssh_port
    if TunnelProtocol(protocol).obfuscated:
        port = entry.ssh_obfuscated_port
        prefix = None
        if protocol == TunnelProtocol.OSSH_PREFIX:
            prefix = PrefixSpec(config.ossh_prefix_spec, prefix_patterns(config)[config.ossh_prefix_spec])
        obfuscation = ObfuscationParams(entry.ssh_obfuscated_key, os.urandom(16), os.urandom(32),
                                        prefix, os.urandom(32) if prefix else None,
                                        config.ossh_prefix_split_delay)
    assert port, "protocol chosen without a port"
    return DialTarget(entry.ip_address, port, entry.ssh_username, password, host_key,
                      openssh_version(), obfuscation)


def handshake_params(config: ClientConfig, entry: ServerEntry, protocol: TunnelProtocol,
                     target: DialTarget, tunnel: TunnelClient, candidate_number: int,
                     dial_duration: float, established_tunnels: int) -> HandshakeParams:
    prefix = target.obfuscation.prefix if target.obfuscation else None
    return HandshakeParams(
        **api.base_fields(base_params(config)),
        relay_protocol=TunnelProtocol(protocol).relay_protocol.value,
        ssh_client_version="SSH-2.0-" + target.client_version,
        dial_port_number=str(target.port),
        candidate_number=str(candidate_number),
        established_tunnels_count=str(established_tunnels),
        is_replay="0",
        dial_duration=str(int(dial_duration * 1000)),
        psiphon_api_response_version=api.API_RESPONSE_VERSION_CBOR,
        pad_response=str(_rng.randint(0, 256)),
        padding=" " * _rng.randint(0, 256),
        upstream_ossh_padding=_str_or_none(tunnel.upstream_ossh_padding),
        ossh_prefix=prefix.name if prefix else None,
        egress_region=config.egress_region or None,
        split_tunnel="1" if config.split_tunnel_own_region else None,
        split_tunnel_regions=tuple(config.split_tunnel_regions) or None,
        server_entry_region=entry.region or None,
        server_entry_source=entry.local_source or None,
        server_entry_timestamp=entry.local_timestamp[:13] + ":00:00Z" if entry.local_timestamp else None,
        # an entry without a signature: ask for the signed copy
        missing_server_entry_signature=entry.tag if entry.tag and not entry.signature else None,
        upstream_proxy_type=config.upstream_proxy.scheme if config.upstream_proxy is not None else None,
    )


def base_params(config: ClientConfig) -> RequestParams:
    """Parameters every request carries (the session ID travels in the SSH password)."""
    return RequestParams(propagation_channel_id=config.propagation_channel_id.upper(),
                         sponsor_id=config.sponsor_id.upper(),
                         client_version=config.client_version,
                         client_platform=config.client_platform)


def _str_or_none(value: int | None) -> str | None:
    return None if value is None else str(value)


async def dial(entry: ServerEntry, protocol: str, config: ClientConfig, session_id: str,
               open_socket: SocketOpener, *, candidate_number: int = 0,
               established_tunnels: int = 0,
               on_connecting: Callable[[], Awaitable[None] | None] | None = None) -> EstablishedTunnel:
    """Dial ``entry`` with ``protocol``, authenticate and complete the API handshake."""
    password = api.encode_ssh_password(SSHPasswordPayload(
        session_id, entry.ssh_password, (), config.sponsor_id.upper()))
    target = _dial_target(entry, protocol, password, config)
    started = time.monotonic()
    client = await open_tunnel(target, open_socket, timeout=config.tunnel_connect_timeout,
                               keepalive_interval=config.keepalive_interval)
    try:
        duration = time.monotonic() - started
        params = handshake_params(config, entry, TunnelProtocol(protocol), target, client, candidate_number,
                                  duration, established_tunnels)
        packed = uses_packed_api(entry, config)
        payload = params.encode(packed=packed)
        response = await client.api_request(api.REQUEST_HANDSHAKE, payload)
        try:
            handshake = api.decode_handshake_response(response)
        except RemoteProtocolError as exc:
            raise TunnelError("handshake", f"unreadable handshake response: {exc.reason}") from None
    except BaseException:
        client.close()
        raise
    return EstablishedTunnel(entry, protocol, client, handshake, duration, candidate_number, packed)
