"""server.json: parse_server_config reports every problem at once, each naming its key;
read_json_file explains unreadable files; load_server_config resolves relative names."""

from __future__ import annotations

import json
import os

import pytest

from onehop.configtools import read_json_file
from onehop.errors import ConfigError, ConfigProblem
from onehop.server.config import ServerConfig, load_server_config, parse_server_config
from tests.helpers.builders import ed25519_private_pem, problem_keys, valid_server_config


def parse_problems(raw: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_server_config(raw, "server.json")
    return info.value


# -- a valid config -------------------------------------------------------------------

def test_valid_config_becomes_a_frozen_dataclass_with_defaults():
    config = parse_server_config(valid_server_config())
    assert config.server_ip_address == "198.51.100.7"
    assert config.listen_ip_address == "198.51.100.7"  # defaults to the server address
    assert config.tunnel_protocol_ports == {"OSSH": 443, "SSH": 22}
    assert config.allow_bogons is False
    assert config.handshake_timeout == 30.0
    assert config.host_key().algorithm == b"ssh-rsa"
    with pytest.raises(AttributeError):
        config.server_ip_address = "192.0.2.1"  # type: ignore[misc]


def test_optional_keys_are_converted():
    config = parse_server_config(valid_server_config(
        ListenIPAddress="0.0.0.0", AllowBogons=True, SSHHandshakeTimeoutMilliseconds=1500,
        AllowTCPPorts=[80, 443], DisallowTCPPorts=[25], LogFilename="events.log"))
    assert config.listen_ip_address == "0.0.0.0"
    assert config.allow_bogons is True
    assert config.handshake_timeout == 1.5
    assert config.allow_tcp_ports == (80, 443) and config.disallow_tcp_ports == (25,)
    assert config.log_filename == "events.log"


# -- every problem at once ------------------------------------------------------------

def test_every_problem_is_reported_at_once_with_its_key():
    raw = valid_server_config(
        ServerIPAddress="300.1.2.3",
        SSHPrivateKey="-----BEGIN GARBAGE-----\nnot a key\n-----END GARBAGE-----\n",
        TunnelProtocolPorts={"QUIC": 443},
        SSHHandshakeTimeoutMilliseconds="30000",
        AllowBogons="yes",
        Frobnicate=1,
    )
    error = parse_problems(raw)
    assert problem_keys(error) == sorted([
        "ServerIPAddress", "SSHPrivateKey", "TunnelProtocolPorts",
        "SSHHandshakeTimeoutMilliseconds", "AllowBogons", "Frobnicate"])
    assert error.source == "server.json"
    assert all(isinstance(p, ConfigProblem) and p.message for p in error.problems)
    text = str(error)
    assert "6 configuration problem(s)" in text
    for key in problem_keys(error):
        assert key in text


def test_missing_required_keys_are_each_named():
    error = parse_problems({})
    assert problem_keys(error) == sorted([
        "ServerIPAddress", "TunnelProtocolPorts", "SSHPrivateKey", "SSHUserName",
        "SSHPassword", "ObfuscatedSSHKey", "WebServerSecret"])
    assert all(p.message == "required" for p in error.problems)


@pytest.mark.parametrize("value", ["not-an-ip", "1.2.3", "300.0.0.1", ""])
def test_bad_server_ip_address(value):
    error = parse_problems(valid_server_config(ServerIPAddress=value))
    assert problem_keys(error) == ["ServerIPAddress"]


def test_ipv6_server_address_is_accepted():
    assert parse_server_config(valid_server_config(ServerIPAddress="2001:db8::7")).server_ip_address == "2001:db8::7"


def test_non_rsa_host_key_is_rejected_because_psiphon_pins_ssh_rsa():
    error = parse_problems(valid_server_config(SSHPrivateKey=ed25519_private_pem()))
    assert problem_keys(error) == ["SSHPrivateKey"]
    assert "RSA" in error.problems[0].message


@pytest.mark.parametrize("value", ["garbage", "",
                                   "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"])
def test_garbage_host_key(value):
    error = parse_problems(valid_server_config(SSHPrivateKey=value))
    assert problem_keys(error) == ["SSHPrivateKey"]


@pytest.mark.parametrize("ports, fragment", [
    ({"QUIC": 443}, "QUIC"),                     # unknown protocol
    ({"OSSH": 0}, "OSSH"),                       # port out of range
    ({"OSSH": 65536}, "OSSH"),
    ({"SSH": "22"}, "SSH"),                      # not an integer
    ({"SSH": True}, "SSH"),                      # a bool is not a port
    ({"OSSH": 443, "SSH": 443}, "own port"),     # duplicate ports
    ({}, "at least one"),
])
def test_bad_tunnel_protocol_ports(ports, fragment):
    error = parse_problems(valid_server_config(TunnelProtocolPorts=ports))
    assert problem_keys(error) == ["TunnelProtocolPorts"]
    assert fragment in error.problems[0].message


@pytest.mark.parametrize("key, value", [
    ("SSHHandshakeTimeoutMilliseconds", "30000"),
    ("SSHHandshakeTimeoutMilliseconds", 1.5),
    ("SSHHandshakeTimeoutMilliseconds", True),
    ("SSHHandshakeTimeoutMilliseconds", 0),
    ("AllowBogons", 1),
    ("AllowTCPPorts", [80, "443"]),
    ("DisallowTCPPorts", [0]),
    ("ServerIPAddress", 1234),
    ("SSHUserName", ""),
    ("WebServerSecret", ""),
    ("ListenIPAddress", "localhost"),
    ("TunnelProtocolPorts", [443]),
])
def test_wrong_type_or_value_names_the_key(key, value):
    error = parse_problems(valid_server_config(**{key: value}))
    assert problem_keys(error) == [key]


def test_unknown_keys_are_problems_each():
    error = parse_problems(valid_server_config(Foo=1, Bar="x"))
    assert problem_keys(error) == ["Bar", "Foo"]
    assert all(p.message == "unknown key" for p in error.problems)


def test_null_counts_as_missing():
    raw = valid_server_config()
    raw["SSHPassword"] = None
    error = parse_problems(raw)
    assert problem_keys(error) == ["SSHPassword"]


# -- read_json_file -------------------------------------------------------------------

def test_read_json_file_missing_file_names_the_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        read_json_file(path)
    assert [p.key for p in info.value.problems] == [str(path)]
    assert "not found" in info.value.problems[0].message


def test_read_json_file_invalid_json_gives_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": oops\n}\n', encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_json_file(path)
    (problem,) = info.value.problems
    assert problem.key == str(path)
    assert "line 3" in problem.message


@pytest.mark.parametrize("text", ["[1, 2]", '"text"', "42", "null"])
def test_read_json_file_top_level_must_be_an_object(tmp_path, text):
    path = tmp_path / "list.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        read_json_file(path)
    (problem,) = info.value.problems
    assert problem.key == str(path) and "object" in problem.message


def test_read_json_file_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(ConfigError) as info:
        read_json_file(path)
    assert info.value.problems[0].key == str(path)


def test_read_json_file_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        read_json_file(tmp_path)
    assert info.value.problems[0].key == str(tmp_path)


def test_read_json_file_returns_the_object(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text('{"a": [1, 2]}', encoding="utf-8")
    assert read_json_file(path) == {"a": [1, 2]}


# -- load_server_config: relative names -----------------------------------------------

def write_config(directory, **overrides):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "server.json"
    path.write_text(json.dumps(valid_server_config(**overrides)), encoding="utf-8")
    return path


def test_relative_file_names_resolve_against_the_config_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc" / "onehop"
    write_config(conf_dir, PsinetDatabaseFilename="psinet.json", LogFilename="logs/events.log")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_server_config(os.path.join("..", "etc", "onehop", "server.json"))
    assert os.path.isabs(config.base_dir)
    assert config.path(config.psinet_database_filename) == str(conf_dir / "psinet.json")
    assert config.path(config.log_filename) == str(conf_dir / "logs" / "events.log")


def test_absolute_file_names_are_kept(tmp_path):
    absolute = str(tmp_path / "var" / "psinet.json")
    config = load_server_config(write_config(tmp_path / "conf", PsinetDatabaseFilename=absolute))
    assert config.path(config.psinet_database_filename) == absolute


def test_load_server_config_problems_name_the_file(tmp_path):
    path = write_config(tmp_path, ServerIPAddress="nope")
    with pytest.raises(ConfigError) as info:
        load_server_config(path)
    assert info.value.source == str(path)
    assert problem_keys(info.value) == ["ServerIPAddress"]


def test_server_config_path_without_base_dir_is_relative_to_cwd():
    config = ServerConfig("192.0.2.1", "192.0.2.1", {"OSSH": 1}, "", "u", "p", "k", "s")
    assert config.path("x.json") == os.path.join(".", "x.json")
