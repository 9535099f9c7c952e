"""The typed request records (core/api/records.py) and the tunnel protocol names.

Against Psiphon's vector (vectors/api.json), what Psiphon's client really sends (nulls,
empty strings, values psiphond does not check), round trips through both encodings,
and fuzzing: a decoder either returns a record or raises ``RemoteProtocolError``.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onehop.core import api
from onehop.core.api import (
    ConnectedParams, HandshakeParams, RequestParams, StatusParams, TunnelProtocol, base_fields,
)
from onehop.core.cbor import dumps
from onehop.errors import LocalProtocolError, RemoteProtocolError
from tests.conftest import vector_cases

REQUEST = {case["name"]: case for case in vector_cases("api")}["handshake_request"]
BASE = dict(propagation_channel_id="FFFFFFFFFFFFFFFF", sponsor_id="0123456789ABCDEF",
            client_version="187", client_platform="Android_13_com.psiphon3")


def _json(params: dict) -> bytes:
    return json.dumps(params).encode()


# ------------------------------------------------------------------------- vector


def test_vector_request_decodes_the_same_from_json_and_cbor():
    from_json = HandshakeParams.decode(REQUEST["json_payload"].encode())
    assert from_json == HandshakeParams.decode(bytes.fromhex(REQUEST["cbor_payload"]))
    assert from_json.relay_protocol == "OSSH" and from_json.ossh_prefix == "http-get"
    assert from_json.client_features == ("VPN",) and from_json.authorizations == ()
    assert from_json.extra == {}
    assert from_json.wants_cbor_response and from_json.is_mobile


def test_vector_request_encodes_byte_for_byte():
    record = HandshakeParams.decode(REQUEST["json_payload"].encode())
    assert record.encode(packed=False).decode() == REQUEST["json_payload"]
    assert record.encode(packed=True).hex() == REQUEST["cbor_payload"]


# ------------------------------------------------- what Psiphon's client really sends


@pytest.mark.parametrize("packed", [False, True])
def test_null_lists_are_absent(packed):
    """Go writes a nil slice as null: Psiphon's client sends client_features so."""
    params = {**BASE, "relay_protocol": "OSSH", "client_features": None, "split_tunnel_regions": None}
    if not packed:  # the packed authorizations converter has no null
        params["authorizations"] = None
    payload = api.encode_request_params(params, packed=packed)
    record = HandshakeParams.decode(payload)
    assert record.client_features is None and record.split_tunnel_regions is None
    assert record.authorizations is None and record.extra == {}


def test_empty_strings_pass_where_psiphond_lets_them():
    record = HandshakeParams.decode(_json({**BASE, "relay_protocol": "OSSH", "client_build_rev": "",
                                           "device_region": "", "network_type": "", "client_features": []}))
    assert record.client_build_rev == "" and record.device_region == "" and record.client_features == ()
    for packed in (False, True):
        assert HandshakeParams.decode(record.encode(packed)) == record


def test_unchecked_parameters_travel_in_extra():
    params = {**BASE, "relay_protocol": "OSSH", "tls_profile": "Chrome-120", "session_id": 5,
              "psiphon_api_response_version": 1, "something_new": {"x": [1]}}
    record = HandshakeParams.decode(_json(params))
    # psiphond does not check these, so neither do we; ill-typed ones are not typed fields
    assert record.session_id is None and record.psiphon_api_response_version is None
    assert not record.wants_cbor_response
    assert record.extra == {"tls_profile": "Chrome-120", "session_id": 5, "psiphon_api_response_version": 1,
                            "something_new": {"x": [1]}}
    assert record.to_params() == params


def test_decode_lists_every_problem():
    with pytest.raises(RemoteProtocolError) as caught:
        HandshakeParams.decode(_json({"sponsor_id": "xyz", "client_features": "VPN"}))
    assert caught.value.reason == "invalid_handshake_params"
    for problem in ("propagation_channel_id: missing", "sponsor_id: invalid value",
                    "client_features: not a list", "relay_protocol: missing"):
        assert problem in caught.value.detail


