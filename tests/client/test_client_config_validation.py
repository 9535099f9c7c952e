"""The client's config file (Psiphon key names) and command-line flags: validated once,
every problem reported at once with its key (or flag)."""

from __future__ import annotations

import json

import pytest

from onehop.client.config import (
    DEFAULT_PROTOCOLS,
    ClientConfig,
    apply_flags,
    load_client_config,
    parse_client_config,
)
from onehop.core.upstreamproxy import ProxySpec
from onehop.errors import ConfigError
from tests.helpers.builders import problem_keys

FULL = {
    "PropagationChannelId": "FFFFFFFFFFFFFFFF",
    "SponsorId": "0123456789abcdef",
    "ClientVersion": "42",
    "ClientPlatform": "Linux_test",
    "DataRootDirectory": "/var/lib/onehop",
    "ListenInterface": "0.0.0.0",
    "LocalSocksProxyPort": 1081,
    "LocalHttpProxyPort": 0,
    "EgressRegion": "DE",
    "LimitTunnelProtocols": ["OSSH-PREFIX", "SSH"],
    "TargetServerEntry": "",
    "ServerListFilename": "servers.dat",
    "ConnectionWorkerPoolSize": 4,
    "TunnelConnectTimeoutSeconds": 7.5,
    "EstablishTunnelPausePeriodSeconds": 3,
    "SSHKeepAlivePeriodSeconds": 15,
    "OSSHPrefixSpecName": "http-get",
    "OSSHPrefixSplitDelaySeconds": 0.25,
    "RemoteServerListURLs": [{"URL": "aHR0cHM6Ly9leGFtcGxlLm9yZy9saXN0", "OnlyAfterAttempts": 0}],
    "RemoteServerListSignaturePublicKey": "MIIB",
    "ServerEntrySignaturePublicKey": "AAAA",
    "FeedbackUploadURLs": [],
    "FeedbackEncryptionPublicKey": "MIIC",
    "UpgradeDownloadURLs": [],
    "UpgradeSignaturePublicKey": "MIID",
    "UpstreamProxyURL": "socks5://user:pw@127.0.0.1:9050",
}


def problems_of(raw: dict) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_client_config(raw, "client.json")
    return info.value


# -- the config file --------------------------------------------------------------------

def test_full_psiphon_style_config():
    config = parse_client_config(FULL)
    assert config.propagation_channel_id == "FFFFFFFFFFFFFFFF"
    assert config.sponsor_id == "0123456789abcdef"
    assert config.client_version == "42" and config.client_platform == "Linux_test"
    assert config.data_dir == "/var/lib/onehop" and config.listen_interface == "0.0.0.0"
    assert config.socks_port == 1081 and config.http_port == 0
    assert config.egress_region == "DE"
    assert config.protocols == ("OSSH-PREFIX", "SSH")
    assert config.server_list_file == "servers.dat"
    assert config.connection_workers == 4
    assert config.tunnel_connect_timeout == 7.5 and config.establish_pause == 3.0
    assert config.keepalive_interval == 15.0 and config.ossh_prefix_split_delay == 0.25
    assert config.remote_server_list_urls == tuple(FULL["RemoteServerListURLs"])
    assert config.upgrade_signature_public_key == "MIID"
    assert config.upstream_proxy == ProxySpec("socks5", "127.0.0.1", 9050, "user", "pw")


def test_empty_config_is_the_defaults():
    assert parse_client_config({}) == ClientConfig()
    assert ClientConfig().protocols == DEFAULT_PROTOCOLS


def test_integer_client_version_is_kept_as_text():
    assert parse_client_config({"ClientVersion": 7}).client_version == "7"


def test_every_problem_is_listed_at_once_with_its_key():
    error = problems_of({
        "PropagationChannelId": "not-hex!",
        "EgressRegion": "Germany",
        "LimitTunnelProtocols": ["OSSH", "QUIC-OSSH"],
        "LocalSocksProxyPort": 70000,
        "UpstreamProxyURL": "ftp://proxy.example:21",
        "NoSuchKey": True,
    })
    assert problem_keys(error) == sorted([
        "PropagationChannelId", "EgressRegion", "LimitTunnelProtocols",
        "LocalSocksProxyPort", "UpstreamProxyURL", "NoSuchKey"])
    assert error.source == "client.json"
    by_key = {p.key: p.message for p in error.problems}
    assert "QUIC-OSSH" in by_key["LimitTunnelProtocols"]
    assert by_key["NoSuchKey"] == "unknown key"


@pytest.mark.parametrize("key, value", [
    ("PropagationChannelId", "XYZ"),
    ("PropagationChannelId", ""),
    ("SponsorId", "12 34"),
    ("SponsorId", 1234),
    ("EgressRegion", "us"),
    ("EgressRegion", "USA"),
    ("LimitTunnelProtocols", []),
    ("LimitTunnelProtocols", ["ossh"]),
    ("LimitTunnelProtocols", "OSSH"),
    ("LocalSocksProxyPort", -1),
    ("LocalHttpProxyPort", 65536),
    ("LocalHttpProxyPort", "8080"),
    ("LocalSocksProxyPort", True),
    ("ClientPlatform", "Linux x86"),
    ("ClientPlatform", ""),
    ("ConnectionWorkerPoolSize", -1),
    ("TunnelConnectTimeoutSeconds", -1),
    ("TunnelConnectTimeoutSeconds", "20"),
    ("UpstreamProxyURL", "socks5://127.0.0.1"),
    ("UpstreamProxyURL", "not a url"),
    ("UpstreamProxyURL", 1080),
    ("RemoteServerListURLs", "https://example.org/list"),
])
def test_one_bad_value_names_its_key(key, value):
    assert problem_keys(problems_of({key: value})) == [key]


