"""The Psiphon API encodings against Psiphon's vectors (vectors/api.json), plus fuzzing."""

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import api
from onehop.core.api import (
    ConnectedResponse, HandshakeResponse, SSHPasswordPayload, StatusResponse,
    decode_connected_response, decode_handshake_response, decode_request_params,
    decode_status_response, encode_connected_response, encode_handshake_response,
    encode_request_params, encode_ssh_password, encode_status_response, handshake_param_problems,
    HandshakeParams, normalize_client_platform, pad_response_length, parse_ssh_password,
)
from onehop.core.cbor import dumps, loads
from onehop.errors import LocalProtocolError, RemoteProtocolError
from tests.conftest import vector_cases

# vector_cases' own first parameter is called ``name``, so it cannot match on the cases' field.
CASES = {case["name"]: case for case in vector_cases("api")}
REQUEST, RESPONSE, PASSWORD = CASES["handshake_request"], CASES["handshake_response"], CASES["ssh_password_payload"]
REQUEST_PARAMS = json.loads(REQUEST["json_payload"])

# The vector's sample response, field by field (not parsed from the vector).
SAMPLE_RESPONSE = HandshakeResponse(
    homepages=("https://example.com/welcome?c=US",),
    upgrade_client_version="188",
    https_request_regexes=({"regex": r"^https://example\.com/(.*)$", "replace": "$1"},),
    encoded_server_list=("30203020302030207b22697041646472657373223a223139382e35312e3130302e3939222c"
                         "22726567696f6e223a224341227d",),
    client_region="US",
    client_address="192.0.2.200:51234",
    server_timestamp="2026-07-31T10:20:30Z",
)


# ------------------------------------------------------------------------ vectors


def test_packed_handshake_request_matches_psiphon():
    assert encode_request_params(REQUEST_PARAMS, packed=True).hex() == REQUEST["cbor_payload"]


def test_json_handshake_request_matches_psiphon():
    assert encode_request_params(REQUEST_PARAMS, packed=False).decode() == REQUEST["json_payload"]


def test_packed_map_matches_vector_table():
    expected = {int(key): bytes.fromhex(value["bytes_hex"]) if isinstance(value, dict) else value
                for key, value in REQUEST["packed_map"].items()}
    payload = bytes.fromhex(REQUEST["cbor_payload"])
    assert payload[:2] == api.PACKED_PAYLOAD_PREFIX
    assert loads(payload[2:]) == expected


def test_packed_request_decodes_to_what_the_go_server_sees():
    params = decode_request_params(bytes.fromhex(REQUEST["cbor_payload"]))
    assert params == json.loads(REQUEST["decoded_back_json"])
    assert HandshakeParams.from_params(params).wants_cbor_response


def test_json_request_decodes_to_its_params():
    assert decode_request_params(REQUEST["json_payload"].encode()) == REQUEST_PARAMS


def test_handshake_response_matches_psiphon_json_and_cbor():
    assert encode_handshake_response(SAMPLE_RESPONSE, cbor=False).decode() == RESPONSE["json_payload"]
    assert encode_handshake_response(SAMPLE_RESPONSE, cbor=True).hex() == RESPONSE["cbor_payload"]


def test_handshake_response_decodes_from_both_encodings():
    assert decode_handshake_response(RESPONSE["json_payload"].encode()) == SAMPLE_RESPONSE
    assert decode_handshake_response(bytes.fromhex(RESPONSE["cbor_payload"])) == SAMPLE_RESPONSE


def test_ssh_password_payload_matches_psiphon():
    payload = SSHPasswordPayload(
        session_id="4f1c2b3a5d6e7f8091a2b3c4d5e6f708",
        ssh_password="9b2e0f6a1c3d5e7f8091a2b3c4d5e6f7089a1b2c3d4e5f60718293a4b5c6d7e8",
        client_capabilities=(api.CLIENT_CAPABILITY_SERVER_REQUESTS,),
        sponsor_id="0123456789ABCDEF",
    )
    assert encode_ssh_password(payload) == PASSWORD["json_payload"]
    assert parse_ssh_password(PASSWORD["json_payload"]) == payload
    assert parse_ssh_password(PASSWORD["json_payload"].encode()) == payload


def test_vector_request_name_is_ours():
    assert REQUEST["ssh_request_name"] == api.REQUEST_HANDSHAKE


