"""Events an OSSH endpoint reports from ``next_event()``: frozen facts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PreambleReceived:
    """The server validated the client's seed message (and prefix header, if any)."""

    padding_length: int
    prefix_spec_name: str | None


@dataclass(frozen=True)
class KeysNeeded:
    """(Server, deferred key derivation) give ``provide_keys`` the RC4 keys for ``seed``.

    The OSSH key derivation is 6000 SHA-1 rounds per direction; a server may run it off
    its event loop and hand the result back.
    """

    seed: bytes


@dataclass(frozen=True)
class DataReceived:
    """De-obfuscated SSH bytes for the SSH library (upstream)."""

    data: bytes


@dataclass(frozen=True)
class EOFReceived:
    """The peer closed its sending direction."""


Event = PreambleReceived | KeysNeeded | DataReceived | EOFReceived