def test_relay_protocol_narrowed_to_the_servers_own():
    payload = _json({**BASE, "relay_protocol": "SSH"})
    assert HandshakeParams.decode(payload, {"SSH"}).relay_protocol == "SSH"
    with pytest.raises(RemoteProtocolError, match="relay_protocol: invalid value"):
        HandshakeParams.decode(payload, {"OSSH"})


def test_connected_and_status_records():
    connected = ConnectedParams(**BASE, last_connected="None", establishment_duration="1200")
    for packed in (False, True):
        assert ConnectedParams.decode(connected.encode(packed)) == connected
    with pytest.raises(RemoteProtocolError, match="last_connected: missing") as caught:
        ConnectedParams.decode(_json(BASE))
    assert caught.value.reason == "invalid_request_params"
    status = StatusParams(**BASE, status_data={"check_server_entry_tags": ["dGFn"]})
    assert status.to_params()["statusData"] == {"check_server_entry_tags": ["dGFn"]}
    for packed in (False, True):
        assert StatusParams.decode(status.encode(packed)) == status
    with pytest.raises(RemoteProtocolError, match="statusData: not a JSON object"):
        StatusParams.decode(_json({**BASE, "statusData": [1]}))


def test_base_fields_carry_over_to_another_request():
    base = RequestParams(**BASE, client_features=("VPN",))
    assert ConnectedParams(**base_fields(base), last_connected="None").client_features == ("VPN",)


def test_encode_refuses_what_psiphond_would_refuse():
    with pytest.raises(LocalProtocolError) as caught:
        HandshakeParams(**{**BASE, "sponsor_id": "not-hex"}, relay_protocol="OSSH").encode(packed=False)
    assert caught.value.reason == "invalid_handshake_params"
    with pytest.raises(LocalProtocolError):
        HandshakeParams(**BASE, relay_protocol="OSSH-PREFIX").encode(packed=True)  # not a wire name


def test_extra_may_not_shadow_a_typed_field():
    with pytest.raises(LocalProtocolError):
        RequestParams(**BASE, extra={"sponsor_id": "0123456789ABCDEF"})


def test_response_padding_and_platform():
    record = HandshakeParams(**BASE, relay_protocol="SSH", pad_response="99999999")
    assert record.pad_response_length == api.MAX_PAD_RESPONSE
    assert HandshakeParams(**BASE, relay_protocol="SSH", pad_response="x").pad_response_length == 0
    assert record.platform_class == api.PLATFORM_ANDROID
    windows = HandshakeParams(**{**BASE, "client_platform": "Windows_10"}, relay_protocol="SSH")
    assert windows.platform_class == api.PLATFORM_WINDOWS and not windows.is_mobile


def test_missing_entry_tag():
    assert HandshakeParams(**BASE, relay_protocol="SSH").missing_entry_tag is None
    assert HandshakeParams(**BASE, relay_protocol="SSH",
                           missing_server_entry_provider_id="dGFn").missing_entry_tag == "dGFn"


# ------------------------------------------------------------------ tunnel protocols


def test_tunnel_protocols():
    assert TunnelProtocol.OSSH_PREFIX.relay_protocol is TunnelProtocol.OSSH
    assert TunnelProtocol.SSH.relay_protocol is TunnelProtocol.SSH
    assert TunnelProtocol.OSSH_PREFIX.obfuscated and not TunnelProtocol.SSH.obfuscated
    assert set(api.SERVER_PROTOCOLS) <= api.KNOWN_TUNNEL_PROTOCOLS  # Psiphon's own names
    assert "OSSH-PREFIX" not in api.KNOWN_TUNNEL_PROTOCOLS
    assert {p.relay_protocol for p in api.CLIENT_PROTOCOLS} == set(api.SERVER_PROTOCOLS)
    assert f"{TunnelProtocol.OSSH_PREFIX}" == "OSSH-PREFIX" and json.dumps(TunnelProtocol.SSH) == '"SSH"'


# ---------------------------------------------------------------------- round trips

