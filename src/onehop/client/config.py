"""The client's configuration: a config file (Psiphon key names) plus command-line flags.

Everything is validated once into a frozen ``ClientConfig``; every problem is reported
at once with its key. Flags override the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..configtools import Checker, read_json_file
from ..core.api.protocols import CLIENT_PROTOCOLS
from ..core.ossh.prefix import DEFAULT_CLIENT_PREFIX_SPECS, prefix_specs_problem
from ..core.upstreamproxy import ProxySpec, parse_proxy_url
from ..errors import ConfigError
from .transfer_urls import parse_transfer_urls

DEFAULT_PROTOCOLS: tuple[str, ...] = CLIENT_PROTOCOLS
def default_data_dir() -> str:
    """Per-user data directory: $XDG_DATA_HOME/onehop (~/.local/share/onehop)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "onehop")


_ID = re.compile(r"[0-9A-Fa-f]{16}")

#: Psiphon client settings we accept for compatibility but do not act on; they are kept
#: in ``ClientConfig.extra`` and reported in a notice rather than rejected.
PSIPHON_IGNORED_KEYS = frozenset({
    "EmitDiagnosticNotices", "EmitBytesTransferred", "EmitSLOKs", "EmitServerAlerts",
    "TunnelPoolSize", "DisableTactics", "TargetAPIProtocol",
    "ObfuscatedServerListRootURLs", "DisableRemoteServerListFetcher", "UseIndistinguishableTLS",
    "NetworkID", "DeviceRegion", "ClientFeatures", "EnableUpgradeDownload", "EnableFeedbackUpload",
    "UpgradeDownloadFilename", "UpgradeDownloadClientVersionHeader", "LocalSocksProxyPort6", "DisableLocalSocksProxy",
    "DisableLocalHTTPProxy",
    "EstablishTunnelTimeoutSeconds", "MigrateDataStoreDirectory", "MigrateRemoteServerListDownloadFilename",
    "MigrateObfuscatedServerListDownloadDirectory", "MigrateUpgradeDownloadFilename",
    "RemoteServerListDownloadFilename", "ObfuscatedServerListDownloadDirectory", "CustomHeaders",
    "UpstreamProxyCustomHeaders", "TunnelWholeDevice", "LimitQUICVersions", "DataStoreDirectory",
})
_REGION = re.compile(r"[A-Z]{2}")


@dataclass(frozen=True)
class ClientConfig:
    propagation_channel_id: str = "0000000000000000"
    sponsor_id: str = "0000000000000000"
    client_version: str = "1"
    client_platform: str = "Linux_onehop"
    data_dir: str = field(default_factory=default_data_dir)
    listen_interface: str = "127.0.0.1"
    socks_port: int = 1080
    http_port: int = 8080
    dns_port: int = 0  # 0: no local DNS forwarder
    egress_region: str = ""
    protocols: tuple[str, ...] = DEFAULT_PROTOCOLS
    target_server_entry: str = ""
    server_list_file: str = ""
    upstream_proxy: ProxySpec | None = None
    connection_workers: int = 10
    tunnel_connect_timeout: float = 20.0
    establish_work_time: float = 60.0
    establish_pause: float = 2.0
    affinity_grace: float = 1.0
    keepalive_interval: float = 30.0
    pending_request_wait: float = 30.0
    local_proxy_request_timeout: float = 30.0  # a local connection's whole request must arrive by then
    local_proxy_max_connections: int = 500      # concurrent local proxy connections; more are closed at once
    ossh_prefix_spec: str = "http-get"
    ossh_prefix_specs: dict[str, str] = field(default_factory=dict)  # extra name -> pattern
    ossh_prefix_split_delay: float = 0.0
    remote_server_list_urls: tuple[dict, ...] = ()
    remote_server_list_signature_public_key: str = ""
    server_entry_signature_public_key: str = ""
    feedback_upload_urls: tuple[dict, ...] = ()
    feedback_encryption_public_key: str = ""
    upgrade_download_urls: tuple[dict, ...] = ()
    upgrade_signature_public_key: str = ""
    open_home_page: bool = False
    api_encoding: str = ""  # TargetAPIEncoding: "" or "cbor" (packed where supported), "json"
    whole_device: bool = False  # WholeDevice / --whole-device: nftables rules tunnel the whole machine
    share_lan: str = ""         # WholeDeviceShareLAN / --share-lan IFACE: and what a LAN sends through it
    split_tunnel_own_region: bool = False           # SplitTunnelOwnRegion: the server refuses forwards
    split_tunnel_regions: tuple[str, ...] = ()      # SplitTunnelRegions:   to these; we connect directly
    ui: bool = False                 # --ui: the local web UI (client/ui)
    ui_without_terminal: bool = False  # WebUIWithoutTerminal: --ui whenever stdout is not a terminal
    ui_port: int = 0                 # WebUIPort / --ui-port (0: any free port)
    extra: dict[str, Any] = field(default_factory=dict)


