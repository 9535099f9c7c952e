"""Builders shared by many tests: keys, a valid server.json mapping, server entries."""

from __future__ import annotations

import functools

import asyncssh

from onehop.core.serverentry import ServerEntry

# Any base64 text will do where the code under test never decodes the host key.
DUMMY_HOST_KEY = "AAAAB3NzaC1yc2EAAAADAQABAAABAQ=="


@functools.cache
def rsa_private_pem() -> str:
    return asyncssh.generate_private_key("ssh-rsa", 2048).export_private_key("pkcs1-pem").decode("ascii")


@functools.cache
def ed25519_private_pem() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh").decode("ascii")


def valid_server_config(**overrides) -> dict:
    """A server.json mapping that parse_server_config accepts; ``None`` removes a key."""
    raw = {
        "ServerIPAddress": "198.51.100.7",
        "TunnelProtocolPorts": {"OSSH": 443, "SSH": 22},
        "SSHPrivateKey": rsa_private_pem(),
        "SSHUserName": "onehop_0011223344556677",
        "SSHPassword": "aa" * 32,
        "ObfuscatedSSHKey": "bb" * 32,
        "WebServerSecret": "cc" * 32,
    }
    for key, value in overrides.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def make_entry(ip: str, *, capabilities=("OSSH", "SSH", "ssh-api-requests"), ssh_port: int | None = 22,
               ossh_port: int | None = 443, region: str = "", disable_ossh_prefix: bool = False,
               **extra) -> ServerEntry:
    fields = {
        "ipAddress": ip,
        "sshUsername": "user",
        "sshPassword": "secret",
        "sshHostKey": DUMMY_HOST_KEY,
        "sshObfuscatedKey": "ab" * 32,
        "capabilities": list(capabilities),
        "webServerSecret": "cd" * 32,
        **extra,
    }
    if ssh_port:
        fields["sshPort"] = ssh_port
    if ossh_port:
        fields["sshObfuscatedPort"] = ossh_port
    if region:
        fields["region"] = region
    if disable_ossh_prefix:
        fields["disableOSSHPrefix"] = True
    return ServerEntry(fields)


def problem_keys(error) -> list[str]:
    return sorted(p.key for p in error.problems)
