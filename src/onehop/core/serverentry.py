"""Psiphon server entries: decode, validate, encode, tag and sign.

A server entry is the JSON record that tells a client how to reach one server. On the
wire it is the lowercase hex of ``<ip> <webServerPort> <webServerSecret>
<webServerCertificate> <JSON>``; modern entries (no certificate) use ``0`` for all four
legacy fields. Lists are newline-separated encoded entries.

:class:`ServerEntry` keeps the complete field map, so fields this version does not know
survive a decode/encode round trip and stay covered by the per-entry Ed25519 signature.
Two encoders exist, as in Psiphon: :func:`encode_server_entry` writes the Go struct
form (known fields in struct order, empty ones omitted, unknown ones dropped) and
:func:`encode_server_entry_fields` writes the generic map form (all fields, keys sorted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, UTC
from types import MappingProxyType
from typing import Any, TypeVar, cast, overload

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from onehop.core import canonicaljson
from onehop.core.api.names import CAPABILITY_SSH_API_REQUESTS
from onehop.core.api.protocols import SERVER_PROTOCOLS, TunnelProtocol
from onehop.errors import LocalProtocolError, RemoteProtocolError, ServerEntryError, SignatureError, UsageReason

MAX_ENCODED_LINE = 64 * 1024  # Go's bufio.Scanner token limit for list lines
SIGNATURE_KEY_ID_SIZE = 8
_T = TypeVar("_T")
UNSIGNED_FIELDS = ("localSource", "localTimestamp", "isLocalDerivedTag")

# Go ServerEntry struct order (psiphon/common/protocol/serverEntry.go) and the kind of
# each field. allowUpstreamProxy is newer than the struct copy we checked; its slot
# before the local fields is an assumption (it only matters when the field is set).
_S, _PORT, _INT, _BOOL, _LIST = "string", "port", "int", "bool", "list"
GO_FIELD_ORDER: tuple[tuple[str, str], ...] = (
    ("tag", _S), ("ipAddress", _S), ("webServerPort", _S), ("webServerSecret", _S),
    ("webServerCertificate", _S), ("sshPort", _PORT), ("sshUsername", _S), ("sshPassword", _S),
    ("sshHostKey", _S), ("sshObfuscatedPort", _PORT), ("sshObfuscatedQUICPort", _PORT),
    ("limitQUICVersions", _LIST), ("sshObfuscatedTapdancePort", _PORT),
    ("sshObfuscatedConjurePort", _PORT), ("sshObfuscatedKey", _S), ("sshShadowsocksPort", _PORT),
    ("sshShadowsocksKey", _S), ("capabilities", _LIST), ("region", _S), ("providerID", _S),
    ("frontingProviderID", _S), ("tlsOSSHPort", _PORT), ("meekServerPort", _PORT),
    ("meekCookieEncryptionPublicKey", _S), ("meekObfuscatedKey", _S), ("meekFrontingHost", _S),
    ("meekFrontingHosts", _LIST), ("meekFrontingDomain", _S), ("meekFrontingAddresses", _LIST),
    ("meekFrontingAddressesRegex", _S), ("meekFrontingDisableSNI", _BOOL),
    ("tacticsRequestPublicKey", _S), ("tacticsRequestObfuscatedKey", _S),
    ("configurationVersion", _INT), ("signature", _S), ("disableHTTPTransforms", _BOOL),
    ("disableObfuscatedQUICTransforms", _BOOL), ("disableOSSHTransforms", _BOOL),
    ("disableOSSHPrefix", _BOOL), ("disableShadowsocksPrefix", _BOOL),
    ("inproxySessionPublicKey", _S), ("inproxySessionRootObfuscationSecret", _S),
    ("inproxySSHPort", _PORT), ("inproxyOSSHPort", _PORT), ("inproxyQUICPort", _PORT),
    ("inproxyMeekPort", _PORT), ("inproxyTlsOSSHPort", _PORT), ("inproxyShadowsocksPort", _PORT),
    ("allowUpstreamProxy", _BOOL), ("localSource", _S), ("localTimestamp", _S),
    ("isLocalDerivedTag", _BOOL),
)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})\Z")


# ----------------------------------------------------------------------- helpers

def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """Go ``net.ParseIP``: dotted IPv4 or IPv6 text, no zone, no brackets; else None."""
    if not isinstance(text, str) or "%" in text or not text.isascii():
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _is_rfc3339(text: str) -> bool:
    m = _RFC3339.match(text)
    if not m:
        return False
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    zone = m.group(8)
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return zone == "Z" or (int(zone[1:3]) < 24 and int(zone[4:6]) < 60)


def _check_port(name: str, value: Any) -> None:
    if type(value) is not int:
        raise ServerEntryError(name, f"must be an integer port, got {type(value).__name__}")
    if not 1 <= value <= 65535:
        raise ServerEntryError(name, f"port {value} out of range 1..65535")


def _check_field(name: str, kind: str, value: Any) -> None:
    if kind == _PORT:
        _check_port(name, value)
    elif kind == _INT:
        if type(value) is not int or not -(1 << 63) <= value < (1 << 63):
            raise ServerEntryError(name, "must be a 64-bit integer")
    elif kind == _BOOL:
        if type(value) is not bool:
            raise ServerEntryError(name, "must be true or false")
    elif kind == _LIST:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ServerEntryError(name, "must be a list of strings")
        for item in value:
            _check_unicode(name, item)
    elif not isinstance(value, str):
        raise ServerEntryError(name, f"must be a string, got {type(value).__name__}")
    else:
        _check_unicode(name, value)


def _check_unicode(name: str, text: str) -> None:
    # Lone surrogates cannot be encoded; our decoder never yields them (Go's U+FFFD rule).
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ServerEntryError(name, "contains a lone surrogate") from None


def _check_special(fields: Mapping[str, Any]) -> None:
    ip = fields.get("ipAddress")
    if ip is None:
        raise ServerEntryError("ipAddress", "missing")
    if parse_ip(ip) is None:
        raise ServerEntryError("ipAddress", "not a valid IP address")
    port = fields.get("webServerPort", "")
    if port and not (len(port) <= 5 and port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ServerEntryError("webServerPort", "must be a decimal port string")
    for name in ("webServerSecret", "webServerCertificate"):
        if " " in fields.get(name, ""):
            raise ServerEntryError(name, "must not contain spaces")
    stamp = fields.get("localTimestamp")
    if stamp is not None and not _is_rfc3339(stamp):
        raise ServerEntryError("localTimestamp", "must be an RFC 3339 time")


def validate_fields(fields: Mapping[str, Any]) -> None:
    """Raise ServerEntryError naming the first bad field; unknown fields pass as-is."""
    for key in fields:
        if not isinstance(key, str):
            raise ServerEntryError("json", "field names must be strings")
    for name, kind in GO_FIELD_ORDER:
        if name in fields:
            _check_field(name, kind, fields[name])
    _check_special(fields)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# ----------------------------------------------------------------------- the value

@dataclass(frozen=True, eq=False)
class ServerEntry:
    """One validated server entry; ``fields`` is the full, read-only JSON field map."""

    fields: Mapping[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.fields, Mapping):
            raise ServerEntryError("json", "server entry must be a JSON object")
        validate_fields(self.fields)
        object.__setattr__(self, "fields", _freeze(self.fields))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerEntry) and canonicaljson.dumps(self.fields) == canonicaljson.dumps(other.fields)

    def __hash__(self) -> int:
        return hash(canonicaljson.dumps(self.fields))

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy of the fields (lists instead of tuples)."""
        return cast("dict[str, Any]", _thaw(self.fields))

    def with_fields(self, updates: Mapping[str, Any]) -> ServerEntry:
        """A new entry with ``updates`` applied (a value of None deletes the field)."""
        fields = self.to_dict()
        for key, value in updates.items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        return ServerEntry(fields)

    # Typed accessors. Validation already ran, so these only pick defaults:
    # "" for strings, None for ports, 0 / False / () for the rest (Go's zero values).

    def _field(self, name: str, default: _T) -> _T:
        # validate_fields checked each present field's type against its default's
        return cast(_T, self.fields.get(name, default))

    @property
    def ip_address(self) -> str:
        return cast(str, self.fields["ipAddress"])

    @property
    def web_server_port(self) -> str:
        return self._field("webServerPort", "")

    @property
    def web_server_secret(self) -> str:
        return self._field("webServerSecret", "")

    @property
    def web_server_certificate(self) -> str:
        return self._field("webServerCertificate", "")

    @property
    def ssh_port(self) -> int | None:
        return cast("int | None", self.fields.get("sshPort"))

    @property
    def ssh_username(self) -> str:
        return self._field("sshUsername", "")

    @property
    def ssh_password(self) -> str:
        return self._field("sshPassword", "")

    @property
    def ssh_host_key(self) -> str:
        return self._field("sshHostKey", "")

    @property
    def ssh_obfuscated_port(self) -> int | None:
        return cast("int | None", self.fields.get("sshObfuscatedPort"))

    @property
    def ssh_obfuscated_key(self) -> str:
        return self._field("sshObfuscatedKey", "")

    @property
    def capabilities(self) -> tuple[str, ...]:
        return cast("tuple[str, ...]", self.fields.get("capabilities", ()))

    @property
    def region(self) -> str:
        return self._field("region", "")

    @property
    def tag(self) -> str:
        return self._field("tag", "")

    @property
    def configuration_version(self) -> int:
        return self._field("configurationVersion", 0)

    @property
    def signature(self) -> str:
        return self._field("signature", "")

    @property
    def disable_ossh_prefix(self) -> bool:
        return self._field("disableOSSHPrefix", False)

    @property
    def local_source(self) -> str:
        return self._field("localSource", "")

    @property
    def local_timestamp(self) -> str:
        return self._field("localTimestamp", "")

    @property
    def is_local_derived_tag(self) -> bool:
        return self._field("isLocalDerivedTag", False)

    @property
    def provider_id(self) -> str:
        return self._field("providerID", "")

    @property
    def effective_tag(self) -> str:
        """The explicit tag, else the tag derived from ipAddress and webServerSecret."""
        return self.tag or derive_tag(self.ip_address, self.web_server_secret)

    @property
    def diagnostic_id(self) -> str:
        return diagnostic_id(self.effective_tag)

    def with_local(self, source: str, timestamp: str) -> ServerEntry:
        """Set the client-local bookkeeping fields (never signed)."""
        return self.with_fields({"localSource": source, "localTimestamp": timestamp})

    def with_derived_tag(self) -> ServerEntry:
        """Psiphon's SetTag: add a derived tag unless an explicit one is present."""
        if self.tag and not self.is_local_derived_tag:
            return self
        derived = derive_tag(self.ip_address, self.web_server_secret)
        return self.with_fields({"tag": derived, "isLocalDerivedTag": True})