def _id_check(value: str) -> str | None:
    return None if _ID.fullmatch(value) else "must be 16 hex digits"


def _region_check(value: str) -> str | None:
    return None if value == "" or _REGION.fullmatch(value) else "must be a two-letter country code like US"


def _regions_check(value: list) -> str | None:
    bad = [r for r in value if not isinstance(r, str) or not _REGION.fullmatch(r)]
    return f"must be two-letter country codes like US (not {bad})" if bad else None


def _protocols_check(value: list) -> str | None:
    bad = [p for p in value if p not in CLIENT_PROTOCOLS]
    if bad or not value:
        return f"choose from {', '.join(CLIENT_PROTOCOLS)}" + (f" (not {bad})" if bad else "")
    return None


API_ENCODINGS = ("cbor", "json")


def _api_encoding_check(value: str) -> str | None:
    return None if value in ("", *API_ENCODINGS) else f"choose from {', '.join(API_ENCODINGS)}"


def _port_check(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be 0 (any free port) to 65535"


def _platform_check(value: str) -> str | None:
    return None if value and not any(c.isspace() for c in value) else "must be non-empty without spaces"


def prefix_patterns(config: ClientConfig) -> dict[str, str]:
    """Every prefix spec the client knows: the built-in ones plus OSSHPrefixSpecs."""
    return {**DEFAULT_CLIENT_PREFIX_SPECS, **config.ossh_prefix_specs}


def _positive(value) -> str | None:
    return None if value > 0 else "must be positive"


def parse_client_config(raw: dict, source: str = "") -> ClientConfig:
    """Validate a Psiphon-style client config mapping; ConfigError lists every problem."""
    c = Checker(raw, source)
    d = ClientConfig()
    values = dict(
        propagation_channel_id=c.take("PropagationChannelId", str, d.propagation_channel_id, _id_check),
        sponsor_id=c.take("SponsorId", str, d.sponsor_id, _id_check),
        client_version=str(c.take("ClientVersion", (str, int), d.client_version)),
        client_platform=c.take("ClientPlatform", str, d.client_platform, _platform_check),
        data_dir=c.take("DataRootDirectory", str, d.data_dir),
        listen_interface=c.take("ListenInterface", str, d.listen_interface),
        socks_port=c.take("LocalSocksProxyPort", int, d.socks_port, _port_check),
        http_port=c.take("LocalHttpProxyPort", int, d.http_port, _port_check),
        dns_port=c.take("LocalDNSForwarderPort", int, 0, _port_check),
        egress_region=c.take("EgressRegion", str, d.egress_region, _region_check),
        protocols=tuple(c.take("LimitTunnelProtocols", list, list(d.protocols), _protocols_check)),
        target_server_entry=c.take("TargetServerEntry", str, ""),
        server_list_file=c.take("ServerListFilename", str, ""),
        connection_workers=c.take("ConnectionWorkerPoolSize", int, d.connection_workers,
                                  lambda v: None if v >= 0 else "must not be negative") or d.connection_workers,
        tunnel_connect_timeout=float(c.take("TunnelConnectTimeoutSeconds", (int, float), d.tunnel_connect_timeout,
                                            _positive)),
        establish_pause=float(c.take("EstablishTunnelPausePeriodSeconds", (int, float), d.establish_pause, _positive)),
        keepalive_interval=float(c.take("SSHKeepAlivePeriodSeconds", (int, float), d.keepalive_interval, _positive)),
        ossh_prefix_specs=c.take("OSSHPrefixSpecs", dict, {}, prefix_specs_problem),
        ossh_prefix_spec=c.take("OSSHPrefixSpecName", str, d.ossh_prefix_spec),
        ossh_prefix_split_delay=float(c.take("OSSHPrefixSplitDelaySeconds", (int, float), 0.0,
                                             lambda v: None if v >= 0 else "must not be negative")),
        remote_server_list_urls=tuple(c.take("RemoteServerListURLs", list, [])),
        remote_server_list_signature_public_key=c.take("RemoteServerListSignaturePublicKey", str, ""),
        server_entry_signature_public_key=c.take("ServerEntrySignaturePublicKey", str, ""),
        feedback_upload_urls=tuple(c.take("FeedbackUploadURLs", list, [])),
        feedback_encryption_public_key=c.take("FeedbackEncryptionPublicKey", str, ""),
        upgrade_download_urls=tuple(c.take("UpgradeDownloadURLs", list, [])),
        upgrade_signature_public_key=c.take("UpgradeSignaturePublicKey", str, ""),
        api_encoding=c.take("TargetAPIEncoding", str, "", _api_encoding_check),
        whole_device=c.take("WholeDevice", bool, False),
        share_lan=c.take("WholeDeviceShareLAN", str, ""),
        split_tunnel_own_region=c.take("SplitTunnelOwnRegion", bool, False),
        split_tunnel_regions=tuple(c.take("SplitTunnelRegions", list, [], _regions_check)),
        ui_without_terminal=c.take("WebUIWithoutTerminal", bool, False),
        ui_port=c.take("WebUIPort", int, 0, _port_check),
    )
    proxy_url = c.take("UpstreamProxyURL", str, "")
    if proxy_url:
        try:
            values["upstream_proxy"] = parse_proxy_url(proxy_url)
        except ConfigError as exc:
            for problem in exc.problems:
                c.problem("UpstreamProxyURL", problem.message)
    known = prefix_patterns(ClientConfig(ossh_prefix_specs=values["ossh_prefix_specs"] or {}))
    if values["ossh_prefix_spec"] not in known:
        c.problem("OSSHPrefixSpecName", f"unknown prefix spec (known: {', '.join(sorted(known))})")
    values["extra"] = {k: raw[k] for k in PSIPHON_IGNORED_KEYS if k in raw}
    c.take_silently(PSIPHON_IGNORED_KEYS)
    if values["socks_port"] and values["socks_port"] == values["http_port"]:
        c.problem("LocalHttpProxyPort", "must differ from LocalSocksProxyPort")
    _check_signed_downloads(c, values)
    if values["share_lan"] and not values["whole_device"]:
        c.problem("WholeDeviceShareLAN", "needs WholeDevice: true")
    c.reject_unknown()
    c.raise_if_problems()
    return ClientConfig(**values)


#: URL lists whose downloads are only accepted signed: (URL key, field, signing key, field).
SIGNED_DOWNLOADS = (
    ("RemoteServerListURLs", "remote_server_list_urls",
     "RemoteServerListSignaturePublicKey", "remote_server_list_signature_public_key"),
    ("UpgradeDownloadURLs", "upgrade_download_urls", "UpgradeSignaturePublicKey", "upgrade_signature_public_key"),
)


def _check_signed_downloads(c: Checker, values: dict) -> None:
    """URLs whose downloads could never be verified are a problem, not silently ignored."""
    for url_key, urls_field, key_key, key_field in SIGNED_DOWNLOADS:
        if not values[urls_field]:
            continue
        try:
            parse_transfer_urls(values[urls_field], url_key)
        except ConfigError as exc:
            c.problems.extend(exc.problems)
        if not values[key_field]:
            c.problem(key_key, f"needed with {url_key}: downloads are accepted only when signed "
                               "(the network's key: `onehop network keys show`)")


def load_client_config(path: str | None) -> ClientConfig:
    if not path:
        return ClientConfig()
    return parse_client_config(read_json_file(path), str(path))


def apply_flags(config: ClientConfig, **flags: Any) -> ClientConfig:
    """Override ``config`` with the command-line flags that were given (not None)."""
    given = {k: v for k, v in flags.items() if v is not None}
    merged = {**{k: getattr(config, k) for k in ("socks_port",)}, **given}
    problems = Checker({}, "command line")
    if "egress_region" in given and _region_check(given["egress_region"]):
        problems.problem("--region", _region_check(given["egress_region"]) or "")
    if "protocols" in given and _protocols_check(list(given["protocols"])):
        problems.problem("--protocol", _protocols_check(list(given["protocols"])) or "")
    for key in ("socks_port", "http_port", "dns_port", "ui_port"):
        if key in given and _port_check(given[key]):
            problems.problem("--" + key.replace("_", "-"), _port_check(given[key]) or "")
    if isinstance(given.get("upstream_proxy"), str):
        try:
            merged["upstream_proxy"] = parse_proxy_url(given["upstream_proxy"])
        except ConfigError as exc:
            for problem in exc.problems:
                problems.problem("--upstream-proxy", problem.message)
    if given.get("share_lan") and not (given.get("whole_device") or config.whole_device):
        problems.problem("--share-lan", "needs --whole-device")
    problems.raise_if_problems()
    merged.update({k: v for k, v in given.items() if k != "upstream_proxy"})
    if "upstream_proxy" in given and "upstream_proxy" not in merged:
        merged["upstream_proxy"] = given["upstream_proxy"]
    return replace(config, **merged)


def data_path(config: ClientConfig, *parts: str) -> str:
    os.makedirs(config.data_dir, exist_ok=True)
    return os.path.join(config.data_dir, *parts)


EMBEDDED_PACKAGE = "onehop_embedded"  # added to per-channel client builds by `network build-client`


def embedded_resource(name: str) -> str | None:
    """Text of a file embedded in a client build, or None when not running from one."""
    import importlib.resources
    import importlib.util
    if importlib.util.find_spec(EMBEDDED_PACKAGE) is None:
        return None
    resource = importlib.resources.files(EMBEDDED_PACKAGE) / name
    return resource.read_text(encoding="utf-8") if resource.is_file() else None