# ---------------------------------------------------------------------- converters

CONVERSIONS = [  # (param, value given, packed value, value the server sees)
    ("client_version", "187", 187, "187"),
    ("dial_port_number", "-5", -5, "-5"),
    ("dial_duration", "+7", 7, "7"),
    ("bytes", "9223372036854775807", 2**63 - 1, "9223372036854775807"),
    ("meek_redial_probability", "0.5", 0.5, "0.500000"),
    ("network_latency_multiplier", "1.25e1", 12.5, "12.500000"),
    ("record_probability", 0.1, 0.1, "0.100000"),
    ("session_id", "4F1C2B3A", bytes.fromhex("4f1c2b3a"), "4f1c2b3a"),
    ("applied_tactics_tag", "", b"", ""),
    ("sponsor_id", "0123456789abcdef", bytes.fromhex("0123456789abcdef"), "0123456789ABCDEF"),
    ("fronting_provider_id", "ab01", b"\xab\x01", "AB01"),
    ("server_entry_tag", "hO3ECCFnTRJZVNZUa1/kdYMFrw01M/iEB0DWiGO3J9I=",
     base64.b64decode("hO3ECCFnTRJZVNZUa1/kdYMFrw01M/iEB0DWiGO3J9I="),
     "hO3ECCFnTRJZVNZUa1/kdYMFrw01M/iEB0DWiGO3J9I="),
    ("inproxy_connection_id", "AAECAw", b"\x00\x01\x02\x03", "AAECAw"),
    ("inproxy_broker_fronting_provider_id", "ab01", b"\xab\x01", "AB01"),
    ("inproxy_broker_is_replay", "1", 1, "1"),
    ("liveness_test_received_downstream_bytes", "4096", 4096, "4096"),
    ("inproxy_webrtc_stun_server", "stun.example.org:3478", "stun.example.org:3478", "stun.example.org:3478"),
    ("authorizations", [], b"\x80", []),
    ("authorizations", ["YWJj", "ZGVm"], dumps(["YWJj", "ZGVm"]), ["YWJj", "ZGVm"]),
    ("statusData", {"b": [], "a": "<"}, b'{"a":"\\u003c","b":[]}', {"a": "<", "b": []}),
    ("statusData", b'{ "a" : 1 }', b'{ "a" : 1 }', {"a": 1}),
    ("client_platform", "Windows_10", "Windows_10", "Windows_10"),
    ("client_features", ["VPN", "x"], ["VPN", "x"], ["VPN", "x"]),
    ("speed_test_samples", [{"rtt_ms": 5}], [{"rtt_ms": 5}], [{"rtt_ms": 5}]),
]


@pytest.mark.parametrize("name,given_value,packed,seen", CONVERSIONS, ids=lambda x: str(x)[:24])
def test_converter(name, given_value, packed, seen):
    key, value = api.pack_value(name, given_value)
    assert key == api.PACKED_BY_NAME[name].key
    assert value == packed and type(value) is type(packed)
    assert api.unpack_value(key, value) == (name, seen)
    payload = encode_request_params({name: given_value}, packed=True)
    assert decode_request_params(payload) == {name: seen}


def test_float_converter_packs_shortest_cbor_float():
    assert encode_request_params({"meek_redial_probability": "0.5"}, True) == bytes.fromhex("0001a1183" "2f93800")


@pytest.mark.parametrize("value,seen", [(float("nan"), "NaN"), (float("inf"), "+Inf"),
                                         (float("-inf"), "-Inf"), (3, "3.000000"), (-0.0, "-0.000000")])
def test_float_unpacks_like_go_percent_f(value, seen):
    assert api.unpack_value(50, value) == ("meek_redial_probability", seen)


@pytest.mark.parametrize("name,value", [
    ("client_version", "1.5"), ("client_version", " 1"), ("client_version", "1_0"),
    ("client_version", ""), ("client_version", 5), ("client_version", "9223372036854775808"),
    ("client_version", "9" * 5000),
    ("meek_redial_probability", "nan"), ("meek_redial_probability", "1e999"),
    ("meek_redial_probability", True), ("session_id", "abc"), ("session_id", "zz"),
    ("session_id", "0x12"), ("session_id", "ab cd"), ("server_entry_tag", "!!!!"),
    ("server_entry_tag", "abc"), ("inproxy_connection_id", "AA=="), ("authorizations", "YWJj"),
    ("authorizations", [1]), ("statusData", b"not json"), ("statusData", {"a": float("nan")}),
    ("statusData", {1: "a"}), ("no_such_param", "x"),
])
def test_pack_rejects_bad_local_values(name, value):
    with pytest.raises(LocalProtocolError):
        encode_request_params({name: value}, packed=True)


