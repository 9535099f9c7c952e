"""The single error hierarchy of onehop.

Every error we raise derives from ``OnehopError``. Protocol errors say whose fault they
are: ``LocalProtocolError`` (we misused an API) or ``RemoteProtocolError`` (the peer sent
something invalid), each with a ``reason`` from one of the ``Reason`` vocabularies
below. Library and OS exceptions are translated into these at one boundary per adapter,
never passed as strings.

Reasons are machine-readable and end up in logs and counters (``irregular_tunnel``'s
``tunnel_error``, feedback rejections, ``onehop mail stats``, debug lines), so each has
one spelling: snake_case, as psiphond spells its event and field names. psiphond itself
logs free text for the same events ("invalid magic value"), so there is no Psiphon
spelling to copy. A reason is a ``StrEnum`` member: it equals, formats and serialises as
its value. ``tests/unit/test_reasons.py`` fails on a reason written as a string literal.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Base of every reason vocabulary: a ``str`` whose value is what the logs show."""


class UsageReason(Reason):
    """Our own code called something wrongly (``LocalProtocolError``), in any module."""

    DATA_AFTER_EOF = "data_after_eof"
    BAD_ARGUMENT = "bad_argument"
    NAIVE_DATETIME = "naive_datetime"
    INVALID_KEY = "invalid_key"


class OSSHReason(Reason):
    """Obfuscated SSH: the preamble, the obfuscated KEX phase, and the listener's deadline."""

    BAD_MAGIC = "bad_magic"
    DUPLICATE_SEED = "duplicate_seed"
    BAD_PADDING_LENGTH = "bad_padding_length"
    BAD_PREFIX_HEADER = "bad_prefix_header"
    NO_PREFIX_TERMINATOR = "no_prefix_terminator"
    BAD_IDENTIFICATION_LINE = "bad_identification_line"
    BAD_KEX_PACKET = "bad_kex_packet"
    SEND_BEFORE_PREAMBLE = "send_before_preamble"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    INCOMPLETE_PREAMBLE = "incomplete_preamble"


class SSHReason(Reason):
    """SSH disconnects during the handshake, logged as irregular tunnels."""

    PROTOCOL_ERROR = "ssh_protocol_error"
    KEY_EXCHANGE_FAILED = "ssh_key_exchange_failed"
    MAC_ERROR = "ssh_mac_error"
    VERSION_NOT_SUPPORTED = "ssh_version_not_supported"


class HTTPReason(Reason):
    """HTTP/1: the client's response parser (``core.http1``) and the local proxy (``core.httpproxy``)."""

    BAD_METHOD = "http_bad_method"
    BAD_HEADER = "http_bad_header"
    BAD_REQUEST_LINE = "http_bad_request_line"
    BAD_TARGET = "http_bad_target"
    BAD_FRAMING = "http_bad_framing"
    BAD_STATUS = "http_bad_status"
    BAD_STATUS_LINE = "http_bad_status_line"
    BAD_CONTENT_LENGTH = "http_bad_content_length"
    BAD_CHUNK = "http_bad_chunk"
    UNSUPPORTED_ENCODING = "http_unsupported_encoding"
    HEAD_TOO_LARGE = "http_head_too_large"
    TRUNCATED = "http_truncated"
    EOF = "http_eof"
    NO_TRAILING_DATA = "http_no_trailing_data"
    ERROR_STATE = "http_error_state"
    UNEXPECTED_SEND = "http_unexpected_send"


class SOCKSReason(Reason):
    """The local SOCKS4a/5 server (``core.socks5``)."""

    BAD_VERSION = "socks_bad_version"
    EOF = "socks_eof"
    FIELD_TOO_LONG = "socks4_field_too_long"
    BAD_ADDRESS = "socks_bad_address"
    BAD_PORT = "socks_bad_port"
    BAD_REPLY_CODE = "socks_bad_reply_code"
    NO_TRAILING_DATA = "socks_no_trailing_data"
    ERROR_STATE = "socks_error_state"
    UNEXPECTED_REPLY = "socks_unexpected_reply"


