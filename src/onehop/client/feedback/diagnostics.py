"""Diagnostics a client attaches to feedback, redacted before they are encrypted.

``DiagnosticInfo`` holds:

* ``SystemInformation``: onehop's version, the client version, platform and build
  channel, the OS family and release, Python's version, how onehop is installed, and
  which settings are in use (never their values when they are secrets or addresses);
* ``ConnectionStatistics``: counts derived from the recent notices (attempts, failures,
  tunnels established and lost, the last protocol and region) plus what the caller adds
  (bytes through the tunnel, for instance);
* ``EstablishmentFailures``: the last failed server connections (diagnostic ID,
  protocol, error text);
* ``DiagnosticHistory``: the recent notices themselves.

Everything passes through a :class:`~onehop.core.redact.Redactor` that keeps only
the addresses of the client's own server entries (public to the operators, who map
them to server IDs); nothing names the machine (no host name, no user name).
"""

from __future__ import annotations

import platform as _platform
import sys
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from ... import __version__
from ...core.redact import Redactor

MAX_HISTORY = 500
MAX_FAILURES = 30
FAILURE_MESSAGE = "server connection failed"
TUNNEL_LOST_MESSAGE = "tunnel lost"


def system_information(config: Any, installation: str = "") -> dict:
    """What was running where; ``config`` is a ClientConfig (read by attribute)."""
    def get(name: str, default: Any = "") -> Any:
        return getattr(config, name, default)

    return {
        "onehopVersion": __version__,
        "clientVersion": str(get("client_version")),
        "clientPlatform": get("client_platform"),
        "propagationChannelId": get("propagation_channel_id"),
        "sponsorId": get("sponsor_id"),
        "os": _platform.system(),
        "osRelease": _platform.release(),
        "machine": _platform.machine(),
        "pythonVersion": _platform.python_version(),
        "pythonImplementation": _platform.python_implementation(),
        "sysPlatform": sys.platform,
        "installation": installation,
        "egressRegion": get("egress_region"),
        "protocols": list(get("protocols", ())),
        "upstreamProxyConfigured": get("upstream_proxy", None) is not None,
        "remoteServerListConfigured": bool(get("remote_server_list_urls", ())),
        "upgradeDownloadConfigured": bool(get("upgrade_download_urls", ())),
    }


def _message(notice: Mapping) -> str:
    data = notice.get("data")
    return str(data.get("message", "")) if isinstance(data, Mapping) else ""


def _data(notice: Mapping) -> Mapping:
    data = notice.get("data")
    return data if isinstance(data, Mapping) else {}


def connection_statistics(notices: list[Mapping], extra: Mapping[str, Any] | None = None) -> dict:
    """Counts from the notices (Psiphon's notice names), plus ``extra``."""
    kinds = [n.get("noticeType") for n in notices]
    active = [n for n in notices if n.get("noticeType") == "ActiveTunnel"]
    regions = [n for n in notices if n.get("noticeType") == "ClientRegion"]
    stats: dict[str, Any] = {
        "noticesConsidered": len(notices),
        "connectionAttempts": kinds.count("ConnectingServer"),
        "failedConnections": sum(_message(n) == FAILURE_MESSAGE for n in notices),
        "tunnelsEstablished": len(active),
        "tunnelsLost": sum(_message(n).startswith(TUNNEL_LOST_MESSAGE) for n in notices),
        "upstreamProxyErrors": kinds.count("UpstreamProxyError"),
        "remoteServerListDownloads": kinds.count("RemoteServerListResourceDownloaded"),
        "alerts": kinds.count("Alert"),
        "errors": kinds.count("Error"),
    }
    if active:
        last = _data(active[-1])
        stats.update(lastTunnelProtocol=last.get("protocol", ""), lastTunnelRegion=last.get("region", ""),
                     lastTunnelAt=active[-1].get("timestamp", ""))
    if regions:
        stats["clientRegion"] = _data(regions[-1]).get("region", "")
    stats.update(extra or {})
    return stats


def establishment_failures(notices: list[Mapping], limit: int = MAX_FAILURES) -> list[dict]:
    failures = [n for n in notices if _message(n) == FAILURE_MESSAGE]
    return [{"timestamp": n.get("timestamp", ""), "diagnosticID": _data(n).get("diagnosticID", ""),
             "protocol": _data(n).get("protocol", ""), "error": _data(n).get("error", "")}
            for n in failures[-limit:]]


def gather_diagnostics(config: Any, notices: Iterable[Mapping], *, keep_ips: Collection[str] = (),
                       extra_stats: Mapping[str, Any] | None = None, installation: str = "",
                       history: int = MAX_HISTORY) -> dict:
    """The redacted ``DiagnosticInfo`` object."""
    recent = [n for n in notices if isinstance(n, Mapping)][-history:]
    info = {
        "SystemInformation": system_information(config, installation),
        "ConnectionStatistics": connection_statistics(recent, extra_stats),
        "EstablishmentFailures": establishment_failures(recent),
        "DiagnosticHistory": recent,
    }
    return Redactor(keep=keep_ips).value(info)