def test_bad_upstream_proxy_url_lists_each_of_its_problems_under_its_key():
    error = problems_of({"UpstreamProxyURL": "gopher://[zz]:99999"})
    assert len(error.problems) >= 2
    assert {p.key for p in error.problems} == {"UpstreamProxyURL"}


@pytest.mark.parametrize("key", ["TunnelConnectTimeoutSeconds", "EstablishTunnelPausePeriodSeconds",
                                 "SSHKeepAlivePeriodSeconds", "OSSHPrefixSplitDelaySeconds", "ClientVersion"])
def test_true_is_not_a_number(key):
    assert problem_keys(problems_of({key: True})) == [key]


def test_load_client_config_reads_the_file(tmp_path):
    path = tmp_path / "client.json"
    path.write_text(json.dumps({"EgressRegion": "NL"}), encoding="utf-8")
    assert load_client_config(str(path)).egress_region == "NL"
    assert load_client_config(None) == ClientConfig()


def test_load_client_config_problems_name_the_file(tmp_path):
    path = tmp_path / "client.json"
    path.write_text(json.dumps({"EgressRegion": "nl"}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_client_config(str(path))
    assert info.value.source == str(path) and problem_keys(info.value) == ["EgressRegion"]


# -- command-line flags -----------------------------------------------------------------

BASE = parse_client_config({"LocalSocksProxyPort": 1081, "EgressRegion": "DE",
                            "UpstreamProxyURL": "http://10.0.0.1:3128"})


def test_flags_override_the_file():
    config = apply_flags(BASE, socks_port=9999, http_port=0, egress_region="US", protocols=("SSH",),
                         upstream_proxy="socks5://127.0.0.1:9050", data_dir="/tmp/d",
                         server_list_file="list.dat", open_home_page=True)
    assert config.socks_port == 9999 and config.http_port == 0
    assert config.egress_region == "US" and config.protocols == ("SSH",)
    assert config.upstream_proxy == ProxySpec("socks5", "127.0.0.1", 9050)
    assert config.data_dir == "/tmp/d" and config.server_list_file == "list.dat"
    assert config.open_home_page is True


def test_flags_not_given_leave_the_file_values():
    config = apply_flags(BASE, socks_port=None, egress_region=None, protocols=None, upstream_proxy=None)
    assert config == BASE


def test_empty_region_flag_clears_the_file_region():
    assert apply_flags(BASE, egress_region="").egress_region == ""


def test_bad_flags_are_all_reported_with_the_flag_name():
    with pytest.raises(ConfigError) as info:
        apply_flags(BASE, egress_region="germany", protocols=("OSSH", "MEEK"), socks_port=70000,
                    http_port=-5, upstream_proxy="socks5://nohost")
    assert problem_keys(info.value) == sorted(
        ["--region", "--protocol", "--socks-port", "--http-port", "--upstream-proxy"])
    assert info.value.source == "command line"


@pytest.mark.parametrize("flags, flag", [
    (dict(egress_region="de"), "--region"),
    (dict(protocols=()), "--protocol"),
    (dict(protocols=("QUIC",)), "--protocol"),
    (dict(socks_port=65536), "--socks-port"),
    (dict(upstream_proxy="https://proxy.example:443"), "--upstream-proxy"),
])
def test_each_bad_flag_is_named(flags, flag):
    with pytest.raises(ConfigError) as info:
        apply_flags(BASE, **flags)
    assert {p.key for p in info.value.problems} == {flag}


def test_a_rejected_flag_changes_nothing():
    with pytest.raises(ConfigError):
        apply_flags(BASE, socks_port=5555, egress_region="xx")
    assert BASE.socks_port == 1081 and BASE.egress_region == "DE"


def test_zero_workers_means_the_default_as_in_psiphon():
    from onehop.client.config import ClientConfig, parse_client_config
    assert parse_client_config({"ConnectionWorkerPoolSize": 0}).connection_workers == ClientConfig().connection_workers


def test_psiphon_only_keys_are_kept_aside_not_rejected():
    from onehop.client.config import parse_client_config
    config = parse_client_config({"EmitDiagnosticNotices": True, "TunnelPoolSize": 2})
    assert config.extra == {"EmitDiagnosticNotices": True, "TunnelPoolSize": 2}


def test_ids_must_be_sixteen_hex_digits():
    assert problem_keys(problems_of({"SponsorId": "ABC", "PropagationChannelId": "0123456789ABCDEF00"})) == \
        ["PropagationChannelId", "SponsorId"]


def test_the_two_local_proxies_need_different_ports():
    problems = problems_of({"LocalSocksProxyPort": 9000, "LocalHttpProxyPort": 9000})
    assert problem_keys(problems) == ["LocalHttpProxyPort"]


@pytest.mark.parametrize("urls_key, signing_key", [
    ("RemoteServerListURLs", "RemoteServerListSignaturePublicKey"),
    ("UpgradeDownloadURLs", "UpgradeSignaturePublicKey"),
])
def test_download_urls_without_their_signing_key_are_a_problem(urls_key, signing_key):
    """Issue 16: RemoteServerListURLs without its key was silently ignored."""
    error = problems_of({urls_key: [{"URL": "aHR0cHM6Ly9leGFtcGxlLm9yZy9saXN0"}]})
    assert problem_keys(error) == [signing_key]
    assert urls_key in str(error) and "signed" in str(error)


def test_a_bad_download_url_is_reported_at_load_with_the_other_problems():
    error = problems_of({"RemoteServerListURLs": [{"URL": "not base64!"}], "SponsorId": "x"})
    assert set(problem_keys(error)) == {"RemoteServerListURLs[0]", "RemoteServerListSignaturePublicKey",
                                        "SponsorId"}
