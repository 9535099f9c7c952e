"""--target-server-entry keeps the client's state, as Psiphon's client does: the target is
the only candidate, but the last connected time (so a server counts a returning user once),
discovered entries and stats live in the datastore of the data directory."""

from __future__ import annotations

from onehop.client.api_calls import connected_request
from onehop.client.app import open_store
from onehop.client.config import parse_client_config
from onehop.client.datastore import Datastore
from onehop.client.dialer import EstablishedTunnel
from onehop.client.notices import Notices
from onehop.core import api
from onehop.core.api import HandshakeResponse
from onehop.core.serverentry import encode_server_entry_fields

from tests.helpers.builders import make_entry


class ConnectedServer:
    def __init__(self, timestamp: str) -> None:
        self.timestamp = timestamp
        self.sent: list[dict] = []

    async def api_request(self, name: str, payload: bytes) -> bytes:
        self.sent.append(api.decode_request_params(payload))
        return f'{{"connected_timestamp": "{self.timestamp}"}}'.encode()


def _config(tmp_path):
    target = make_entry("192.0.2.20")
    return target, parse_client_config({"DataRootDirectory": str(tmp_path / "data"),
                                        "TargetServerEntry": encode_server_entry_fields(target)})


async def test_a_returning_target_client_reports_its_last_connected_time(tmp_path):
    target, config = _config(tmp_path)
    sent = []
    for timestamp in ("2026-11-25T16:00:00Z", "2026-11-26T09:00:00Z"):
        store = open_store(config, Notices(None))
        server = ConnectedServer(timestamp)
        tunnel = EstablishedTunnel(store.entries()[0], "OSSH", server, HandshakeResponse(), 0.1, 0)
        assert await connected_request(tunnel, config, store) == timestamp
        sent += [params["last_connected"] for params in server.sent]
        store.close()
    assert sent == ["None", "2026-11-25T16:00:00Z"]


def test_only_the_target_is_a_candidate_but_discoveries_are_kept(tmp_path):
    target, config = _config(tmp_path)
    store = open_store(config, Notices(None))
    assert [e.ip_address for e in store.entries()] == [target.ip_address]
    assert store.import_entries([make_entry("192.0.2.21")], "DISCOVERY") == 1
    store.set_affinity("192.0.2.21")
    assert [e.ip_address for e in store.entries()] == [target.ip_address]
    assert store.affinity() is None
    store.close()
    kept = Datastore(str(tmp_path / "data"))
    assert [e.ip_address for e in kept.entries()] == ["192.0.2.21"]  # the target is never stored
    kept.close()
