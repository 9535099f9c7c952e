"""The Psiphon API as the server answers it: handshake, connected, status.

Requests arrive as SSH global requests with JSON or packed-CBOR payloads; the handshake
answers in CBOR when the client asks for it. A handshake must come first and only once;
an invalid handshake disconnects the client, as Psiphon's server does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, UTC
from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from ..core import api
from ..core.api import ConnectedResponse, HandshakeResponse, StatusResponse
from ..errors import RemoteProtocolError
from .stats import ParsedRecords, handshake_fields, parse_status_records, unique_user_fields, with_client_geoip
from .splittunnel import split_regions
from .tunnelstate import HandshakeState

if TYPE_CHECKING:
    from .seams import APIClient, APIEvents, APIHost

log = logging.getLogger(__name__)

#: Payloads larger than this are decoded and parsed in a worker thread, so that a client's
#: crafted status cannot hold up every other client's traffic on the event loop.
OFF_LOOP_BYTES = 8192


async def off_loop_if_large(size: int, function: Callable[..., Any], *args: Any) -> Any:
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


#: Longest handshake parameter value kept (for traffic-rule filters) after the handshake.
MAX_KEPT_VALUE = 256


def rfc3339_seconds(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_to_hour(ts: float) -> str:
    return datetime.fromtimestamp(ts - ts % 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class APIHandler:
    """Answers API requests for every client of one server process.

    ``host``: the server's lists (psinet, discovery, its own entry); ``events``: where
    unique users and client records are logged.
    """

    def __init__(self, host: APIHost, events: APIEvents, clock: Callable[[], float] = time.time) -> None:
        self._host = host
        self._events = events
        self._clock = clock

    async def handle(self, session: APIClient, name: str, payload: bytes) -> bytes | None:
        try:
            params = await off_loop_if_large(len(payload), api.decode_request_params, payload)
        except RemoteProtocolError as exc:
            log.debug("undecodable %s payload: %s", name, exc.reason)
            return None
        if name == api.REQUEST_HANDSHAKE:
            return self.handshake(session, params)
        if session.handshake is None:
            return None  # everything else needs a completed handshake
        records: dict[str, type[api.ConnectedParams] | type[api.StatusParams]] = {
            api.REQUEST_CONNECTED: api.ConnectedParams, api.REQUEST_STATUS: api.StatusParams}
        if name in records:
            try:
                request = records[name].from_params(params)
            except RemoteProtocolError as exc:  # psiphond fails the request and keeps the tunnel
                log.info("%s rejected: %s", name, exc.detail)
                return None
            if isinstance(request, api.StatusParams):
                hs = session.handshake
                parsed = await off_loop_if_large(
                    len(payload), parse_status_records, request.status_data, dict(hs.fields))
                response = self.status(session, request, parsed)
            else:
                response = self.connected(session, request)
            log.debug("%s accepted (%s)", name, session.tunnel_protocol)
            return response
        if name == api.REQUEST_CLIENT_VERIFICATION:
            return b"{}"
        return None

    def handshake(self, session: APIClient, params: dict) -> bytes | None:
        if session.handshake is not None:
            session.close()
            return None
        try:
            request = api.HandshakeParams.from_params(params, {session.tunnel_protocol})
        except RemoteProtocolError as exc:
            log.info("handshake rejected: %s", exc.detail)
            session.close()
            return None
        now = self._clock()
        region = session.geoip.region
        kept = {k: v for k, v in request.to_params().items()
                if isinstance(v, str) and k != api.PARAM_PADDING and len(v) <= MAX_KEPT_VALUE}
        session.complete_handshake(HandshakeState(kept, region, now, handshake_fields(kept)),
                                   split_regions(request, region))
        rules = session.rules
        snapshot = self._host.psinet_snapshot
        response = HandshakeResponse(
            homepages=tuple(snapshot.homepages(request.sponsor_id, region, request.is_mobile)),
            upgrade_client_version=snapshot.upgrade_client_version(
                request.client_version, request.platform_class) or "",
            encoded_server_list=tuple(self._server_list(session, request)),
            client_region=region,
            client_address=join_host_port(*session.peer_address),
            server_timestamp=rfc3339_seconds(now),
            upstream_bytes_per_second=rules.read_bytes_per_second,
            downstream_bytes_per_second=rules.write_bytes_per_second,
            padding=" " * request.pad_response_length,
        )
        return api.encode_handshake_response(response, cbor=request.wants_cbor_response)

    def _server_list(self, session: APIClient, request: api.HandshakeParams) -> list[str]:
        entries = [] if session.rules.disable_discovery else list(self._host.discover(session.peer_address[0]))
        tag = request.missing_entry_tag
        own = self._host.own_server_entry(tag) if tag else None
        if own:
            entries.append(own)
        return entries

    def connected(self, session: APIClient, request: api.ConnectedParams) -> bytes:
        state = session.handshake
        assert state is not None
        now = self._clock()
        today = rfc3339_seconds(now)[:10]
        if state.connected_day != today:  # at most one counted connected request per day
            state.connected_day = today
            state.connected_timestamp = truncate_to_hour(now)
            last = request.last_connected
            if last is None or last == "None" or last[:10] < today:
                self._events.unique_user(unique_user_fields(session, last))
        assert state.connected_timestamp is not None
        return api.encode_connected_response(ConnectedResponse(
            state.connected_timestamp, " " * request.pad_response_length))

    def status(self, session: APIClient, request: api.StatusParams,
               parsed: ParsedRecords | None = None) -> bytes:
        """``parsed``: the records already parsed off the loop (else parsed here)."""
        status_data = request.status_data
        if parsed is None:
            assert session.handshake is not None  # handle() answers nothing else before it
            parsed = parse_status_records(status_data, dict(session.handshake.fields))
        valid, invalid_records, skipped = parsed
        admitted = session.admit_records(valid, invalid_records, skipped)
        self._events.client_records(with_client_geoip(admitted, session.geoip))
        tags = status_data.get("check_server_entry_tags")
        invalid = self._host.invalid_server_entry_tags(tags if isinstance(tags, list) else [])
        return api.encode_status_response(StatusResponse(
            tuple(invalid), " " * request.pad_response_length))
