"""The UI's HTTP server: the page, its static files and the JSON API, on 127.0.0.1 only.

Access: a random per-run token (``secrets.token_urlsafe``) that the page receives in the
URL's fragment (never sent to a server, never in a Referer) and sends back in the
``X-Onehop-Token`` header (``?token=`` for the event stream, which cannot send headers).
Every ``/api/`` request needs it; a request from another Origin, a cross-site
``Sec-Fetch-Site``, or a Host other than this listener (DNS rebinding) is refused
whatever it carries. State changes are POSTs with a JSON body. Every answer carries a
strict Content-Security-Policy: the page loads nothing from anywhere else.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import Any

from aiohttp import web

from ...errors import ConfigError, OnehopError
from .live import LiveState
from .port import ClientControl
from .settings import settings_from_json

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Onehop-Token"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "i18n.json": "application/json",
                "icon.svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin"}
MAX_STREAMS = 8
MAX_BODY = 64 * 1024
TICK_SECONDS = 1.0


def _static(name: str) -> bytes:
    return (resources.files(__package__) / "static" / name).read_bytes()


def _refuse(status: int, why: str) -> web.Response:
    return web.json_response({"error": why}, status=status)


class UIServer:
    def __init__(self, control: ClientControl, *, host: str = "127.0.0.1", port: int = 0,
                 open_url: Callable[[str], Any] | None = None, token: str | None = None) -> None:
        self.control = control
        self.host, self.port = host, port
        self.token = token or secrets.token_urlsafe(24)
        self.live = LiveState(control, open_url=open_url)
        self.live.changed = self._changed
        self._streams: set[asyncio.Event] = set()
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task | None = None
        self._closing = False
        self.refused: list[tuple[str, str, str]] = []  # the last refusals: (method, path, why)

    # -- life ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """What a person opens: the page, with the token in the fragment."""
        return f"{self.origin}/#token={self.token}"

    async def start(self) -> str:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/", self._index)
        r.add_get("/static/{name}", self._file)
        r.add_get("/api/status", self._status)
        r.add_get("/api/events", self._events)
        r.add_get("/api/settings", self._get_settings)
        r.add_post("/api/settings", self._post_settings)
        r.add_post("/api/connect", self._connect)
        r.add_post("/api/disconnect", self._disconnect)
        r.add_post("/api/feedback/preview", self._feedback_preview)
        r.add_post("/api/feedback", self._feedback)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return self.url

    async def close(self) -> None:
        self._closing = True
        self._changed()
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.live.tick()

    def _changed(self) -> None:
        for event in self._streams:
            event.set()

    # -- access -------------------------------------------------------------------------

    def _allowed_hosts(self) -> set[str]:
        return {f"127.0.0.1:{self.port}", f"localhost:{self.port}"}

    def _token_ok(self, request: web.Request) -> bool:
        given = request.headers.get(TOKEN_HEADER) or (
            request.query.get("token", "") if request.path == "/api/events" else "")
        # aiohttp keeps bytes that are not UTF-8 as surrogates: compare them, never raise on them
        return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self.token.encode())

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        why = self._refusal(request)
        if why:
            self.refused = [*self.refused[-19:], (request.method, request.path, why)]  # for tests and logs
        response = _refuse(403, why) if why else await self._handle(request, handler)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    async def _handle(self, request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPException as exc:
            return _refuse(exc.status, exc.reason)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception:  # a bug: answer it like every other answer (security headers too)
            log.exception("web UI: %s %s failed", request.method, request.path)
            return _refuse(500, "internal error")

    def _refusal(self, request: web.Request) -> str:
        """Why this request is refused ('' when it may go on)."""
        if request.host not in self._allowed_hosts():
            return "wrong Host: this page is served to this machine only"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in {f"http://{h}" for h in self._allowed_hosts()}:
            return "cross-origin request refused"
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request refused"
        if not request.path.startswith("/api/"):
            return ""
        if not self._token_ok(request):
            return "missing or wrong token: open the address onehop printed"
        if request.method == "POST" and request.content_type != "application/json":
            return "state changes take a JSON body (Content-Type: application/json)"
        return ""

    # -- the page -----------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")

    async def _file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        return web.Response(body=_static(name), content_type=STATIC_FILES[name],
                            charset=None if name.endswith(".svg") else "utf-8")

    # -- the API ------------------------------------------------------------------------

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.live.status())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if len(self._streams) >= MAX_STREAMS:
            return _refuse(503, "too many open pages")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS})
        await response.prepare(request)
        event = asyncio.Event()
        self._streams.add(event)
        try:
            while not self._closing:
                await response.write(b"data: " + json.dumps(self.live.status()).encode() + b"\n\n")
                event.clear()
                await event.wait()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._streams.discard(event)
        return response

    async def _get_settings(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.control.settings()))

    async def _post_settings(self, request: web.Request) -> web.Response:
        try:
            settings = settings_from_json(await self._json(request))
            saved = await self.control.apply(settings)
        except ConfigError as exc:
            return _problems(exc)
        except (OnehopError, OSError) as exc:
            return _refuse(500, str(exc))
        self._changed()
        return web.json_response(asdict(saved))

    async def _connect(self, request: web.Request) -> web.Response:
        self.control.connect()
        self._changed()
        return web.json_response({"ok": True})

    async def _disconnect(self, request: web.Request) -> web.Response:
        self.control.disconnect()
        self._changed()
        return web.json_response({"ok": True})

    async def _feedback_fields(self, request: web.Request) -> tuple[str, str, bool]:
        body = await self._json(request)
        message, email = body.get("message", ""), body.get("email", "")
        diagnostics = body.get("diagnostics", True)
        if not isinstance(message, str) or not isinstance(email, str) or not isinstance(diagnostics, bool):
            raise web.HTTPBadRequest(reason="message and email are text, diagnostics true or false")
        return message, email, diagnostics

    async def _feedback_preview(self, request: web.Request) -> web.Response:
        message, email, diagnostics = await self._feedback_fields(request)
        return web.json_response(self.control.feedback_preview(message, email, diagnostics), dumps=_dumps)

    async def _feedback(self, request: web.Request) -> web.Response:
        message, email, diagnostics = await self._feedback_fields(request)
        if not message.strip():
            return _refuse(400, "write a message first")
        try:
            result = await self.control.send_feedback(message, email, diagnostics)
        except ConfigError as exc:
            return _problems(exc)
        except (OnehopError, OSError) as exc:
            return _refuse(500, str(exc))
        return web.json_response(asdict(result))

    @staticmethod
    async def _json(request: web.Request) -> dict:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(reason="the body is not JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="the body must be a JSON object")
        return body


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False, indent=2)


def _problems(exc: ConfigError) -> web.Response:
    return web.json_response({"error": "invalid settings",
                              "problems": [{"key": p.key, "message": p.message} for p in exc.problems]},
                             status=400)
