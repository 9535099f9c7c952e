"""``onehop server generate``: a new server's secrets, config and encoded entry.

Every secret is generated here: the RSA host key (2048 bits, as Psiphon clients pin
ssh-rsa), SSH username and password, the OSSH obfuscation keyword and the web server
secret (used only to derive the entry's tag).
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Protocol
from pathlib import Path

import asyncssh

from ..core.api.names import CAPABILITY_SSH_API_REQUESTS
from ..core.api.protocols import SERVER_PROTOCOLS
from ..core.api.protocols import TunnelProtocol as P
from ..core.serverentry import derive_tag, encode_server_entry
from ..atomicfile import open_directory_warning, private_directory, replace_file
from ..errors import ConfigError, ConfigProblem
from .config import parse_server_config, server_config_to_json

DEFAULT_OSSH_PORT = 443


@dataclass(frozen=True)
class GeneratedServer:
    config: dict
    encoded_entry: str


class HasPublicData(Protocol):
    """What ``entry_fields`` reads of an SSH key: its public key in SSH wire format."""

    @property
    def public_data(self) -> bytes: ...


def generate_server(ip: str, *, ossh_port: int | None = DEFAULT_OSSH_PORT, ssh_port: int | None = None,
                    allow_bogons: bool = False, region: str = "", host_id: str = "",
                    psinet_filename: str | None = None, log_filename: str | None = None) -> GeneratedServer:
    """Generate secrets and build server.json fields plus the server's encoded entry."""
    if not ossh_port and not ssh_port:
        raise ConfigError([ConfigProblem("ports", "serve at least one of OSSH and SSH")])
    key = asyncssh.generate_private_key("ssh-rsa", key_size=2048)
    ports = {name: port for name, port in ((P.OSSH, ossh_port), (P.SSH, ssh_port)) if port}
    config = {
        "ServerIPAddress": ip,
        "TunnelProtocolPorts": ports,
        "SSHPrivateKey": key.export_private_key("pkcs1-pem").decode("ascii"),
        "SSHUserName": "onehop_" + secrets.token_hex(8),
        "SSHPassword": secrets.token_hex(32),
        "ObfuscatedSSHKey": secrets.token_hex(32),
        "WebServerSecret": secrets.token_hex(32),
        "AllowBogons": allow_bogons,
        "HostID": host_id,
    }
    if psinet_filename:
        config["PsinetDatabaseFilename"] = psinet_filename
    if log_filename:
        config["LogFilename"] = log_filename
    parse_server_config(config, "generated")  # our own output must validate
    return GeneratedServer(config, encode_server_entry(entry_fields(config, key, region)))


def entry_fields(config: dict, key: HasPublicData, region: str = "") -> dict:
    """The server entry Psiphon clients need: ports, credentials, host key, capabilities."""
    ports = config["TunnelProtocolPorts"]
    fields = {
        "ipAddress": config["ServerIPAddress"],
        "webServerSecret": config["WebServerSecret"],
        "sshUsername": config["SSHUserName"],
        "sshPassword": config["SSHPassword"],
        "sshHostKey": base64.b64encode(key.public_data).decode("ascii"),
        "sshObfuscatedKey": config["ObfuscatedSSHKey"],
        "capabilities": [p for p in SERVER_PROTOCOLS if p in ports] + [CAPABILITY_SSH_API_REQUESTS],
        "tag": derive_tag(config["ServerIPAddress"], config["WebServerSecret"]),
    }
    if P.SSH in ports:
        fields["sshPort"] = ports[P.SSH]
    if P.OSSH in ports:
        fields["sshObfuscatedPort"] = ports[P.OSSH]
    if region:
        fields["region"] = region
    return fields


def write_server_dir(out_dir: str | os.PathLike, generated: GeneratedServer,
                     force: bool = False) -> tuple[Path, Path]:
    """Write DIR/server.json (mode 0600: it holds secrets) and DIR/server-entry.dat.

    A directory that already holds a server.json is refused unless ``force``: new secrets
    would silently break every server entry already handed out.
    """
    out = Path(out_dir)
    config_path, entry_path = out / "server.json", out / "server-entry.dat"
    if config_path.exists() and not force:
        raise ConfigError([ConfigProblem("--out", (
            f"{config_path} already exists; replacing it makes new keys and passwords, and every "
            "server entry already handed out for this server stops working (--force to replace it)"))])
    if not private_directory(out):
        logging.getLogger(__name__).warning(open_directory_warning(out, "a server's secrets (server.json)"))
    replace_file(config_path, server_config_to_json(generated.config).encode("utf-8"), mode=0o600)
    replace_file(entry_path, (generated.encoded_entry + "\n").encode("ascii"), mode=0o644)
    return config_path, entry_path

