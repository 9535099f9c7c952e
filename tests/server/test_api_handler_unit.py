"""APIHandler against fakes of its seams (no sockets, no server): what the handshake
answers and keeps, one handshake only, the connected request's daily unique user, and
status records charged to the tunnel's budget and logged with its GeoIP names."""

from __future__ import annotations

from onehop.core import api
from onehop.core.api import decode_connected_response, decode_handshake_response, decode_status_response
from onehop.core.trafficrules import EffectiveRules
from onehop.server.api import APIHandler
from onehop.server.psinet import parse_psinet
from onehop.server.stats import handshake_fields
from onehop.server.tunnelstate import HandshakeState
from tests.server.seam_fakes import FakeAPIClient, FakeEvents, FakeHost

NOW = 1_772_602_400.0  # 2026-03-04T05:33:20Z
HANDSHAKE = {"propagation_channel_id": "ABCDEF0123456789", "sponsor_id": "0123456789ABCDEF",
             "client_version": "170", "client_platform": "Windows", "relay_protocol": "OSSH",
             "padding": "    ", "split_tunnel_regions": ["FR"]}
PSINET = parse_psinet({
    "sponsors": {"0123456789ABCDEF": {"home_pages": {"DE": [{"url": "https://example.org/?client_region=XX"}]}}},
    "client_versions": {"Windows": [{"version": "171"}]},
})


def handler(host: FakeHost | None = None, events: FakeEvents | None = None, now: float = NOW):
    host = host or FakeHost(psinet_snapshot=PSINET)
    events = events or FakeEvents()
    return APIHandler(host, events, clock=lambda: now), host, events


def request(params: dict) -> bytes:
    return api.encode_request_params(params, packed=False)


async def test_handshake_answer_comes_from_the_servers_lists_and_the_clients_rules():
    apih, host, _ = handler()
    host.discoverable = ["entry-1"]
    host.own_entries = {"c2lnbmF0dXJl": "own-entry"}
    client = FakeAPIClient(peer_address=("2001:db8::7", 443),
                           rules=EffectiveRules(read_bytes_per_second=1000, write_bytes_per_second=2000))
    payload = await apih.handle(client, api.REQUEST_HANDSHAKE,
                                request(dict(HANDSHAKE, missing_server_entry_signature="c2lnbmF0dXJl")))
    answer = decode_handshake_response(payload)
    assert answer.homepages == ("https://example.org/?client_region=DE",)
    assert answer.upgrade_client_version == "171"
    assert answer.encoded_server_list == ("entry-1", "own-entry")
    assert answer.client_region == "DE" and answer.client_address == "[2001:db8::7]:443"
    assert answer.server_timestamp == "2026-03-04T05:33:20Z"
    assert (answer.upstream_bytes_per_second, answer.downstream_bytes_per_second) == (1000, 2000)
    state = client.handshake
    assert state is not None and state.client_region == "DE" and state.completed_at == NOW
    assert "padding" not in state.params and state.params["sponsor_id"] == "0123456789ABCDEF"
    assert state.fields["client_version"] == 170  # validated and converted for the logs
    assert client.split_regions == frozenset({"FR"}) and not client.closed


async def test_disabled_discovery_leaves_only_the_servers_own_entry():
    apih, host, _ = handler()
    host.discoverable = ["entry-1"]
    client = FakeAPIClient(rules=EffectiveRules(disable_discovery=True))
    answer = decode_handshake_response(await apih.handle(client, api.REQUEST_HANDSHAKE, request(HANDSHAKE)))
    assert answer.encoded_server_list == ()


async def test_a_second_handshake_closes_the_tunnel():
    apih, _, _ = handler()
    client = FakeAPIClient()
    assert await apih.handle(client, api.REQUEST_HANDSHAKE, request(HANDSHAKE)) is not None
    first = client.handshake
    assert await apih.handle(client, api.REQUEST_HANDSHAKE, request(HANDSHAKE)) is None
    assert client.closed and client.handshake is first


async def test_an_invalid_handshake_closes_the_tunnel_and_keeps_nothing():
    apih, _, _ = handler()
    client = FakeAPIClient()
    params = {k: v for k, v in HANDSHAKE.items() if k != "sponsor_id"}
    assert await apih.handle(client, api.REQUEST_HANDSHAKE, request(params)) is None
    assert client.closed and client.handshake is None
    relay_elsewhere = FakeAPIClient(tunnel_protocol="SSH")  # relay_protocol says OSSH
    assert await apih.handle(relay_elsewhere, api.REQUEST_HANDSHAKE, request(HANDSHAKE)) is None
    assert relay_elsewhere.closed


async def test_requests_before_the_handshake_get_no_answer():
    apih, _, events = handler()
    client = FakeAPIClient()
    assert await apih.handle(client, api.REQUEST_CONNECTED, request({"last_connected": "None"})) is None
    assert await apih.handle(client, api.REQUEST_STATUS, request({"statusData": {}})) is None
    assert not events.unique_users and not client.closed


def handshaken(**kwargs) -> FakeAPIClient:
    params = {k: v for k, v in HANDSHAKE.items() if isinstance(v, str)}
    return FakeAPIClient(handshake=HandshakeState(params, "DE", NOW, handshake_fields(params)), **kwargs)


async def test_connected_counts_a_unique_user_once_a_day():
    apih, _, events = handler()
    client = handshaken()
    base = {k: HANDSHAKE[k] for k in ("propagation_channel_id", "sponsor_id", "client_version", "client_platform")}
    answer = decode_connected_response(
        await apih.handle(client, api.REQUEST_CONNECTED, request(dict(base, last_connected="None"))))
    assert answer.connected_timestamp == "2026-03-04T05:00:00Z"
    (user,) = events.unique_users
    assert user["last_connected"] == "None" and user["client_region"] == "DE" and user["relay_protocol"] == "OSSH"
    await apih.handle(client, api.REQUEST_CONNECTED, request(dict(base, last_connected="None")))
    assert len(events.unique_users) == 1  # the same day: not counted again


async def test_status_records_are_charged_to_the_tunnel_and_logged_with_its_region():
    apih, host, events = handler()
    host.valid_tags = frozenset({"good"})
    client = handshaken()
    client.counters.records.logged = client.counters.records.budget - 1  # room for one more
    record = {"client_failed_timestamp": "2026-03-04T05:06:07Z", "tunnel_error": "dial 203.0.113.9:443 refused"}
    status = {k: HANDSHAKE[k] for k in ("propagation_channel_id", "sponsor_id", "client_version", "client_platform")}
    status["statusData"] = {"failed_tunnel_stats": [record, record, {"tunnel_error": "no timestamp"}],
                            "check_server_entry_tags": ["good", "gone"]}
    answer = decode_status_response(await apih.handle(client, api.REQUEST_STATUS, request(status)))
    assert answer.invalid_server_entry_tags == ("gone",)
    ((name, fields),) = events.records
    assert name == "failed_tunnel"
    assert fields["client_region"] == "DE" and fields["tunnel_error"] == "dial [ip]:443 refused"
    records = client.counters.records
    assert (records.logged, records.dropped, records.invalid) == (records.budget, 1, 1)
