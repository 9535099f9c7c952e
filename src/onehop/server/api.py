"""The Psiphon API as the server answers it: handshake, connected, status.

Requests arrive as SSH global requests with JSON or packed-CBOR payloads; the handshake
answers in CBOR when the client asks for it. A handshake must come first and only once;
an invalid handshake disconnects the client, as Psiphon's server does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from ..core import api
from ..core.api import ConnectedResponse, HandshakeResponse, StatusResponse
from ..errors import RemoteProtocolError
from .stats import handshake_fields, parse_status_records, unique_user_fields, with_client_geoip
from .splittunnel import split_regions
from .tunnelstate import HandshakeState

if TYPE_CHECKING:
    from .seams import APIClient, APIEvents, APIHost

log = logging.getLogger(__name__)

#: Payloads larger than this are decoded and parsed in a worker thread, so that a client's
#: crafted status cannot hold up every other client's traffic on the event loop.
OFF_LOOP_BYTES = 8192
#: Where ``handle`` leaves a status request's records, parsed off the loop (never a wire name).
PARSED_RECORDS = "\x00parsed_records"


async def off_loop_if_large(size: int, function: Callable[..., Any], *args: Any) -> Any:
    if size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(function, *args)
    return function(*args)


#: Longest handshake parameter value kept (for traffic-rule filters) after the handshake.
MAX_KEPT_VALUE = 256


def rfc3339_seconds(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def truncate_to_hour(ts: float) -> str:
    return datetime.fromtimestamp(ts - ts % 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class APIHandler:
    """Answers API requests for every client of one server process.

    ``host``: the server's lists (psinet, discovery, its own entry); ``events``: where
    unique users and client records are logged.
    """

    def __init__(self, host: "APIHost", events: "APIEvents", clock: Callable[[], float] = time.time) -> None:
        self._host = host
        self._events = events
        self._clock = clock

    async def handle(self, session: "APIClient", name: str, payload: bytes) -> bytes | None:
        try:
            params = await off_loop_if_large(len(payload), api.decode_request_params, payload)
        except RemoteProtocolError as exc:
            log.debug("undecodable %s payload: %s", name, exc.reason)
            return None
        if name == api.REQUEST_HANDSHAKE:
            return self.handshake(session, params)
        if session.handshake is None:
            return None  # everything else needs a completed handshake
        checks = {api.REQUEST_CONNECTED: (api.connected_param_problems, self.connected),
                  api.REQUEST_STATUS: (api.status_param_problems, self.status)}
        if name in checks:
            check, answer = checks[name]
            problems = check(params)
            if problems:  # psiphond fails the request and keeps the tunnel
                log.info("%s rejected: %s", name, "; ".join(problems))
                return None
            if name == api.REQUEST_STATUS:
                hs = session.handshake
                params[PARSED_RECORDS] = await off_loop_if_large(
                    len(payload), parse_status_records, params[api.PARAM_STATUS_DATA], dict(hs.fields))
            response = answer(session, params)
            log.debug("%s accepted (%s)", name, session.tunnel_protocol)
            return response
        if name == api.REQUEST_CLIENT_VERIFICATION:
            return b"{}"
        return None

    def handshake(self, session: "APIClient", params: dict) -> bytes | None:
        if session.handshake is not None:
            session.close()
            return None
        problems = api.handshake_param_problems(params, {session.tunnel_protocol})
        if problems:
            log.info("handshake rejected: %s", "; ".join(problems))
            session.close()
            return None
        now = self._clock()
        region = session.geoip.region
        kept = {k: v for k, v in params.items()
                if isinstance(v, str) and k != api.PARAM_PADDING and len(v) <= MAX_KEPT_VALUE}
        session.complete_handshake(HandshakeState(kept, region, now, handshake_fields(kept)),
                                   split_regions(params, region))
        rules = session.rules
        snapshot = self._host.psinet_snapshot
        platform = params["client_platform"]
        mobile = api.normalize_client_platform(platform) in ("Android", "iOS")
        response = HandshakeResponse(
            homepages=tuple(snapshot.homepages(params["sponsor_id"], region, mobile)),
            upgrade_client_version=snapshot.upgrade_client_version(
                params["client_version"], api.normalize_client_platform(platform)) or "",
            encoded_server_list=tuple(self._server_list(session, params)),
            client_region=region,
            client_address=join_host_port(*session.peer_address),
            server_timestamp=rfc3339_seconds(now),
            upstream_bytes_per_second=rules.read_bytes_per_second,
            downstream_bytes_per_second=rules.write_bytes_per_second,
            padding=" " * api.pad_response_length(params),
        )
        return api.encode_handshake_response(response, cbor=api.wants_cbor_response(params))

    def _server_list(self, session: "APIClient", params: dict) -> list[str]:
        entries = [] if session.rules.disable_discovery else list(self._host.discover(session.peer_address[0]))
        tag = params.get("missing_server_entry_signature") or params.get("missing_server_entry_provider_id")
        own = self._host.own_server_entry(tag) if isinstance(tag, str) else None
        if own:
            entries.append(own)
        return entries

    def connected(self, session: "APIClient", params: dict) -> bytes:
        state = session.handshake
        assert state is not None
        now = self._clock()
        today = rfc3339_seconds(now)[:10]
        if state.connected_day != today:  # at most one counted connected request per day
            state.connected_day = today
            state.connected_timestamp = truncate_to_hour(now)
            last = params.get("last_connected")
            if not isinstance(last, str) or last == "None" or last[:10] < today:
                self._events.unique_user(unique_user_fields(session, last))
        assert state.connected_timestamp is not None
        return api.encode_connected_response(ConnectedResponse(
            state.connected_timestamp, " " * api.pad_response_length(params)))

    def status(self, session: "APIClient", params: dict) -> bytes:
        status_data = params.get("statusData")
        status_data = status_data if isinstance(status_data, dict) else {}
        parsed = params.get(PARSED_RECORDS) or parse_status_records(status_data, session.handshake.fields)
        valid, invalid_records, skipped = parsed
        admitted = session.admit_records(valid, invalid_records, skipped)
        self._events.client_records(with_client_geoip(admitted, session.geoip))
        tags = status_data.get("check_server_entry_tags")
        invalid = self._host.invalid_server_entry_tags(tags if isinstance(tags, list) else [])
        return api.encode_status_response(StatusResponse(
            tuple(invalid), " " * api.pad_response_length(params)))
