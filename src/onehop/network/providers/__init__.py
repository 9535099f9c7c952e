"""Cloud providers: create a machine through a provider's API, release what was created.

The interface is small on purpose (:class:`Provider`): another provider (a
libcloud-backed one, say) is one module that implements it and one line in
:data:`KINDS`. Providers never touch the database: every resource they create is handed
to a ``record`` callback the moment it exists (``launch`` stores it in its own
transaction), and ``release`` reports each resource it released, so a provider error or
a quota limit half-way leaves a database that says exactly what exists.

Credentials never enter the database: a provider's settings name where they are
(the environment, or a credentials file), never the secrets themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import NetworkError


class ProviderError(NetworkError):
    """The provider refused or failed (``quota``: a limit was reached; retry later or raise it)."""

    def __init__(self, message: str, *, quota: bool = False, code: str = "") -> None:
        super().__init__(message)
        self.quota = quota
        self.code = code  # the provider's own error code, when it gave one


@dataclass(frozen=True)
class Resource:
    """One thing a launch created at the provider (``kind``: instance, security-group,
    key-pair, elastic-ip, machine ...), by the provider's own ID."""

    kind: str
    id: str
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LaunchRequest:
    """What to launch: ``ports`` are opened to the world besides management SSH;
    ``ssh_public_key`` is the network's management key for the provider;
    ``host_key_private``/``host_key_public`` the machine's SSH host key, made by the
    network so it is pinned before the machine first boots."""

    host_name: str
    region: str
    ports: tuple[int, ...]
    ssh_public_key: str
    host_key_private: str
    host_key_public: str


@dataclass(frozen=True)
class Machine:
    """A launched machine: where it is (public address) and the provider's ID for it."""

    id: str
    public_ip: str
    region: str
    ssh_port: int = 22
    ssh_username: str = "root"
    ssh_host_key: str = ""


@dataclass(frozen=True)
class Answer:
    """How the network reaches a machine that answered: the management address, port and
    pinned key, and the public address its servers get."""

    management_ip: str
    ssh_port: int
    ssh_host_key: str
    public_ip: str


Record = Callable[[Resource], None]


class Provider(Protocol):
    kind: str

    def country(self, region: str) -> str:
        """The two-letter country of a provider region (hosts are recorded by country)."""

    def region_for(self, country: str) -> str | None:
        """A region of this provider in ``country``, if any."""

    def launch(self, request: LaunchRequest, record: Record) -> Machine:
        """Create the machine; ``record`` every resource as soon as it exists."""

    def release(self, resources: list[Resource], released: Record) -> None:
        """Release ``resources`` (in the order given), calling ``released`` for each;
        a resource that is already gone counts as released."""


KINDS = {"aws": "onehop.network.providers.aws", "ssh": "onehop.network.providers.sshpool"}


def module_for(kind: str):
    if kind not in KINDS:
        raise ProviderError(f"unknown provider kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    return importlib.import_module(KINDS[kind])


def make_provider(kind: str, settings: dict) -> Provider:
    """The provider object for a ``providers`` row (each module has ``make(settings)``)."""
    return module_for(kind).make(settings)
