"""Typed request parameters: what the client builds and the server reads, one record per request.

A record holds the parameters onehop itself sends or reads as typed fields, named as on the
wire (``status_data`` is ``statusData``), and every other parameter in ``extra`` as decoded.
Values follow Psiphon's ``APIParameters``: strings (decimal strings for numbers: the packed
form turns them into CBOR integers and back), tuples for list parameters, ``None`` for
absent. Go writes a nil slice as ``null`` and psiphond reads null as absent, so a null
parameter decodes to ``None``; an empty list stays an empty tuple.

``from_params``/``decode`` check a request against psiphond's rules (``params``) and raise
``RemoteProtocolError`` with every problem; ``encode`` checks our own records the same way
and raises ``LocalProtocolError``, so the client never sends what psiphond would refuse. A
received value of the wrong type for a field psiphond does not check stays in ``extra``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Self

from onehop.errors import APIReason, LocalProtocolError, RemoteProtocolError

from .gojson import is_string_list
from .names import (
    API_RESPONSE_VERSION_CBOR, PARAM_PAD_RESPONSE, PARAM_STATUS_DATA, PLATFORM_ANDROID,
    PLATFORM_IOS,
)
from .params import BASE_PARAMS, JSON, STRING, STRING_LIST, param_problems
from .requests import (
    connected_param_problems, decode_request_params, encode_request_params,
    handshake_param_problems, normalize_client_platform, pad_response_length, status_param_problems,
)


_BAD_API_PARAMETER = APIReason.BAD_API_PARAMETER


def _required(kind: str = STRING, wire: str | None = None) -> Any:
    return field(metadata={"kind": kind, "wire": wire})


def _optional(kind: str = STRING, wire: str | None = None) -> Any:
    return field(default=None, metadata={"kind": kind, "wire": wire})


def _fits(kind: str, value: Any) -> bool:
    if kind == STRING:
        return isinstance(value, str)
    if kind == STRING_LIST:
        return is_string_list(value)
    return True  # JSON: the record's own check says more where it matters


@dataclass(frozen=True, kw_only=True)
class RequestParams:
    """The parameters every request carries (psiphond's base parameters)."""

    #: The error reason of a record psiphond would refuse.
    REASON: ClassVar[APIReason] = APIReason.INVALID_REQUEST_PARAMS

    propagation_channel_id: str = _required()
    sponsor_id: str = _required()
    client_version: str = _required()
    client_platform: str = _required()
    client_features: tuple[str, ...] | None = _optional(STRING_LIST)
    client_build_rev: str | None = _optional()
    device_region: str | None = _optional()
    egress_region: str | None = _optional()
    network_type: str | None = _optional()
    applied_tactics_tag: str | None = _optional()
    pad_response: str | None = _optional()
    padding: str | None = _optional()
    extra: Mapping[str, Any] = field(default_factory=dict, metadata={"kind": None})

    def __post_init__(self) -> None:
        names = self._wire_names()
        clash = [wire for wire in self.extra if wire in names and getattr(self, names[wire]) is not None]
        if clash:
            raise LocalProtocolError(_BAD_API_PARAMETER, "set twice: " + ", ".join(sorted(clash)))

    # -- the wire form ---------------------------------------------------------------

    @classmethod
    def _wire_names(cls) -> dict[str, str]:
        """Wire name -> attribute name of every typed field."""
        return {f.metadata["wire"] or f.name: f.name for f in fields(cls) if f.metadata.get("kind")}

    @classmethod
    def problems(cls, params: Mapping[str, Any], relay_protocols: Collection[str] | None = None) -> list[str]:
        """psiphond's objections to a parameter map of this request (empty list = accepted)."""
        return param_problems(params, BASE_PARAMS)

    def to_params(self) -> dict[str, Any]:
        """The parameter map as Psiphon's client builds it: lists for tuples, absent for None."""
        params = dict(self.extra)
        for wire, name in self._wire_names().items():
            value = getattr(self, name)
            if value is not None:
                params[wire] = list(value) if isinstance(value, tuple) else value
        return params

    def encode(self, packed: bool) -> bytes:
        """Go JSON or ``00 01`` + packed CBOR; ``LocalProtocolError`` if psiphond would refuse it."""
        params = self.to_params()
        problems = self.problems(params)
        if problems:
            raise LocalProtocolError(self.REASON, "; ".join(problems))
        return encode_request_params(params, packed=packed)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], relay_protocols: Collection[str] | None = None) -> Self:
        """The record of decoded parameters, or ``RemoteProtocolError`` listing every problem.
        ``relay_protocols`` (handshake only) narrows ``relay_protocol`` to the server's own."""
        if not isinstance(params, Mapping):
            raise RemoteProtocolError(cls.REASON, "not a parameter map")
        problems = cls.problems(params, relay_protocols)
        if problems:
            raise RemoteProtocolError(cls.REASON, "; ".join(problems))
        kinds = {f.name: f.metadata["kind"] for f in fields(cls) if f.metadata.get("kind")}
        typed: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        names = cls._wire_names()
        for wire, value in params.items():
            name = names.get(wire)
            if value is None:
                continue  # null is absent
            if name is not None and _fits(kinds[name], value):
                typed[name] = tuple(value) if kinds[name] == STRING_LIST else value
            else:
                extra[wire] = value
        return cls(**typed, extra=extra)

    @classmethod
    def decode(cls, payload: bytes, relay_protocols: Collection[str] | None = None) -> Self:
        """Decode a JSON or packed payload; ``RemoteProtocolError`` for anything else."""
        return cls.from_params(decode_request_params(payload), relay_protocols)

    # -- what the server reads -------------------------------------------------------

    @property
    def pad_response_length(self) -> int:
        """Spaces of response padding asked for (0 when absent or unparsable)."""
        return pad_response_length({PARAM_PAD_RESPONSE: self.pad_response})

    @property
    def platform_class(self) -> str:
        """Psiphon's platform class of ``client_platform``: Android, iOS, Windows or Other."""
        return normalize_client_platform(self.client_platform)

    @property
    def is_mobile(self) -> bool:
        return self.platform_class in (PLATFORM_ANDROID, PLATFORM_IOS)