def _as_entry(entry_or_fields: ServerEntry | Mapping[str, Any]) -> ServerEntry:
    if isinstance(entry_or_fields, ServerEntry):
        return entry_or_fields
    return ServerEntry(entry_or_fields)


def supported_protocols(entry: ServerEntry) -> set[TunnelProtocol]:
    """The tunnel protocols onehop implements that this entry offers (a capability and a port)."""
    caps = set(entry.capabilities)
    ports = {TunnelProtocol.OSSH: entry.ssh_obfuscated_port, TunnelProtocol.SSH: entry.ssh_port}
    return {protocol for protocol in SERVER_PROTOCOLS if protocol in caps and ports[protocol]}


def has_ssh_api_requests(entry: ServerEntry) -> bool:
    return CAPABILITY_SSH_API_REQUESTS in entry.capabilities


def derive_tag(ip_address: str, web_server_secret: str) -> str:
    """base64(HMAC-SHA256(key=webServerSecret text, msg=ipAddress text))."""
    mac = hmac.new(web_server_secret.encode("utf-8"), ip_address.encode("utf-8"), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def diagnostic_id(tag: str) -> str:
    """The first 8 characters of the tag (Psiphon's TagToDiagnosticID)."""
    return tag[:8] if len(tag) >= 8 else "<unknown>"


# ----------------------------------------------------------------------- codec

def _split_encoded(hex_line: str | bytes) -> bytes:
    if isinstance(hex_line, str):
        hex_line = hex_line.strip()
        if not hex_line.isascii():
            raise ServerEntryError("encoding", "not hex")
        hex_line = hex_line.encode("ascii")
    else:
        hex_line = bytes(hex_line).strip()
    if len(hex_line) > MAX_ENCODED_LINE:
        raise ServerEntryError("encoding", f"longer than {MAX_ENCODED_LINE} characters")
    try:
        text = binascii.a2b_hex(hex_line)
    except (binascii.Error, ValueError):
        raise ServerEntryError("encoding", "not hex") from None
    parts = text.split(b" ", 4)
    if len(parts) != 5:
        raise ServerEntryError("encoding", "fewer than five space-separated parts")
    return parts[4]


def decode_server_entry(hex_line: str | bytes) -> ServerEntry:
    """Decode one hex-encoded entry; every failure is a ServerEntryError."""
    try:
        json_part = _split_encoded(hex_line).decode("utf-8")
    except UnicodeDecodeError:
        raise ServerEntryError("encoding", "JSON part is not UTF-8") from None
    try:
        fields = canonicaljson.loads(json_part)
    except RemoteProtocolError as exc:
        raise ServerEntryError("json", exc.detail or exc.reason) from None
    if not isinstance(fields, dict):
        raise ServerEntryError("json", "server entry must be a JSON object")
    return ServerEntry(fields)


def struct_json(entry_or_fields: ServerEntry | Mapping[str, Any]) -> bytes:
    """Go ``json.Marshal(ServerEntry)``: struct order, empty fields omitted."""
    entry = _as_entry(entry_or_fields)
    parts = []
    for name, _kind in GO_FIELD_ORDER:
        value = entry.fields.get(name)
        if not value:
            continue  # omitempty: "", 0, false and [] are left out
        parts.append(canonicaljson.encode_string(name) + ":" + canonicaljson.encode_value(value))
    return ("{" + ",".join(parts) + "}").encode("utf-8")


def _encode_with_prefix(entry: ServerEntry, json_text: bytes) -> str:
    cert = entry.web_server_certificate
    if cert:
        prefix = f"{entry.ip_address} {entry.web_server_port} {entry.web_server_secret} {cert}"
    else:
        prefix = "0 0 0 0"
    return (prefix.encode("utf-8") + b" " + json_text).hex()


def encode_server_entry(entry_or_fields: ServerEntry | Mapping[str, Any]) -> str:
    """Psiphon's EncodeServerEntry (struct form; unknown fields are dropped)."""
    entry = _as_entry(entry_or_fields)
    return _encode_with_prefix(entry, struct_json(entry))


def encode_server_entry_fields(entry_or_fields: ServerEntry | Mapping[str, Any]) -> str:
    """Psiphon's EncodeServerEntryFields (map form: every field, keys sorted)."""
    entry = _as_entry(entry_or_fields)
    return _encode_with_prefix(entry, canonicaljson.dumps(entry.fields))


def decode_server_list(text: str | bytes) -> tuple[list[ServerEntry], list[ServerEntryError]]:
    """Decode a newline-separated list; bad lines are collected, not raised."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("ascii", "replace")  # hex is ASCII; others fail per line
    entries: list[ServerEntry] = []
    errors: list[ServerEntryError] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line:
            continue
        try:
            entries.append(decode_server_entry(line))
        except ServerEntryError as exc:
            errors.append(ServerEntryError(exc.field, f"line {number}: {exc.message}"))
    return entries, errors


def encode_server_list(entries: Iterable[ServerEntry | Mapping[str, Any]]) -> str:
    return "\n".join(encode_server_entry(e) for e in entries)


# ----------------------------------------------------------------------- signatures

def _b64decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise SignatureError(f"{what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{what} is not valid base64") from None


def signed_message(entry_or_fields: ServerEntry | Mapping[str, Any]) -> bytes:
    """The bytes Psiphon signs: the field map minus unsigned fields, Go-marshalled."""
    fields = dict(entry_or_fields.fields if isinstance(entry_or_fields, ServerEntry) else entry_or_fields)
    if fields.get("isLocalDerivedTag") is True:
        fields.pop("tag", None)
    for name in UNSIGNED_FIELDS + ("signature",):
        fields.pop(name, None)
    return canonicaljson.dumps(fields)


def _key_id(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:SIGNATURE_KEY_ID_SIZE]


def ed25519_keypair_from_seed(seed: bytes) -> tuple[str, str]:
    """(private key base64 in Go's 64-byte seed||public form, public key base64)."""
    if len(seed) != 32:
        raise LocalProtocolError(UsageReason.INVALID_KEY, "Ed25519 seed must be 32 bytes")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(seed + public).decode("ascii"), base64.b64encode(public).decode("ascii")


def _load_signing_key(private_key_b64: str) -> tuple[Ed25519PrivateKey, bytes]:
    try:
        raw = base64.b64decode(private_key_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "Ed25519 private key is not base64") from None
    if len(raw) != 64:
        raise LocalProtocolError(UsageReason.INVALID_KEY, "Ed25519 private key must be 64 bytes (seed||public)")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if public != raw[32:]:
        raise LocalProtocolError(UsageReason.INVALID_KEY, "Ed25519 private key halves do not match")
    return key, public


@overload
def sign_server_entry(entry_or_fields: ServerEntry, private_key_b64: str) -> ServerEntry: ...
@overload
def sign_server_entry(entry_or_fields: Mapping[str, Any], private_key_b64: str) -> dict[str, Any]: ...


def sign_server_entry(entry_or_fields: ServerEntry | Mapping[str, Any],
                      private_key_b64: str) -> ServerEntry | dict[str, Any]:
    """Return the entry (same type as given) with a fresh ``signature`` field."""
    key, public = _load_signing_key(private_key_b64)
    signature = key.sign(signed_message(entry_or_fields))
    value = base64.b64encode(_key_id(public) + signature).decode("ascii")
    if isinstance(entry_or_fields, ServerEntry):
        return entry_or_fields.with_fields({"signature": value})
    return {**entry_or_fields, "signature": value}


def verify_server_entry_signature(entry_or_fields: ServerEntry | Mapping[str, Any], public_key_b64: str) -> None:
    """Check the Ed25519 signature set by :func:`sign_server_entry`; raise SignatureError."""
    fields = entry_or_fields.fields if isinstance(entry_or_fields, ServerEntry) else entry_or_fields
    if not public_key_b64:
        raise LocalProtocolError(UsageReason.INVALID_KEY, "missing server entry signature public key")
    if "signature" not in fields:
        raise SignatureError("server entry has no signature field")
    decoded = _b64decode(fields["signature"], "signature field")
    if len(decoded) != SIGNATURE_KEY_ID_SIZE + 64:
        raise SignatureError("invalid signature length")
    try:
        public = base64.b64decode(public_key_b64, validate=True)
        verifier = Ed25519PublicKey.from_public_bytes(public)
    except (binascii.Error, ValueError, TypeError):
        raise LocalProtocolError(UsageReason.INVALID_KEY, "Ed25519 public key must be base64 of 32 bytes") from None
    if decoded[:SIGNATURE_KEY_ID_SIZE] != _key_id(public):
        raise SignatureError("unexpected public key ID")
    try:
        verifier.verify(decoded[SIGNATURE_KEY_ID_SIZE:], signed_message(fields))
    except InvalidSignature:
        raise SignatureError("invalid signature") from None


def rfc3339_timestamp(now: datetime) -> str:
    """``localTimestamp`` text (UTC, whole seconds) for a caller-supplied time."""
    if now.tzinfo is None:
        raise LocalProtocolError(UsageReason.NAIVE_DATETIME, "now must be timezone-aware")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
