"""Events an OSSH endpoint reports from ``next_event()``: frozen facts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreambleReceived:
    """The server validated the client's seed message (and prefix header, if any)."""

    padding_length: int
    prefix_spec_name: str | None


@dataclass(frozen=True)
class DataReceived:
    """De-obfuscated SSH bytes for the SSH library (upstream)."""

    data: bytes


@dataclass(frozen=True)
class EOFReceived:
    """The peer closed its sending direction."""


Event = PreambleReceived | DataReceived | EOFReceived