@pytest.mark.parametrize("packed", [
    {8: "187"}, {8: True}, {8: 1.5}, {14: "abcd"}, {6: 7}, {50: "x"}, {1: b"\x01"},
    {1: b"\x81\x01"}, {1: b"\xa0"}, {1: "x"}, {142: b"{"}, {142: b"\xff"}, {142: "{}"},
    {3: b"\x00"}, {9: {1: "x"}}, {76: 5},
])
def test_unpack_rejects_bad_peer_values(packed):
    with pytest.raises(RemoteProtocolError) as info:
        decode_request_params(api.PACKED_PAYLOAD_PREFIX + dumps(packed))
    assert info.value.reason in ("bad_packed_value", "invalid_status_data") or info.value.reason.startswith("cbor_")


def test_unknown_packed_keys_are_ignored():
    payload = api.PACKED_PAYLOAD_PREFIX + dumps({8: 187, 172: "newer", 200: b"x", -1: 0, "x": 1})
    assert decode_request_params(payload) == {"client_version": "187"}


def test_in_proxy_and_liveness_keys_are_known():
    payload = api.PACKED_PAYLOAD_PREFIX + dumps({100: "in-proxy", 80: b"\xab\x01", 135: 1024, 166: 1})
    assert decode_request_params(payload) == {
        "inproxy_broker_dns_transform": "in-proxy", "inproxy_broker_fronting_provider_id": "AB01",
        "liveness_test_upstream_bytes": "1024", "inproxy_webrtc_use_media_streams": "1"}


def test_packed_table_is_consistent():
    keys = [p.key for p in api.PACKED_PARAMETERS]
    assert keys == sorted(set(keys))
    assert len(api.PACKED_BY_NAME) == len(api.PACKED_PARAMETERS)
    assert {p.converter for p in api.PACKED_PARAMETERS} <= set(api._CONVERTERS)
    assert api.PACKED_BY_KEY[168].name == api.PARAM_PSIPHON_API_RESPONSE_VERSION
    assert api.PACKED_BY_KEY[142].name == api.PARAM_STATUS_DATA


def test_packed_table_has_every_key_of_psiphon_once():
    keys = [p.key for p in api.PACKED_PARAMETERS]
    assert sorted(keys) == list(range(1, 172))
    assert len(set(keys)) == len(keys) == len({p.name for p in api.PACKED_PARAMETERS}) == 171
    assert api.PACKED_BY_KEY[78] == api.PackedParameter(78, "inproxy_broker_is_replay", api.CONV_INT)
    assert api.PACKED_BY_KEY[108].name == "inproxy_webrtc_stun_server_RFC5780"
    assert api.PACKED_BY_KEY[143].name == "inproxy_webrtc_local_ice_candidate_is_private_IP"
    assert api.PACKED_BY_KEY[166] == api.PackedParameter(166, "inproxy_webrtc_use_media_streams", api.CONV_INT)


# ---------------------------------------------------------------- request payloads


def test_packed_keys_are_canonically_ordered():
    params = {"psiphon_api_response_version": "1", "meek_transformed_host_name": "0", "meek_host_header": "h"}
    expected = bytes.fromhex("0001a3" "176168" "181800" "18a801")
    assert encode_request_params(params, True) == expected
    assert encode_request_params(dict(reversed(list(params.items()))), True) == expected


def test_json_request_uses_go_escaping_and_sorted_keys():
    params = {"b": "<a&b>", "a": "\u2028x", "c": "\u00e9\n\x01\x7f\"\\", "d": "\ud800"}
    expected = '{"a":"\\u2028x","b":"\\u003ca\\u0026b\\u003e","c":"\u00e9\\n\\u0001\x7f\\"\\\\","d":"\ufffd"}'
    assert encode_request_params(params, False) == expected.encode()