_hex = st.binary(max_size=8).map(bytes.hex)
_HEX16 = st.binary(min_size=8, max_size=8).map(lambda b: b.hex().upper())
_int = st.integers(0, 2**31).map(str)
_region = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_word = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), max_size=12)
_texts = st.lists(_text, max_size=3).map(tuple)
_flag = st.sampled_from(["0", "1"])
_b64 = st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode())
_timestamp = st.datetimes(datetime(2000, 1, 1), datetime(2099, 1, 1)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _maybe(strategy):
    return st.none() | strategy


_BASE_STRATEGIES = dict(
    propagation_channel_id=_HEX16, sponsor_id=_HEX16, client_version=_int, client_platform=_word,
    client_features=_maybe(_texts), client_build_rev=_maybe(_hex), device_region=_maybe(_text),
    egress_region=_maybe(_region), network_type=_maybe(_text), applied_tactics_tag=_maybe(_hex),
    pad_response=_maybe(_int), padding=_maybe(st.text(" ", max_size=8)),
)
handshakes = st.builds(
    HandshakeParams, **_BASE_STRATEGIES,
    relay_protocol=st.sampled_from(sorted(api.KNOWN_TUNNEL_PROTOCOLS)),
    session_id=_maybe(_hex), ssh_client_version=_maybe(_text), psiphon_api_response_version=_maybe(st.just("1")),
    authorizations=_maybe(st.lists(_b64, max_size=2).map(tuple)), stored_tactics_tag=_maybe(_hex),
    split_tunnel=_maybe(_flag), split_tunnel_regions=_maybe(st.lists(_region, max_size=2).map(tuple)),
    missing_server_entry_signature=_maybe(_b64), missing_server_entry_provider_id=_maybe(_b64),
    dial_port_number=_maybe(_int), dial_duration=_maybe(_int), candidate_number=_maybe(_int),
    established_tunnels_count=_maybe(_int), is_replay=_maybe(_flag), upstream_ossh_padding=_maybe(_int),
    ossh_prefix=_maybe(_text), upstream_proxy_type=_maybe(st.sampled_from(["http", "socks5", "socks4a"])),
    server_entry_region=_maybe(_region), server_entry_source=_maybe(st.sampled_from(["EMBEDDED", "DSL"])),
    server_entry_timestamp=_maybe(_timestamp),
    extra=st.fixed_dictionaries({}, optional={"tls_profile": _text, "meek_cookie_size": _int}),
)


@given(handshakes, st.booleans())
def test_handshake_params_round_trip(record, packed):
    assert HandshakeParams.decode(record.encode(packed)) == record


@given(st.builds(ConnectedParams, **_BASE_STRATEGIES, last_connected=st.just("None") | _timestamp,
                 establishment_duration=_maybe(_int)), st.booleans())
def test_connected_params_round_trip(record, packed):
    assert ConnectedParams.decode(record.encode(packed)) == record


# --------------------------------------------------------------------------- fuzzing

_RECORDS = [HandshakeParams, ConnectedParams, StatusParams]
_NAMES = sorted({name for record in _RECORDS for name in record._wire_names()} | {"tls_profile"})
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1),
              st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=16), st.sampled_from(["", "None", "OSSH", "0123456789ABCDEF", "1"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)


def _decodes_or_refuses(record, payload):
    try:
        decoded = record.decode(payload)
    except RemoteProtocolError:
        return
    assert isinstance(decoded, record)
    decoded.to_params()


@pytest.mark.parametrize("record", _RECORDS, ids=lambda r: r.__name__)
@given(data=st.binary(max_size=200))
def test_fuzz_bytes(record, data):
    _decodes_or_refuses(record, data)
    _decodes_or_refuses(record, api.PACKED_PAYLOAD_PREFIX + data)


@pytest.mark.parametrize("record", _RECORDS, ids=lambda r: r.__name__)
@given(obj=st.dictionaries(st.sampled_from(_NAMES), _json_values, max_size=10))
def test_fuzz_parameter_maps(record, obj):
    _decodes_or_refuses(record, _json({**BASE, "relay_protocol": "OSSH", "last_connected": "None",
                                       "statusData": {}, **obj}))
    _decodes_or_refuses(record, _json(obj))


@pytest.mark.parametrize("record", _RECORDS, ids=lambda r: r.__name__)
@given(packed=st.dictionaries(st.integers(1, 171), _json_values | st.binary(max_size=8), max_size=8))
def test_fuzz_packed_maps(record, packed):
    _decodes_or_refuses(record, api.PACKED_PAYLOAD_PREFIX + dumps(packed))
