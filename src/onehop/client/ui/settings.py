"""The UI's settings: validated like the config file, written back to it, read at start.

With ``--config FILE`` the changed keys are written into FILE itself (every other key
and the file's mode are kept). Without one, they go to ``<data dir>/settings.json``,
which ``onehop client`` reads on top of the built-in config at the next start. Keys are
Psiphon's names, so the same file works with Psiphon's console client.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from typing import Any
from urllib.parse import quote

from ...atomicfile import replace_file
from ...configtools import read_json_file
from ...core.upstreamproxy import ProxySpec, parse_proxy_url
from ...errors import ConfigError, ConfigProblem
from ..config import ClientConfig, _protocols_check, _region_check, _regions_check
from .port import Settings

OVERLAY_NAME = "settings.json"
KEYS = ("EgressRegion", "LimitTunnelProtocols", "UpstreamProxyURL", "SplitTunnelOwnRegion",
        "SplitTunnelRegions", "WholeDevice")


def proxy_url(spec: ProxySpec | None) -> str:
    if spec is None:
        return ""
    user = ""
    if spec.username is not None:
        user = quote(spec.username, safe="") + (":" + quote(spec.password, safe="") if spec.password else "") + "@"
    host = f"[{spec.host}]" if ":" in spec.host else spec.host
    return f"{spec.scheme}://{user}{host}:{spec.port}"


def settings_of(config: ClientConfig) -> Settings:
    return Settings(egress_region=config.egress_region, protocols=tuple(config.protocols),
                    upstream_proxy=proxy_url(config.upstream_proxy),
                    split_tunnel_own_region=config.split_tunnel_own_region,
                    split_tunnel_regions=tuple(config.split_tunnel_regions),
                    whole_device=config.whole_device)


def settings_from_json(raw: Any) -> Settings:
    """A JSON body (``/api/settings``) -> Settings; every problem at once, by key."""
    if not isinstance(raw, dict):
        raise ConfigError([ConfigProblem("settings", "expected a JSON object")])
    problems: list[ConfigProblem] = []
    d = Settings()

    def take(key: str, kind, default):
        value = raw.get(key, default)
        if not isinstance(value, kind) or (kind is bool and not isinstance(value, bool)):
            problems.append(ConfigProblem(key, f"expected {getattr(kind, '__name__', kind)}"))
            return default
        return value

    unknown = sorted(set(raw) - {"egress_region", "protocols", "upstream_proxy", "split_tunnel_own_region",
                                 "split_tunnel_regions", "whole_device"})
    problems += [ConfigProblem(k, "unknown setting") for k in unknown]
    settings = Settings(
        egress_region=take("egress_region", str, d.egress_region).strip().upper(),
        protocols=tuple(take("protocols", list, list(d.protocols))),
        upstream_proxy=take("upstream_proxy", str, d.upstream_proxy).strip(),
        split_tunnel_own_region=take("split_tunnel_own_region", bool, False),
        split_tunnel_regions=tuple(r.strip().upper() if isinstance(r, str) else r
                                   for r in take("split_tunnel_regions", list, [])),
        whole_device=take("whole_device", bool, False))
    if problems:
        raise ConfigError(problems)
    return settings


def check(settings: Settings) -> ProxySpec | None:
    """Raise ConfigError naming each bad setting; the parsed upstream proxy otherwise."""
    problems = [ConfigProblem(key, message) for key, message in (
        ("egress_region", _region_check(settings.egress_region)),
        ("protocols", _protocols_check(list(settings.protocols))),
        ("split_tunnel_regions", _regions_check(list(settings.split_tunnel_regions)))) if message]
    spec = None
    if settings.upstream_proxy:
        try:
            spec = parse_proxy_url(settings.upstream_proxy)
        except ConfigError as exc:
            problems += [ConfigProblem("upstream_proxy", p.message) for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    return spec


def applied(config: ClientConfig, settings: Settings) -> ClientConfig:
    """``config`` with ``settings`` in effect (checked first)."""
    spec = check(settings)
    return replace(config, egress_region=settings.egress_region, protocols=tuple(settings.protocols),
                   upstream_proxy=spec, split_tunnel_own_region=settings.split_tunnel_own_region,
                   split_tunnel_regions=tuple(settings.split_tunnel_regions),
                   whole_device=settings.whole_device)


def as_keys(settings: Settings) -> dict[str, Any]:
    return {"EgressRegion": settings.egress_region, "LimitTunnelProtocols": list(settings.protocols),
            "UpstreamProxyURL": settings.upstream_proxy,
            "SplitTunnelOwnRegion": settings.split_tunnel_own_region,
            "SplitTunnelRegions": list(settings.split_tunnel_regions), "WholeDevice": settings.whole_device}


def overlay_path(data_dir: str) -> str:
    return os.path.join(data_dir, OVERLAY_NAME)


def read_overlay(data_dir: str) -> dict[str, Any]:
    """The keys a UI saved without --config ({} when none); a bad file is reported by key."""
    path = overlay_path(data_dir)
    if not os.path.exists(path):
        return {}
    raw = read_json_file(path)
    return {k: v for k, v in raw.items() if k in KEYS}


class SettingsFile:
    """Where changed settings are kept: the --config file, else the data dir's overlay."""

    def __init__(self, config_file: str | None, data_dir: str) -> None:
        self.path = config_file or overlay_path(data_dir)

    def save(self, settings: Settings) -> None:
        path = os.path.realpath(self.path)  # a symlinked config file is written through, not replaced
        raw: dict[str, Any] = {}
        mode = 0o600  # an upstream proxy URL may hold a password
        if os.path.exists(path):
            raw = read_json_file(path)
            mode = stat.S_IMODE(os.stat(path).st_mode)
        if "@" in settings.upstream_proxy:
            mode &= ~0o077  # a proxy password is never left readable by others
        raw.update(as_keys(settings))
        if not settings.whole_device:
            raw.pop("WholeDeviceShareLAN", None)  # needs WholeDevice: true
        os.makedirs(os.path.dirname(path), exist_ok=True)
        replace_file(path, (json.dumps(raw, indent=2, ensure_ascii=False) + "\n").encode("utf-8"), mode)
