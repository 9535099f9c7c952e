"""``onehop server generate``: secrets, a server.json that validates (mode 0600) and a
server-entry.dat whose one entry matches it (host key, tag, ports, capabilities)."""

from __future__ import annotations

import base64
import os
import re
import stat

import asyncssh
import pytest

from onehop.core.serverentry import decode_server_entry, derive_tag, encode_server_entry
from onehop.errors import ConfigError
from onehop.server.config import load_server_config, parse_server_config
from onehop.server.generate import DEFAULT_OSSH_PORT, generate_server, write_server_dir

HEX = re.compile(r"[0-9a-f]+")
IP = "198.51.100.20"


@pytest.fixture(scope="module")
def both():
    return generate_server(IP, ossh_port=8443, ssh_port=2222, region="DE", host_id="host-1")


@pytest.fixture(scope="module")
def ossh_only():
    return generate_server(IP)


@pytest.fixture(scope="module")
def second():
    return generate_server(IP)


def entry_of(generated):
    return decode_server_entry(generated.encoded_entry)


# -- the config -----------------------------------------------------------------------

def test_generated_config_validates(both):
    config = parse_server_config(both.config)
    assert config.server_ip_address == IP
    assert config.tunnel_protocol_ports == {"OSSH": 8443, "SSH": 2222}
    assert config.host_id == "host-1"


def test_default_is_ossh_on_the_default_port(ossh_only):
    assert ossh_only.config["TunnelProtocolPorts"] == {"OSSH": DEFAULT_OSSH_PORT}


def test_host_key_is_rsa_2048(both):
    key = asyncssh.import_private_key(both.config["SSHPrivateKey"])
    assert key.algorithm == b"ssh-rsa"
    assert key.pyca_key.key_size == 2048


def test_secrets_have_the_documented_lengths(both):
    # reference/psiphon-wire.md: web server secret, SSH password and obfuscated key are
    # 32 random bytes in hex; the username suffix is 8 random bytes in hex.
    config = both.config
    for key in ("SSHPassword", "ObfuscatedSSHKey", "WebServerSecret"):
        assert HEX.fullmatch(config[key]) and len(config[key]) == 64, key
    prefix, _, suffix = config["SSHUserName"].rpartition("_")
    assert prefix and HEX.fullmatch(suffix) and len(suffix) == 16


def test_two_generations_share_no_secret(both, second):
    for key in ("SSHPrivateKey", "SSHUserName", "SSHPassword", "ObfuscatedSSHKey", "WebServerSecret"):
        assert both.config[key] != second.config[key], key
    secrets = [both.config[k] for k in ("SSHPassword", "ObfuscatedSSHKey", "WebServerSecret")]
    assert len(set(secrets)) == 3  # distinct within one server too


def test_allow_bogons_is_carried_into_the_config():
    generated = generate_server(IP, allow_bogons=True, psinet_filename="psinet.json", log_filename="ev.log")
    config = parse_server_config(generated.config)
    assert config.allow_bogons is True
    assert config.psinet_database_filename == "psinet.json" and config.log_filename == "ev.log"


@pytest.mark.parametrize("ports", [dict(ossh_port=None, ssh_port=None), dict(ossh_port=0, ssh_port=0)])
def test_no_ossh_and_no_ssh_is_a_config_error(ports):
    with pytest.raises(ConfigError):
        generate_server(IP, **ports)


def test_generated_output_is_validated_so_a_bad_ip_is_reported():
    with pytest.raises(ConfigError) as info:
        generate_server("not-an-ip")
    assert [p.key for p in info.value.problems] == ["ServerIPAddress"]


def test_same_port_for_both_protocols_is_reported():
    with pytest.raises(ConfigError) as info:
        generate_server(IP, ossh_port=443, ssh_port=443)
    assert [p.key for p in info.value.problems] == ["TunnelProtocolPorts"]


# -- the entry ------------------------------------------------------------------------

