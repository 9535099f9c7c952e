"""Identifiers: random hex IDs (sponsors, channels, campaigns), random site IDs
(unguessable publishing prefixes) and human-readable server aliases."""

from __future__ import annotations

import re
import secrets

_SITE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def hex_id() -> str:
    """16 random uppercase hex digits, as Psiphon's sponsor and channel IDs."""
    return secrets.token_hex(8).upper()


def site_id() -> str:
    """Three dash-separated groups of four random lowercase alphanumerics (~62 bits)."""
    return "-".join("".join(secrets.choice(_SITE_ALPHABET) for _ in range(4)) for _ in range(3))


def server_alias(host_name: str, number: int) -> str:
    """``<host>-<n>``: readable in reports, never an IP, never reused (n only grows)."""
    return f"{host_name.lower()}-{number}"


def name_problem(value: str) -> str | None:
    """Names that end up in server IDs and paths: letters, digits, ``.``, ``_``, ``-``."""
    if NAME_RE.fullmatch(value):
        return None
    return "use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