def test_json_request_numbers_follow_go():
    params = {"w": 0.5, "x": 1.0, "y": 1e21, "z": 1e-7, "v": 123456789.0, "u": -0.0, "t": 10**20 * 1.0}
    assert encode_request_params(params, False) == (
        b'{"t":100000000000000000000,"u":-0,"v":123456789,"w":0.5,"x":1,"y":1e+21,"z":1e-7}')


def test_json_request_embeds_raw_status_data_compacted():
    payload = encode_request_params({"statusData": b'{ "a" : "<\\"" ,\n "b": [1, 2] }'}, False)
    assert payload == b'{"statusData":{"a":"\\u003c\\"","b":[1,2]}}'


def test_json_request_rejects_unencodable_values():
    for bad in (float("nan"), object(), {1: "x"}):
        with pytest.raises(LocalProtocolError):
            encode_request_params({"x": bad}, False)


@pytest.mark.parametrize("payload,reason", [
    (b"", "invalid_request_params"), (b"[]", "invalid_request_params"),
    (b"{", "invalid_request_params"), (b"\xff", "invalid_request_params"),
    (b'{"a": NaN}', "invalid_request_params"), (b'{"a": 1e999}', "invalid_request_params"),
    (b"\x00", "unsupported_packed_version"), (b"\x00\x02\xa0", "unsupported_packed_version"),
    (b"\x00\x01", "cbor_truncated"), (b"\x00\x01\x80", "invalid_request_params"),
    (b"\x00\x01\xa0\x00", "cbor_trailing_data"),
])
def test_decode_request_rejects(payload, reason):
    with pytest.raises(RemoteProtocolError) as info:
        decode_request_params(payload)
    assert info.value.reason == reason


# ---------------------------------------------------------------------- validation


def test_vector_handshake_params_are_valid():
    assert handshake_param_problems(REQUEST_PARAMS) == []
    HandshakeParams.decode(bytes.fromhex(REQUEST["cbor_payload"]))


def test_every_missing_required_param_is_reported():
    problems = handshake_param_problems({})
    assert len(problems) == 5
    for name in ("propagation_channel_id", "sponsor_id", "client_version", "client_platform", "relay_protocol"):
        assert f"{name}: missing" in problems


@pytest.mark.parametrize("name,value", [
    ("propagation_channel_id", "XYZ"), ("sponsor_id", ["AB"]), ("sponsor_id", "ABCD"),
    ("client_version", "1.0"), ("client_version", "v1"), ("client_version", str(2**63)),
    ("client_platform", "Android 13"), ("relay_protocol", "FOO"), ("client_features", "VPN"),
    ("client_features", ["a", 1]), ("device_region", ["US"]), ("split_tunnel_regions", "US"),
    ("split_tunnel_regions", ["us"]), ("authorizations", [1]), ("authorizations", "x"),
    ("padding", 5), ("egress_region", "USA"), ("egress_region", ""), ("client_build_rev", "xyz"),
    ("device_location", "a"), ("upstream_proxy_type", "https"), ("meek_dial_address", "a:b"),
    ("meek_resolved_ip_address", "fe80::1%eth0"), ("is_replay", "true"),
    ("network_latency_multiplier", "1e999"), ("server_entry_timestamp", "2026-02-30T00:00:00Z"),
    ("server_entry_source", "FOO"), ("missing_server_entry_signature", "a"),
    ("inproxy_connection_id", "YQ=="), ("meek_sni_server_name", "-a.example"),
])
def test_bad_handshake_param_is_reported(name, value):
    problems = handshake_param_problems({**REQUEST_PARAMS, name: value})
    assert len(problems) == 1 and problems[0].startswith(name)
    with pytest.raises(RemoteProtocolError) as info:
        HandshakeParams.from_params({**REQUEST_PARAMS, name: value})
    assert info.value.reason == "invalid_handshake_params"


