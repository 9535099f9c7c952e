"""Per-server artefacts: the signed server entry and the server.json config.

The entry's fields come from ``onehop.server.generate.entry_fields`` (the same ones
``onehop server generate`` writes), plus the host's region and provider ID; the
entry is signed with the network's Ed25519 key and encoded in Psiphon's map form
(``encode_server_entry_fields``) so the signature covers every field.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from ..core.api.protocols import TunnelProtocol
from ..core.serverentry import encode_server_entry_fields, sign_server_entry
from ..server.generate import entry_fields
from .keys import NetworkKeys
from .state import ServerRecord

PSINET_FILENAME = "psinet.json"


@dataclass(frozen=True)
class _HostPublicKey:
    """Just what ``entry_fields`` reads from an SSH key: its public wire bytes."""

    public_data: bytes


def base_config(server: ServerRecord) -> dict:
    """The server.json keys that describe the server itself (secrets included)."""
    candidates = ((TunnelProtocol.OSSH, server.ossh_port), (TunnelProtocol.SSH, server.ssh_port))
    ports = {name: port for name, port in candidates if port}
    config = {
        "ServerIPAddress": server.ip_address,
        "TunnelProtocolPorts": ports,
        "SSHPrivateKey": server.ssh_private_key,
        "SSHUserName": server.ssh_username,
        "SSHPassword": server.ssh_password,
        "ObfuscatedSSHKey": server.obfuscated_ssh_key,
        "WebServerSecret": server.web_server_secret,
        "AllowBogons": server.allow_bogons,
        "HostID": server.host,
    }
    if server.listen_ip_address:
        config["ListenIPAddress"] = server.listen_ip_address
    return config


def unsigned_fields(server: ServerRecord) -> dict:
    key = _HostPublicKey(base64.b64decode(server.ssh_host_key))
    fields = entry_fields(base_config(server), key, server.region)
    if server.provider_id:
        fields["providerID"] = server.provider_id
    return fields


def signed_entry(server: ServerRecord, keys: NetworkKeys) -> tuple[str, str]:
    """(tag, encoded signed entry)."""
    fields = sign_server_entry(unsigned_fields(server), keys.server_entry.private_key)
    return fields["tag"], encode_server_entry_fields(fields)


@dataclass(frozen=True)
class EntryBook:
    """Every live server's tag and signed encoded entry, computed once per export."""

    tags: dict[str, str]        # server id -> tag
    encoded: dict[str, str]     # server id -> encoded signed entry

    @classmethod
    def build(cls, servers: Iterable[ServerRecord], keys: NetworkKeys) -> EntryBook:
        tags, encoded = {}, {}
        for server in servers:
            tags[server.id], encoded[server.id] = signed_entry(server, keys)
        return cls(tags, encoded)


def server_config(server: ServerRecord, book: EntryBook, keys: NetworkKeys) -> dict:
    """server.json as ``onehop server run --config`` reads it (mode 0600: secrets)."""
    config = base_config(server)
    config.update({
        "PsinetDatabaseFilename": PSINET_FILENAME,
        "OwnEncodedServerEntries": {book.tags[server.id]: book.encoded[server.id]},
        "DiscoveryValueHMACKey": keys.discovery_hmac.private_key,
    })
    return config
