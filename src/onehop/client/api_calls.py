"""The client's side of the API after the handshake: connected and status requests."""

from __future__ import annotations

from ..core import api
from ..errors import OnehopError
from .config import ClientConfig
from .dialer import EstablishedTunnel

LAST_CONNECTED_KEY = "last_connected"


def base_params(config: ClientConfig) -> dict:
    """Parameters every request carries (the session ID travels in the SSH password)."""
    return {"propagation_channel_id": config.propagation_channel_id.upper(),
            "sponsor_id": config.sponsor_id.upper(),
            "client_version": config.client_version,
            "client_platform": config.client_platform}


async def connected_request(tunnel: EstablishedTunnel, config: ClientConfig, store) -> str | None:
    """Report the connection with our previous connected time (how Psiphon counts unique
    users without identifiers); store and return the server's new timestamp."""
    get = getattr(store, "get", None)
    last = get(LAST_CONNECTED_KEY) if get else None
    params = dict(base_params(config), last_connected=last or "None",
                  establishment_duration=str(int(tunnel.dial_duration * 1000)))
    payload = api.encode_request_params(params, packed=tunnel.packed_api)
    raw = await tunnel.client.api_request(api.REQUEST_CONNECTED, payload)
    timestamp = api.decode_connected_response(raw).connected_timestamp
    if timestamp and hasattr(store, "set"):
        store.set(LAST_CONNECTED_KEY, timestamp)
    return timestamp or None


__all__ = ["base_params", "connected_request", "OnehopError"]