class UpstreamProxyReason(Reason):
    """The client's upstream proxy handshake (``core.upstreamproxy``)."""

    AUTH_REQUIRED = "proxy_auth_required"
    AUTH_UNSUPPORTED = "proxy_auth_unsupported"
    AUTH_REJECTED = "proxy_auth_rejected"
    BAD_REPLY = "proxy_bad_reply"
    CONNECT_FAILED = "proxy_connect_failed"
    NOT_ALLOWED = "proxy_not_allowed"
    GENERAL_FAILURE = "proxy_general_failure"
    NETWORK_UNREACHABLE = "proxy_network_unreachable"
    HOST_UNREACHABLE = "proxy_host_unreachable"
    CONNECTION_REFUSED = "proxy_connection_refused"
    TTL_EXPIRED = "proxy_ttl_expired"
    COMMAND_NOT_SUPPORTED = "proxy_command_not_supported"
    ADDRESS_TYPE_NOT_SUPPORTED = "proxy_address_type_not_supported"
    BAD_CREDENTIALS = "proxy_bad_credentials"
    BAD_SCHEME = "proxy_bad_scheme"
    BAD_TARGET = "proxy_bad_target"
    BAD_TEXT = "proxy_bad_text"
    ERROR_STATE = "proxy_error_state"
    NOT_CONNECTED = "proxy_not_connected"
    CLOSED = "proxy_closed"


class UdpgwReason(Reason):
    """udpgw framing (``core.udpgw``)."""

    BAD_SIZE = "udpgw_bad_size"
    BAD_ADDRESS = "udpgw_bad_address"
    BAD_FIELD = "udpgw_bad_field"
    PAYLOAD_TOO_LARGE = "udpgw_payload_too_large"


class APIReason(Reason):
    """Psiphon's API over SSH (``core.api``): requests, responses, packed and JSON values."""

    UNSUPPORTED_PACKED_VERSION = "unsupported_packed_version"
    INVALID_REQUEST_PARAMS = "invalid_request_params"
    INVALID_HANDSHAKE_PARAMS = "invalid_handshake_params"
    INVALID_HANDSHAKE_RESPONSE = "invalid_handshake_response"
    INVALID_CONNECTED_RESPONSE = "invalid_connected_response"
    INVALID_STATUS_RESPONSE = "invalid_status_response"
    INVALID_STATUS_DATA = "invalid_status_data"
    INVALID_RAW_JSON = "invalid_raw_json"
    INVALID_SSH_PASSWORD_PAYLOAD = "invalid_ssh_password_payload"
    BAD_SSH_PASSWORD_PAYLOAD = "bad_ssh_password_payload"
    UNKNOWN_API_PARAMETER = "unknown_api_parameter"
    BAD_API_PARAMETER = "bad_api_parameter"
    BAD_PACKED_VALUE = "bad_packed_value"
    JSON_UNSUPPORTED_VALUE = "json_unsupported_value"


class CBORReason(Reason):
    """CBOR encoding and decoding (``core.cbor``)."""

    TOO_DEEP = "cbor_too_deep"
    UNSUPPORTED_TYPE = "cbor_unsupported_type"
    INT_OUT_OF_RANGE = "cbor_int_out_of_range"
    INVALID_TEXT = "cbor_invalid_text"
    UNSUPPORTED_KEY = "cbor_unsupported_key"
    TRAILING_DATA = "cbor_trailing_data"
    TRUNCATED = "cbor_truncated"
    UNEXPECTED_BREAK = "cbor_unexpected_break"
    MALFORMED = "cbor_malformed"
    TAG_UNSUPPORTED = "cbor_tag_unsupported"
    BAD_CHUNK = "cbor_bad_chunk"
    INVALID_UTF8 = "cbor_invalid_utf8"
    DUPLICATE_KEY = "cbor_duplicate_key"
    SIMPLE_UNSUPPORTED = "cbor_simple_unsupported"


class JSONReason(Reason):
    """Canonical JSON (``core.canonicaljson``)."""

    INVALID_JSON = "invalid_json"
    UNSUPPORTED_VALUE = "unsupported_value"


class PackageReason(Reason):
    """Signed, compressed packages: authenticated packages and upgrade packages."""

    INVALID_PACKAGE = "invalid_package"
    UNSTREAMABLE_DATA = "unstreamable_data"
    TOO_LARGE = "too_large"
    CORRUPT_COMPRESSION = "corrupt_compression"
    TRUNCATED = "truncated"
    TRAILING_DATA = "trailing_data"