@dataclass(frozen=True, kw_only=True)
class HandshakeParams(RequestParams):
    """``psiphon-handshake``: the base parameters, how the tunnel was dialled, what it asks for."""

    REASON: ClassVar[APIReason] = APIReason.INVALID_HANDSHAKE_PARAMS

    relay_protocol: str = _required()
    session_id: str | None = _optional()
    ssh_client_version: str | None = _optional()
    psiphon_api_response_version: str | None = _optional()
    authorizations: tuple[str, ...] | None = _optional(STRING_LIST)
    stored_tactics_tag: str | None = _optional()
    split_tunnel: str | None = _optional()
    split_tunnel_regions: tuple[str, ...] | None = _optional(STRING_LIST)
    missing_server_entry_signature: str | None = _optional()
    missing_server_entry_provider_id: str | None = _optional()
    dial_port_number: str | None = _optional()
    dial_duration: str | None = _optional()
    candidate_number: str | None = _optional()
    established_tunnels_count: str | None = _optional()
    is_replay: str | None = _optional()
    upstream_ossh_padding: str | None = _optional()
    ossh_prefix: str | None = _optional()
    upstream_proxy_type: str | None = _optional()
    server_entry_region: str | None = _optional()
    server_entry_source: str | None = _optional()
    server_entry_timestamp: str | None = _optional()

    @classmethod
    def problems(cls, params: Mapping[str, Any], relay_protocols: Collection[str] | None = None) -> list[str]:
        return handshake_param_problems(params, relay_protocols)

    @property
    def wants_cbor_response(self) -> bool:
        """True when the client asked for the CBOR handshake response."""
        return self.psiphon_api_response_version == API_RESPONSE_VERSION_CBOR

    @property
    def missing_entry_tag(self) -> str | None:
        """The tag of the server entry the client holds unsigned (it asks for a signed copy)."""
        return self.missing_server_entry_signature or self.missing_server_entry_provider_id


@dataclass(frozen=True, kw_only=True)
class ConnectedParams(RequestParams):
    """``psiphon-connected``: the client's previous connected time, for unique-user counts."""

    last_connected: str = _required()
    establishment_duration: str | None = _optional()

    @classmethod
    def problems(cls, params: Mapping[str, Any], relay_protocols: Collection[str] | None = None) -> list[str]:
        return connected_param_problems(params)


@dataclass(frozen=True, kw_only=True)
class StatusParams(RequestParams):
    """``psiphon-status``: persistent stats and server entry tags to check, in ``statusData``."""

    # RUF009 is wrong here: _required returns a dataclasses.field(), so no default object is shared.
    status_data: dict[str, Any] = _required(JSON, wire=PARAM_STATUS_DATA)  # noqa: RUF009

    @classmethod
    def problems(cls, params: Mapping[str, Any], relay_protocols: Collection[str] | None = None) -> list[str]:
        return status_param_problems(params)


def base_fields(record: RequestParams) -> dict[str, Any]:
    """The base parameters a record sets (absent ones left out), to build another request's
    record from them: ``ConnectedParams(**base_fields(base), last_connected=...)``."""
    return {f.name: getattr(record, f.name) for f in fields(RequestParams)
            if getattr(record, f.name) not in (None, {})}