@pytest.mark.parametrize("name,value", [
    # psiphond's checks let these through, so onehop does too.
    ("propagation_channel_id", ""), ("client_platform", ""), ("client_build_rev", ""),
    ("speed_test_samples", ["x"]), ("speed_test_samples", 5), ("client_features", []),
    ("server_entry_source", "TARGET_SERVER"), ("network_latency_multiplier", "+Inf"),
    ("network_latency_multiplier", "0x1p-2"), ("meek_sni_server_name", "a_b.example."),
    ("server_entry_timestamp", "2026-07-31T10:20:30.123456789+0100"), ("egress_region", "DE"),
    ("missing_server_entry_signature", "YWJj\n"), ("inproxy_connection_id", "YWI"),
    ("meek_host_header", "example.org:443"), ("upstream_proxy_type", "SOCKS5"),
])
def test_what_psiphond_accepts_is_accepted(name, value):
    assert handshake_param_problems({**REQUEST_PARAMS, name: value}) == []


@pytest.mark.parametrize("name", ["client_features", "split_tunnel_regions", "authorizations",
                                  "device_region", "speed_test_samples", "egress_region"])
@pytest.mark.parametrize("packed", [True, False])
def test_null_optional_params_count_as_absent(name, packed):
    """Go writes a nil slice as null (Psiphon's client sends client_features so)."""
    if packed:
        spec = api.PACKED_BY_NAME[name]
        payload = api.PACKED_PAYLOAD_PREFIX + dumps(
            {**loads(bytes.fromhex(REQUEST["cbor_payload"])[2:]), spec.key: None})
        if spec.converter != api.CONV_NONE:  # Go's unpack converters refuse a nil, and so do we
            with pytest.raises(RemoteProtocolError):
                decode_request_params(payload)
            return
    else:
        payload = json.dumps({**REQUEST_PARAMS, name: None}).encode()
    params = decode_request_params(payload)
    assert name not in params
    assert handshake_param_problems(params) == []


def test_null_required_param_is_missing():
    params = decode_request_params(json.dumps({**REQUEST_PARAMS, "sponsor_id": None}).encode())
    assert handshake_param_problems(params) == ["sponsor_id: missing"]


def test_connected_and_status_params_are_checked_like_psiphond():
    base = {k: REQUEST_PARAMS[k] for k in ("propagation_channel_id", "sponsor_id", "client_version",
                                            "client_platform")}
    assert api.connected_param_problems({**base, "last_connected": "None"}) == []
    assert api.connected_param_problems({**base, "last_connected": "2026-07-31T10:00:00Z"}) == []
    assert api.connected_param_problems(base) == ["last_connected: missing"]
    assert api.connected_param_problems({**base, "last_connected": "yesterday"}) == [
        "last_connected: invalid value"]
    assert api.connected_param_problems({**base, "last_connected": "None",
                                         "establishment_duration": "1.5"}) == [
        "establishment_duration: invalid value"]
    assert api.status_param_problems({**base, "statusData": {}}) == []
    assert api.status_param_problems(base) == ["statusData: missing"]
    assert api.status_param_problems({**base, "statusData": []}) == ["statusData: not a JSON object"]
    assert api.status_param_problems({"statusData": {}}) == [
        "propagation_channel_id: missing", "sponsor_id: missing", "client_version: missing",
        "client_platform: missing"]


def test_optional_and_unknown_params():
    params = {**REQUEST_PARAMS, "split_tunnel_regions": ["US", "CA"], "client_version": "-1",
              "upstream_proxy_custom_header_names": ["X-A"], "future_param": 42,
              "speed_test_samples": [{"a": 1}]}
    assert handshake_param_problems(params) == []


def test_relay_protocol_must_be_one_the_server_runs():
    assert handshake_param_problems(REQUEST_PARAMS, relay_protocols={"SSH"}) == ["relay_protocol: invalid value"]
    assert "INPROXY-WEBRTC-OSSH" in api.KNOWN_TUNNEL_PROTOCOLS


@pytest.mark.parametrize("platform,expected", [
    ("Android_13_com.psiphon3", "Android"), ("xANDROIDx", "Android"), ("iOS_17", "iOS"),
    ("ios_17", "Other"), ("Windows_10", "Windows"), ("windows", "Other"), ("", "Other"),
    ("Linux_x86", "Other"), ("iOS-android", "Android"),
])
def test_normalize_client_platform(platform, expected):
    assert normalize_client_platform(platform) == expected