class FeedbackReason(Reason):
    """Encrypted feedback blobs (``core.feedbackcrypto``, ``feedback.collect``)."""

    INVALID_BLOB = "invalid_blob"
    TOO_LARGE = "too_large"
    FOREIGN_KEY = "foreign_key"
    BAD_MAC = "bad_mac"
    BAD_PADDING = "bad_padding"


class DiscoveryReason(Reason):
    """Server discovery (``core.discovery``)."""

    INVALID_CLIENT_IP = "invalid_client_ip"
    RING_FULL = "ring_full"
    DUPLICATE_SERVER = "duplicate_server"


class MailReason(Reason):
    """What the mail responder did with a request, as ``onehop mail stats`` counts it:
    answered, refused (``rejected:<reason>``), or a queued reply given up (``failed:<reason>``)."""

    ANSWER = "answer"
    UNKNOWN_RECIPIENT = "unknown_recipient"
    NOTHING_TO_SEND = "nothing_to_send"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    BUSY = "busy"
    OVERSIZE = "oversize"
    MALFORMED = "malformed"
    NO_SENDER = "no_sender"
    BOUNCE = "bounce"
    AUTO_SUBMITTED = "auto_submitted"
    BULK_OR_LIST = "bulk_or_list"
    OWN_ADDRESS = "own_address"
    DKIM_FAIL = "dkim_fail"
    RATE_LIMIT = "rate_limit"
    STORE_ERROR = "store_error"
    RELAY_REFUSED = "relay_refused"
    EXPIRED = "expired"
    UNRENDERABLE = "unrenderable"
    BAD_ADDRESS = "bad_address"

    @classmethod
    def from_record(cls, text: str) -> str:
        """A reason as stored, in today's spelling: counters written before the vocabulary
        used kebab-case (``rate-limit``); anything unknown is returned unchanged."""
        try:
            return cls(text.replace("-", "_"))
        except ValueError:
            return text


class ForwardReason(Reason):
    """Why a port forward is allowed or refused: the server's policy, then traffic rules."""

    ALLOWED = "allowed"
    INVALID_PORT = "invalid_port"
    PORT_DISALLOWED = "port_disallowed"
    PORT_NOT_ALLOWED = "port_not_allowed"
    NOT_AN_IP_ADDRESS = "not_an_ip_address"
    OWN_PORT = "own_port"
    NON_PUBLIC_DESTINATION = "non_public_destination"
    RULES_TCP_PORT_DISALLOWED = "rules_tcp_port_disallowed"
    RULES_UDP_PORT_DISALLOWED = "rules_udp_port_disallowed"
    RULES_SUBNET_DISALLOWED = "rules_subnet_disallowed"
    RULES_ASN_DISALLOWED = "rules_asn_disallowed"
    RULES_TCP_PORT_NOT_ALLOWED = "rules_tcp_port_not_allowed"
    RULES_UDP_PORT_NOT_ALLOWED = "rules_udp_port_not_allowed"


class OnehopError(Exception):
    """Root of every error onehop raises on purpose."""


class ProtocolError(OnehopError):
    """A protocol rule was broken. ``reason`` is a stable, short identifier."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class LocalProtocolError(ProtocolError):
    """Our own code misused a protocol object (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol."""


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a configuration: the offending key and what is wrong."""

    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


class ConfigError(OnehopError):
    """A configuration failed validation; ``problems`` lists every problem at once."""

    def __init__(self, problems: list[ConfigProblem] | tuple[ConfigProblem, ...], source: str = "") -> None:
        self.problems = tuple(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} configuration problem(s){where}:\n{lines}")


class ServerEntryError(OnehopError):
    """A server entry could not be decoded or validated; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"invalid server entry field {field!r}: {message}")


class SignatureError(OnehopError):
    """A signature or key digest did not verify."""


class TunnelError(OnehopError):
    """Establishing or using a tunnel failed (dial, OSSH, SSH, API)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        self.message = message
        super().__init__(f"{stage}: {message}")


class UpstreamProxyError(OnehopError):
    """The configured upstream proxy refused or failed a connection."""


class TransferError(OnehopError):
    """An HTTP download or upload failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message)
