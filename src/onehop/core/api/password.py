"""The SSH password a Psiphon client authenticates with: a small JSON document.

``{"SessionId", "SshPassword", "ClientCapabilities"[, "SponsorId"]}`` in Go struct order,
or, from old clients, the 32-char session id followed by the 64-char password.
"""

from __future__ import annotations

from dataclasses import dataclass

from onehop.errors import APIReason, LocalProtocolError, RemoteProtocolError

from .gojson import go_json_object, is_string_list, member, parse_json_object
from .names import HEX

SESSION_ID_LENGTH = 32  # hex chars (16 random bytes)
SPONSOR_ID_LENGTH = 16  # hex chars
_LEGACY_PASSWORD_LENGTH = 64


@dataclass(frozen=True)
class SSHPasswordPayload:
    """What the client sends as its SSH password; ``sponsor_id`` None (or "") = absent."""

    session_id: str
    ssh_password: str
    client_capabilities: tuple[str, ...] = ()
    sponsor_id: str | None = None


def _password_problem(session_id: str, sponsor_id: str | None) -> str | None:
    if len(session_id) != SESSION_ID_LENGTH or not HEX.fullmatch(session_id):
        return f"session id must be {SESSION_ID_LENGTH} hex chars"
    if sponsor_id and (len(sponsor_id) != SPONSOR_ID_LENGTH or not HEX.fullmatch(sponsor_id)):
        return f"sponsor id must be {SPONSOR_ID_LENGTH} hex chars"
    return None


def encode_ssh_password(payload: SSHPasswordPayload) -> str:
    """The JSON password: SessionId, SshPassword, ClientCapabilities[, SponsorId]."""
    problem = _password_problem(payload.session_id, payload.sponsor_id)
    if problem:
        raise LocalProtocolError(APIReason.BAD_SSH_PASSWORD_PAYLOAD, problem)
    pairs = [("SessionId", payload.session_id), ("SshPassword", payload.ssh_password),
             ("ClientCapabilities", list(payload.client_capabilities))]
    if payload.sponsor_id:
        pairs.append(("SponsorId", payload.sponsor_id))
    return go_json_object(pairs)


def parse_ssh_password(text: str | bytes) -> SSHPasswordPayload:
    """Parse the JSON password, or the legacy 32-char session id + 64-char password."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(APIReason.INVALID_SSH_PASSWORD_PAYLOAD, "not UTF-8") from None
    if text.lstrip(" \t\r\n").startswith("{"):
        payload = _parse_password_json(text)
    elif len(text) == SESSION_ID_LENGTH + _LEGACY_PASSWORD_LENGTH:
        payload = SSHPasswordPayload(text[:SESSION_ID_LENGTH], text[SESSION_ID_LENGTH:])
    else:
        raise RemoteProtocolError(APIReason.INVALID_SSH_PASSWORD_PAYLOAD, "neither JSON nor the legacy form")
    problem = _password_problem(payload.session_id, payload.sponsor_id)
    if problem:
        raise RemoteProtocolError(APIReason.INVALID_SSH_PASSWORD_PAYLOAD, problem)
    return payload


def _parse_password_json(text: str) -> SSHPasswordPayload:
    obj = parse_json_object(text, "ssh_password_payload")
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    what = "ssh_password_payload"
    capabilities = member(obj, "ClientCapabilities", is_string_list, what) or []
    return SSHPasswordPayload(
        session_id=member(obj, "SessionId", is_str, what) or "",
        ssh_password=member(obj, "SshPassword", is_str, what) or "",
        client_capabilities=tuple(capabilities),
        sponsor_id=member(obj, "SponsorId", is_str, what) or None,
    )