def test_wants_cbor_response_and_padding():
    base = {**REQUEST_PARAMS}
    del base["psiphon_api_response_version"]
    for version, wanted in (("1", True), ("0", False), (1, False), (None, False)):
        params = base if version is None else {**base, "psiphon_api_response_version": version}
        assert HandshakeParams.from_params(params).wants_cbor_response is wanted
    values = ("0", "100", "99999", "x", "-5", 7, "9" * 5000, " 1")
    sizes = [pad_response_length({"pad_response": v}) for v in values]
    assert sizes == [0, 100, api.MAX_PAD_RESPONSE, 0, 0, 0, 0, 0]
    assert pad_response_length({}) == 0


# ------------------------------------------------------------------------ responses

FULL_RESPONSE = HandshakeResponse(
    homepages=("https://a.example/", "https://b.example/"), upgrade_client_version="200",
    page_view_regexes=({"regex": "x", "replace": "y"},),
    https_request_regexes=({"replace": "$1", "regex": "(.*)"},), encoded_server_list=("3020",),
    client_region="CA", client_address="198.51.100.7:0", server_timestamp="2026-07-31T10:00:00Z",
    active_authorization_ids=("id1",), tactics_payload=b'{"tag":"abc","ttl":1.50}',
    tactics_payload_compression=1, upstream_bytes_per_second=2**40,
    downstream_bytes_per_second=-1, steering_ip="192.0.2.1", padding="   ",
)


def test_empty_handshake_response():
    assert encode_handshake_response(HandshakeResponse(), cbor=False) == b"{}"
    assert encode_handshake_response(HandshakeResponse(), cbor=True) == b"\xa0"
    assert decode_handshake_response(b"{}") == decode_handshake_response(b"\xa0") == HandshakeResponse()


def test_full_handshake_response_round_trips_in_struct_order():
    encoded = encode_handshake_response(FULL_RESPONSE, cbor=False)
    names = [name for name, _ in json.loads(encoded, object_pairs_hook=list)]
    assert names == [name for name, _, _ in api._HANDSHAKE_FIELDS]
    assert b'"tactics_payload":{"tag":"abc","ttl":1.50}' in encoded
    assert b'"https_request_regexes":[{"regex":"(.*)","replace":"$1"}]' in encoded
    assert decode_handshake_response(encoded) == FULL_RESPONSE
    cbor = encode_handshake_response(FULL_RESPONSE, cbor=True)
    assert sorted(loads(cbor)) == list(range(1, 16))
    assert decode_handshake_response(cbor) == FULL_RESPONSE


def test_handshake_response_json_keeps_raw_tactics_and_ignores_unknowns():
    payload = b' {"tactics_payload" : {"a" : [1, 2.50]} , "new_field": 1, "client_region": null,' \
              b' "homepages": ["h"]} '
    resp = decode_handshake_response(payload)
    assert resp == HandshakeResponse(homepages=("h",), tactics_payload=b'{"a" : [1, 2.50]}')


def test_handshake_response_cbor_ignores_unknown_keys():
    assert decode_handshake_response(dumps({6: "US", 99: [1], "x": 2})) == HandshakeResponse(client_region="US")


@pytest.mark.parametrize("payload", [
    b'{"homepages": "x"}', b'{"homepages": [1]}', b'{"tactics_payload_compression": 1.5}',
    b'{"tactics_payload_compression": 2147483648}', b'{"https_request_regexes": [{"a": 1}]}',
    b'{"client_region": 5}', b"[1]", b"", b"\xff", b'{"a":1}x',
    dumps({10: "text"}), dumps({11: 2**40}), dumps({12: 2**63}), dumps({1: ["a", b"b"]}),
    dumps({6: True}), dumps({3: [{"a": b"x"}]}), b"\xa1\x01",
])
def test_handshake_response_rejects(payload):
    with pytest.raises(RemoteProtocolError):
        decode_handshake_response(payload)


def test_connected_and_status_responses():
    connected = ConnectedResponse("2026-07-31T10:00:00Z", "  ")
    encoded = encode_connected_response(connected)
    assert encoded == b'{"connected_timestamp":"2026-07-31T10:00:00Z","padding":"  "}'
    assert decode_connected_response(encoded) == connected
    status = StatusResponse(("tag/1+=",), "")
    encoded = encode_status_response(status)
    assert encoded == b'{"invalid_server_entry_tags":["tag/1+="],"padding":""}'
    assert decode_status_response(encoded) == status
    assert encode_status_response(StatusResponse()) == b'{"invalid_server_entry_tags":[],"padding":""}'
    assert decode_status_response(b'{"invalid_server_entry_tags":null}') == StatusResponse()


