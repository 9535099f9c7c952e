"""TargetAPIEncoding: the client sends every API request of a tunnel as packed CBOR (where
the server entry supports SSH API requests) or, when asked, as JSON — as Psiphon's client."""

from __future__ import annotations

import json

import pytest

from onehop.client.api_calls import base_params, connected_request
from onehop.client.config import parse_client_config
from onehop.client.datastore import Datastore
from onehop.client.dialer import EstablishedTunnel, uses_packed_api
from onehop.client.status import send_status
from onehop.core import api
from onehop.core.api import HandshakeResponse
from onehop.errors import ConfigError

from tests.helpers.builders import make_entry


class RecordingClient:
    """Answers every API request with a JSON object and keeps the payloads."""

    def __init__(self) -> None:
        self.payloads: list[tuple[str, bytes]] = []

    async def api_request(self, name: str, payload: bytes) -> bytes:
        self.payloads.append((name, payload))
        if name == api.REQUEST_CONNECTED:
            return b'{"connected_timestamp": "2026-11-25T16:00:00Z"}'
        return b'{"invalid_server_entry_tags": []}'


def _tunnel(client: RecordingClient, packed: bool) -> EstablishedTunnel:
    return EstablishedTunnel(make_entry("192.0.2.9"), "OSSH", client, HandshakeResponse(), 0.1, 0, packed)


def test_target_api_encoding_is_read_and_checked():
    assert parse_client_config({"TargetAPIEncoding": "json"}).api_encoding == "json"
    assert parse_client_config({"TargetAPIEncoding": "cbor"}).api_encoding == "cbor"
    assert parse_client_config({}).api_encoding == ""
    with pytest.raises(ConfigError) as caught:
        parse_client_config({"TargetAPIEncoding": "xml"})
    assert "TargetAPIEncoding" in str(caught.value)


def test_packed_only_where_supported_and_not_asked_for_json():
    cbor, json_ = parse_client_config({}), parse_client_config({"TargetAPIEncoding": "json"})
    assert uses_packed_api(make_entry("192.0.2.1"), cbor)
    assert not uses_packed_api(make_entry("192.0.2.1"), json_)
    assert not uses_packed_api(make_entry("192.0.2.1", capabilities=("OSSH", "SSH")), cbor)


@pytest.mark.parametrize("packed", [True, False])
async def test_connected_and_status_use_the_tunnels_encoding(tmp_path, packed):
    config = parse_client_config({"SponsorId": "0123456789ABCDEF"})
    store = Datastore(str(tmp_path / "store"))
    client = RecordingClient()
    tunnel = _tunnel(client, packed)
    assert await connected_request(tunnel, config, store) == "2026-11-25T16:00:00Z"
    await send_status(tunnel, store, base_params(config))
    for name, payload in client.payloads:
        assert payload.startswith(api.PACKED_PAYLOAD_PREFIX) == packed, name
        params = api.decode_request_params(payload)
        assert params["sponsor_id"] == "0123456789ABCDEF"
        if not packed:
            json.loads(payload)
    store.close()
