"""Wire names of Psiphon's API: request names, capabilities, platforms, and the parameter
names the package's own code reads (a parameter's name is otherwise its record field's name).

Only constants live here (and the two value patterns the parameter checks share), so
every other module of the package can import it without pulling anything else in.
"""

from __future__ import annotations

import re

REQUEST_HANDSHAKE = "psiphon-handshake"
REQUEST_CONNECTED = "psiphon-connected"
REQUEST_STATUS = "psiphon-status"
REQUEST_CLIENT_VERIFICATION = "psiphon-client-verification"  # legacy no-op

CAPABILITY_SSH_API_REQUESTS = "ssh-api-requests"  # server entry capability
# SSH password ClientCapabilities: the client may be sent psiphon-osl/psiphon-alert
CLIENT_CAPABILITY_SERVER_REQUESTS = "server-requests"

PARAM_AUTHORIZATIONS = "authorizations"
PARAM_PADDING = "padding"
PARAM_PAD_RESPONSE = "pad_response"
PARAM_STATUS_DATA = "statusData"
PARAM_PSIPHON_API_RESPONSE_VERSION = "psiphon_api_response_version"

PACKED_PAYLOAD_PREFIX = b"\x00\x01"  # distinguisher 0x00 (never starts JSON), version 1
API_RESPONSE_VERSION_CBOR = "1"
MAX_PAD_RESPONSE = 16384

PLATFORM_ANDROID, PLATFORM_IOS, PLATFORM_WINDOWS, PLATFORM_OTHER = "Android", "iOS", "Windows", "Other"

# Value syntax shared by the packed converters and the parameter/password checks.
DECIMAL = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi accepts
HEX = re.compile(r"[0-9a-fA-F]+")