@pytest.mark.parametrize("decode,payload", [
    (decode_connected_response, b'{"connected_timestamp": 5}'),
    (decode_connected_response, b"[]"),
    (decode_status_response, b'{"invalid_server_entry_tags": "x"}'),
    (decode_status_response, b'{"padding": []}'),
])
def test_connected_and_status_reject(decode, payload):
    with pytest.raises(RemoteProtocolError):
        decode(payload)


# --------------------------------------------------------------------- SSH password

SESSION = "4f1c2b3a5d6e7f8091a2b3c4d5e6f708"
SECRET = "9b2e0f6a1c3d5e7f8091a2b3c4d5e6f7089a1b2c3d4e5f60718293a4b5c6d7e8"


def test_ssh_password_without_sponsor_and_legacy_form():
    payload = SSHPasswordPayload(SESSION, SECRET)
    text = encode_ssh_password(payload)
    assert text == f'{{"SessionId":"{SESSION}","SshPassword":"{SECRET}","ClientCapabilities":[]}}'
    assert parse_ssh_password(text) == payload
    assert parse_ssh_password(SESSION + SECRET) == payload
    assert parse_ssh_password(f'{{"SessionId":"{SESSION}","ClientCapabilities":null,"SponsorId":""}}') == \
        SSHPasswordPayload(SESSION, "")


@pytest.mark.parametrize("text", [
    "", "x", SESSION[:-1] + "x" + SECRET, SESSION[:-1] + SECRET, "g" * 32 + SECRET, SESSION + SECRET + "0", "{",
    f'{{"SessionId":"{SESSION[:-1]}","SshPassword":"p"}}',
    f'{{"SessionId":"{SESSION}0","SshPassword":"p"}}',
    '{"SessionId":"zz","SshPassword":"p"}',
    f'{{"SessionId":"{SESSION}","SshPassword":"p","SponsorId":"0123"}}',
    f'{{"SessionId":"{SESSION}","SshPassword":"p","SponsorId":"0123456789ABCDEG"}}',
    f'{{"SessionId":"{SESSION}","SshPassword":1}}',
    f'{{"SessionId":"{SESSION}","SshPassword":"p","ClientCapabilities":"server-requests"}}',
    f'{{"SessionId":"{SESSION}","SshPassword":"p","ClientCapabilities":[1]}}',
    "[]", b"\xff" * 96,
])
def test_parse_ssh_password_rejects(text):
    with pytest.raises(RemoteProtocolError) as info:
        parse_ssh_password(text)
    assert info.value.reason in ("invalid_ssh_password_payload",)


def test_encode_ssh_password_checks_ids():
    with pytest.raises(LocalProtocolError):
        encode_ssh_password(SSHPasswordPayload("abc", SECRET))
    with pytest.raises(LocalProtocolError):
        encode_ssh_password(SSHPasswordPayload(SESSION, SECRET, sponsor_id="xyz"))


# ----------------------------------------------------------------------- properties

_STRATEGY_BY_CONVERTER = {
    api.CONV_NONE: st.text(max_size=20),
    api.CONV_INT: st.integers(-(2**63), 2**63 - 1).map(str),
    api.CONV_FLOAT: st.floats(-1e9, 1e9).map(lambda x: f"{x:.6f}"),
    api.CONV_LOWERHEX: st.binary(max_size=16).map(bytes.hex),
    api.CONV_UPPERHEX: st.binary(max_size=16).map(lambda b: b.hex().upper()),
    api.CONV_BASE64: st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode()),
    api.CONV_RAW_BASE64: st.binary(max_size=16).map(lambda b: base64.b64encode(b).decode().rstrip("=")),
    api.CONV_AUTHORIZATIONS: st.lists(st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode())),
    api.CONV_RAW_JSON: st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
}
_LIST_PARAMS = {"client_features", "split_tunnel_regions", "upstream_proxy_custom_header_names"}


def _param_value(spec):
    if spec.name in _LIST_PARAMS:
        return st.lists(st.text(max_size=8), max_size=3)
    if spec.name == "speed_test_samples":
        return st.lists(st.dictionaries(st.text(max_size=5), st.integers(0, 1000), max_size=2), max_size=2)
    return _STRATEGY_BY_CONVERTER[spec.converter]