def test_entry_host_key_is_the_public_half_of_the_private_key(both):
    entry = entry_of(both)
    private = asyncssh.import_private_key(both.config["SSHPrivateKey"])
    public = asyncssh.import_public_key(b"ssh-rsa " + entry.ssh_host_key.encode("ascii"))
    assert public.public_data == private.convert_to_public().public_data
    assert base64.b64decode(entry.ssh_host_key) == private.public_data


def test_entry_tag_and_credentials_match_the_config(both):
    entry = entry_of(both)
    config = both.config
    assert entry.ip_address == IP
    assert entry.tag == derive_tag(IP, config["WebServerSecret"])
    assert entry.web_server_secret == config["WebServerSecret"]
    assert entry.ssh_username == config["SSHUserName"]
    assert entry.ssh_password == config["SSHPassword"]
    assert entry.ssh_obfuscated_key == config["ObfuscatedSSHKey"]
    assert entry.region == "DE"


def test_entry_ports_and_capabilities_with_both_protocols(both):
    entry = entry_of(both)
    assert entry.ssh_obfuscated_port == 8443 and entry.ssh_port == 2222
    assert sorted(entry.capabilities) == sorted(["OSSH", "SSH", "ssh-api-requests"])


def test_entry_with_ossh_only_offers_no_ssh(ossh_only):
    entry = entry_of(ossh_only)
    assert entry.ssh_obfuscated_port == DEFAULT_OSSH_PORT
    assert entry.ssh_port is None
    assert sorted(entry.capabilities) == ["OSSH", "ssh-api-requests"]
    assert entry.region == ""


def test_entry_with_ssh_only_offers_no_ossh():
    entry = entry_of(generate_server(IP, ossh_port=None, ssh_port=22))
    assert entry.ssh_port == 22 and entry.ssh_obfuscated_port is None
    assert sorted(entry.capabilities) == ["SSH", "ssh-api-requests"]


def test_entry_carries_no_private_key_material(both):
    text = bytes.fromhex(both.encoded_entry).decode("utf-8")
    assert "PRIVATE" not in text and "BEGIN" not in text
    assert "SSHPrivateKey" not in entry_of(both).fields


def test_entry_is_in_canonical_struct_form(both):
    # What we hand out re-encodes to the same hex (Psiphon's EncodeServerEntry form).
    assert encode_server_entry(entry_of(both)) == both.encoded_entry


# -- writing the directory ------------------------------------------------------------

def test_write_server_dir(tmp_path, both):
    out = tmp_path / "new" / "server"
    config_path, entry_path = write_server_dir(out, both)
    assert config_path == out / "server.json" and entry_path == out / "server-entry.dat"
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
    loaded = load_server_config(config_path)
    assert loaded.ssh_private_key == both.config["SSHPrivateKey"]
    lines = [line for line in entry_path.read_text(encoding="ascii").splitlines() if line]
    assert lines == [both.encoded_entry]
    assert decode_server_entry(lines[0]).tag == derive_tag(IP, loaded.web_server_secret)
    assert sorted(os.listdir(out)) == ["server-entry.dat", "server.json"]  # no temp files left


def test_rewriting_keeps_server_json_private(tmp_path, both, second):
    write_server_dir(tmp_path, both)
    os.chmod(tmp_path / "server.json", 0o644)  # an operator loosened it
    with pytest.raises(ConfigError):  # replacing secrets needs force
        write_server_dir(tmp_path, second)
    write_server_dir(tmp_path, second, force=True)
    assert stat.S_IMODE(os.stat(tmp_path / "server.json").st_mode) == 0o600
    assert load_server_config(tmp_path / "server.json").web_server_secret == second.config["WebServerSecret"]


def test_leftover_temp_file_does_not_make_secrets_world_readable(tmp_path, both):
    leftover = tmp_path / ".server.json.tmp"
    leftover.write_text("partial", encoding="utf-8")
    os.chmod(leftover, 0o644)  # left by an interrupted run, under a looser umask
    config_path, _ = write_server_dir(tmp_path, both)
    assert stat.S_IMODE(os.stat(config_path).st_mode) == 0o600
