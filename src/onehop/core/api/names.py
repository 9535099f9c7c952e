"""Wire names of Psiphon's API: request names, parameter names, capabilities, platforms.

Only constants live here (and the two value patterns the parameter checks share), so
every other module of the package can import it without pulling anything else in.
"""

from __future__ import annotations

import re

REQUEST_HANDSHAKE = "psiphon-handshake"
REQUEST_CONNECTED = "psiphon-connected"
REQUEST_STATUS = "psiphon-status"
REQUEST_CLIENT_VERIFICATION = "psiphon-client-verification"  # legacy no-op
REQUEST_DSL = "psiphon-dsl"
SERVER_REQUEST_OSL = "psiphon-osl"  # server -> client, needs CLIENT_CAPABILITY_SERVER_REQUESTS
SERVER_REQUEST_ALERT = "psiphon-alert"

CAPABILITY_SSH_API_REQUESTS = "ssh-api-requests"  # server entry capability
CLIENT_CAPABILITY_SERVER_REQUESTS = "server-requests"  # SSH password ClientCapabilities

PARAM_AUTHORIZATIONS = "authorizations"
PARAM_PROPAGATION_CHANNEL_ID = "propagation_channel_id"
PARAM_SPONSOR_ID = "sponsor_id"
PARAM_CLIENT_VERSION = "client_version"
PARAM_CLIENT_PLATFORM = "client_platform"
PARAM_CLIENT_FEATURES = "client_features"
PARAM_CLIENT_BUILD_REV = "client_build_rev"
PARAM_SESSION_ID = "session_id"
PARAM_RELAY_PROTOCOL = "relay_protocol"
PARAM_SSH_CLIENT_VERSION = "ssh_client_version"
PARAM_DEVICE_REGION = "device_region"
PARAM_EGRESS_REGION = "egress_region"
PARAM_NETWORK_TYPE = "network_type"
PARAM_APPLIED_TACTICS_TAG = "applied_tactics_tag"
PARAM_STORED_TACTICS_TAG = "stored_tactics_tag"
PARAM_SPEED_TEST_SAMPLES = "speed_test_samples"
PARAM_SPLIT_TUNNEL = "split_tunnel"
PARAM_SPLIT_TUNNEL_REGIONS = "split_tunnel_regions"
PARAM_PADDING = "padding"
PARAM_PAD_RESPONSE = "pad_response"
PARAM_LAST_CONNECTED = "last_connected"
PARAM_ESTABLISHMENT_DURATION = "establishment_duration"
PARAM_STATUS_DATA = "statusData"
PARAM_PSIPHON_API_RESPONSE_VERSION = "psiphon_api_response_version"

PACKED_PAYLOAD_PREFIX = b"\x00\x01"  # distinguisher 0x00 (never starts JSON), version 1
API_RESPONSE_VERSION_CBOR = "1"
MAX_PAD_RESPONSE = 16384

PLATFORM_ANDROID, PLATFORM_IOS, PLATFORM_WINDOWS, PLATFORM_OTHER = "Android", "iOS", "Windows", "Other"

# Value syntax shared by the packed converters and the parameter/password checks.
DECIMAL = re.compile(r"[+-]?[0-9]+")  # what Go's strconv.Atoi accepts
HEX = re.compile(r"[0-9a-fA-F]+")