params_strategy = st.lists(st.sampled_from(api.PACKED_PARAMETERS), max_size=12, unique=True).flatmap(
    lambda specs: st.fixed_dictionaries({spec.name: _param_value(spec) for spec in specs}))


def _server_view(params):
    """What the Go unpacker returns: hex IDs in their listed case."""
    seen = dict(params)
    for name, value in params.items():
        converter = api.PACKED_BY_NAME[name].converter
        if converter == api.CONV_UPPERHEX:
            seen[name] = value.upper()
        elif converter == api.CONV_LOWERHEX:
            seen[name] = value.lower()
        elif converter == api.CONV_INT:
            seen[name] = str(int(value))
    return seen


@given(params_strategy)
def test_params_round_trip_both_encodings(params):
    assert decode_request_params(encode_request_params(params, packed=True)) == _server_view(params)
    assert decode_request_params(encode_request_params(params, packed=False)) == params


@given(st.builds(
    HandshakeResponse,
    homepages=st.lists(st.text(max_size=8), max_size=2).map(tuple),
    https_request_regexes=st.lists(st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
                                   max_size=2).map(tuple),
    client_region=st.text(max_size=4),
    tactics_payload=st.dictionaries(st.text(max_size=4), st.integers(), max_size=2).map(
        lambda d: api._go_json(d).encode() if d else b""),
    tactics_payload_compression=st.integers(-(2**31), 2**31 - 1),
    downstream_bytes_per_second=st.integers(-(2**63), 2**63 - 1),
    padding=st.text(" ", max_size=8),
))
def test_handshake_response_round_trips(resp):
    for cbor in (False, True):
        assert decode_handshake_response(encode_handshake_response(resp, cbor)) == resp


# --------------------------------------------------------------------------- fuzzing

def _only_remote_errors(decode, data):
    try:
        decode(data)
    except RemoteProtocolError:
        pass


_cbor_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**64), 2**64 - 1), st.floats(),
              st.binary(max_size=16), st.text(max_size=16)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.integers(-2, 200), st.text(max_size=4)), inner, max_size=4)),
    max_leaves=12,
)
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=16)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)),
    max_leaves=12,
)
_DECODERS = [decode_request_params, decode_handshake_response, decode_connected_response,
             decode_status_response, parse_ssh_password]


@pytest.mark.parametrize("decode", _DECODERS, ids=lambda f: f.__name__)
@given(data=st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(decode, data):
    _only_remote_errors(decode, data)


@given(st.dictionaries(st.integers(-2, 200), _cbor_values, max_size=8))
def test_fuzz_packed_params(packed):
    _only_remote_errors(decode_request_params, api.PACKED_PAYLOAD_PREFIX + dumps(packed))


@given(st.binary(max_size=200))
def test_fuzz_packed_prefix_then_bytes(data):
    _only_remote_errors(decode_request_params, api.PACKED_PAYLOAD_PREFIX + data)


@given(st.dictionaries(st.integers(0, 17), _cbor_values, max_size=8))
def test_fuzz_cbor_handshake_response(fields):
    _only_remote_errors(decode_handshake_response, dumps(fields))


_JSON_NAMES = [name for name, _, _ in api._HANDSHAKE_FIELDS] + [
    "connected_timestamp", "invalid_server_entry_tags", "SessionId", "SshPassword",
    "ClientCapabilities", "SponsorId"]


@pytest.mark.parametrize("decode", _DECODERS, ids=lambda f: f.__name__)
@given(obj=st.dictionaries(st.sampled_from(_JSON_NAMES), _json_values, max_size=6))
def test_fuzz_json_objects_with_known_names(decode, obj):
    _only_remote_errors(decode, json.dumps(obj).encode())


@given(st.text(max_size=120))
def test_fuzz_ssh_password_text(text):
    _only_remote_errors(parse_ssh_password, text)


@given(st.dictionaries(st.sampled_from([p.name for p in api.PACKED_PARAMETERS] + ["other"]), _json_values,
                       max_size=8))
def test_fuzz_validation_and_padding_never_raise_on_decoded_params(params):
    assert isinstance(handshake_param_problems(params), list)
    assert 0 <= pad_response_length(params) <= api.MAX_PAD_RESPONSE
