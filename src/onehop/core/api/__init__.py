"""Every wire name of Psiphon's client <-> server API, and the API's payload encodings.

After SSH authentication a client calls the server with SSH global requests
(``psiphon-handshake``, ``psiphon-connected``, ``psiphon-status``). A request payload is
either a JSON object of parameters or the "packed" form: ``00 01`` then a canonical CBOR
map with integer keys and compacted values (``PACKED_PARAMETERS``). Responses are JSON,
except a handshake response to a request with ``psiphon_api_response_version`` = "1",
which is CBOR with integer keys. The SSH password itself is a small JSON document.

JSON is written exactly as Go's ``encoding/json`` writes it (map keys sorted, no spaces,
``< > &`` and U+2028/2029 escaped), so payloads match Psiphon's byte for byte. Decoders
raise ``RemoteProtocolError`` for bad peer input; encoders raise ``LocalProtocolError``
for values we should never have produced.

The package is pure (bytes and values in, bytes and values out) and this module only
re-exports its parts, so ``from onehop.core import api`` sees one flat namespace:

* ``names``     request, parameter and capability names, platforms
* ``protocols`` ``TunnelProtocol`` (what onehop runs) and every protocol name Psiphon knows
* ``records``   typed request parameters (``HandshakeParams``...) for client and server
* ``packed``    the packed parameter table and its value converters
* ``gojson``    the Go ``encoding/json`` subset (writing and strict reading)
* ``requests``  request payloads as parameter maps, psiphond's checks, response padding
* ``responses`` handshake, connected and status responses
* ``password``  the SSH password payload
"""

from __future__ import annotations

from .gojson import go_json as _go_json  # noqa: F401  (used by tests/core/test_api.py)
from .names import (
    API_RESPONSE_VERSION_CBOR, CAPABILITY_SSH_API_REQUESTS, CLIENT_CAPABILITY_SERVER_REQUESTS,
    MAX_PAD_RESPONSE, PACKED_PAYLOAD_PREFIX, PARAM_AUTHORIZATIONS, PARAM_PAD_RESPONSE, PARAM_PADDING,
    PARAM_PSIPHON_API_RESPONSE_VERSION, PARAM_STATUS_DATA, PLATFORM_ANDROID, PLATFORM_IOS,
    PLATFORM_OTHER, PLATFORM_WINDOWS, REQUEST_CLIENT_VERIFICATION, REQUEST_CONNECTED,
    REQUEST_HANDSHAKE, REQUEST_STATUS,
)
from .packed import _CONVERTERS  # noqa: F401  (used by tests/core/test_api.py)
from .packed import (
    CONV_AUTHORIZATIONS, CONV_BASE64, CONV_FLOAT, CONV_INT, CONV_LOWERHEX, CONV_NONE,
    CONV_RAW_BASE64, CONV_RAW_JSON, CONV_UPPERHEX, PACKED_BY_KEY, PACKED_BY_NAME,
    PACKED_PARAMETERS, PackedParameter, pack_value, unpack_value,
)
from .password import SSHPasswordPayload, encode_ssh_password, parse_ssh_password
from .protocols import CLIENT_PROTOCOLS, KNOWN_TUNNEL_PROTOCOLS, SERVER_PROTOCOLS, TunnelProtocol
from .records import ConnectedParams, HandshakeParams, RequestParams, StatusParams, base_fields
from .requests import (
    connected_param_problems, decode_request_params, encode_request_params, handshake_param_problems,
    normalize_client_platform, pad_response_length, status_param_problems,
)
from .responses import _HANDSHAKE_FIELDS  # noqa: F401  (used by tests/core/test_api.py)
from .responses import (
    ConnectedResponse, HandshakeResponse, StatusResponse, decode_connected_response,
    decode_handshake_response, decode_status_response, encode_connected_response,
    encode_handshake_response, encode_status_response,
)

__all__ = [
    # names
    "REQUEST_HANDSHAKE", "REQUEST_CONNECTED", "REQUEST_STATUS", "REQUEST_CLIENT_VERIFICATION",
    "CAPABILITY_SSH_API_REQUESTS", "CLIENT_CAPABILITY_SERVER_REQUESTS",
    "PARAM_AUTHORIZATIONS", "PARAM_PADDING", "PARAM_PAD_RESPONSE", "PARAM_STATUS_DATA",
    "PARAM_PSIPHON_API_RESPONSE_VERSION",
    "PACKED_PAYLOAD_PREFIX", "API_RESPONSE_VERSION_CBOR", "MAX_PAD_RESPONSE",
    "PLATFORM_ANDROID", "PLATFORM_IOS", "PLATFORM_WINDOWS", "PLATFORM_OTHER",
    # protocols
    "TunnelProtocol", "CLIENT_PROTOCOLS", "SERVER_PROTOCOLS", "KNOWN_TUNNEL_PROTOCOLS",
    # records
    "RequestParams", "HandshakeParams", "ConnectedParams", "StatusParams", "base_fields",
    # packed
    "CONV_NONE", "CONV_INT", "CONV_FLOAT", "CONV_LOWERHEX", "CONV_UPPERHEX", "CONV_BASE64",
    "CONV_RAW_BASE64", "CONV_AUTHORIZATIONS", "CONV_RAW_JSON",
    "PackedParameter", "PACKED_PARAMETERS", "PACKED_BY_NAME", "PACKED_BY_KEY", "pack_value", "unpack_value",
    # requests
    "encode_request_params", "decode_request_params", "normalize_client_platform",
    "pad_response_length", "handshake_param_problems", "connected_param_problems",
    "status_param_problems",
    # responses
    "HandshakeResponse", "encode_handshake_response", "decode_handshake_response",
    "ConnectedResponse", "StatusResponse", "encode_connected_response", "encode_status_response",
    "decode_connected_response", "decode_status_response",
    # password
    "SSHPasswordPayload", "encode_ssh_password",
    "parse_ssh_password",
]
