"""The client's side of the API after the handshake: connected and status requests."""

from __future__ import annotations

from ..core import api
from ..errors import OnehopError
from .config import ClientConfig
from .dialer import EstablishedTunnel, base_params

LAST_CONNECTED_KEY = "last_connected"  # the datastore key, not the parameter


async def connected_request(tunnel: EstablishedTunnel, config: ClientConfig, store) -> str | None:
    """Report the connection with our previous connected time (how Psiphon counts unique
    users without identifiers); store and return the server's new timestamp."""
    get = getattr(store, "get", None)
    last = get(LAST_CONNECTED_KEY) if get else None
    params = api.ConnectedParams(**api.base_fields(base_params(config)), last_connected=last or "None",
                                 establishment_duration=str(int(tunnel.dial_duration * 1000)))
    payload = params.encode(packed=tunnel.packed_api)
    raw = await tunnel.client.api_request(api.REQUEST_CONNECTED, payload)
    timestamp = api.decode_connected_response(raw).connected_timestamp
    if timestamp and hasattr(store, "set"):
        store.set(LAST_CONNECTED_KEY, timestamp)
    return timestamp or None


__all__ = ["base_params", "connected_request", "OnehopError"]
