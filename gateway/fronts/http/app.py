"""`airlock serve`: the gateway over streamable HTTP, one upstream per HTTP session.

Each MCP session (`Mcp-Session-Id`) gets its own upstream child process, its own relay and
mediator, so its own label state, and its own flight-log file. The HTTP side (sessions, SSE
streams, Accept/Content-Type checks, DNS-rebinding guard) is the mcp SDK's
`StreamableHTTPServerTransport`; Airlock relays at the message level behind it, exactly as on
stdio: the transport's messages are turned into the same JSON lines `Relay.from_client` reads.

In front of every request, before any session is touched: bearer-token authentication (on by
default; constant-time comparison; the token's id, never the token, is logged), a body-size
limit, and Host/Origin validation. A request without a session id that is not `initialize`
(every 2026-07-28 request, e.g. the `server/discover` probe) goes to its principal's stateless
pool (`pool`): one long-lived session per principal, so one label state per principal.

The pieces: `settings` (`ServeSettings`), `auth` (tokens, rate limit), `session` (one session, the
registry of them), `pool` (stateless requests); this module routes each request and runs the
server.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import urllib.parse
from collections.abc import MutableMapping
from contextlib import AsyncExitStack
from typing import Any, Final

import orjson
import structlog
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS
from starlette.requests import Request

from gateway.errors import UPSTREAM_UNAVAILABLE, ConfigError, GatewayError
from gateway.fronts.http import direct
from gateway.fronts.http.auth import TokenBucket, authenticate, check_settings
from gateway.fronts.http.direct import Receive, Send
from gateway.fronts.http.events import SessionEvents
from gateway.fronts.http.peer import Principal, client_certificate, with_client_certificate
from gateway.fronts.http.pool import StatelessPools
from gateway.fronts.http.session import HttpSession, SessionFactory, SessionRegistry
from gateway.fronts.http.settings import ServeSettings
from gateway.protocol import methods

log = structlog.get_logger("airlock.serve")

Scope = MutableMapping[str, Any]

SESSION_HEADER: Final = b"mcp-session-id"
_SSE_MESSAGES: Final = "/messages/"
_SSE_SESSION: Final = re.compile(rb"session_id=([0-9a-f]{32})")


async def _plain(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None, *, code: int = -32600) -> None:
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    fixed = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*fixed, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ServeApp:
    """The ASGI application."""

    def __init__(self, settings: ServeSettings, make_session: SessionFactory) -> None:
        self.settings = settings
        self.make_session = make_session
        self.sessions = SessionRegistry(settings.max_sessions)
        self._reaper: asyncio.Future[None] | None = None
        self._buckets: dict[str, TokenBucket] = {}
        hosts = list(settings.allowed_hosts) or [
            f"{settings.host}:{settings.port}",
            settings.host,
            f"localhost:{settings.port}",
            "localhost",
            f"127.0.0.1:{settings.port}",
            "127.0.0.1",
        ]
        origins = list(settings.allowed_origins) or [f"http://{h}" for h in hosts]
        self.security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
        self._guard = TransportSecurityMiddleware(self.security)
        self._sse = SseServerTransport(_SSE_MESSAGES, security_settings=self.security, max_request_body_size=settings.max_body_bytes)
        self.pools = StatelessPools(settings, make_session, self.sessions, self.security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"].rstrip("/")
        legacy = self.settings.sse_path is not None and path in (self.settings.sse_path.rstrip("/"), _SSE_MESSAGES.rstrip("/"))
        if path != self.settings.path.rstrip("/") and not legacy:
            await _plain(send, 404, f"not found: the MCP endpoint is {self.settings.path}")
            return
        headers = dict(scope.get("headers") or [])
        token_id = authenticate(self.settings, headers.get(b"authorization"))
        if token_id is None:
            log.warning("unauthenticated request refused", client=str(scope.get("client")))
            await _plain(send, 401, "authentication required: send 'Authorization: Bearer <token>'", [(b"www-authenticate", b"Bearer")])
            return
        if self.settings.rate > 0:
            bucket = self._buckets.setdefault(token_id, TokenBucket(self.settings.rate, self.settings.burst))
            wait = bucket.take(asyncio.get_running_loop().time())
            if wait > 0:
                log.warning("rate limit exceeded; refused", principal=token_id)
                retry = str(max(1, int(wait + 0.999))).encode()
                await _plain(send, 429, f"too many requests for this token; retry after {retry.decode()} s", [(b"retry-after", retry)])
                return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_body_bytes):
            await _plain(send, 413, f"request body too large (limit {self.settings.max_body_bytes} bytes)")
            return
        if scope["method"] == "POST":
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type != b"application/json":
                await _plain(send, 415, "unsupported media type: POST a JSON-RPC message with Content-Type: application/json")
                return
            try:
                body = await _read_body(receive, self.settings.max_body_bytes)
            except _BodyTooLarge:
                await _plain(send, 413, f"request body too large (limit {self.settings.max_body_bytes} bytes)")
                return
            after_body, receive = receive, _replay(body, receive)
        principal = Principal(token_id, client_certificate(scope))
        if legacy:
            await self._legacy_sse(scope, receive, send, principal, path)
            return
        session_id = headers.get(SESSION_HEADER)
        if session_id is not None:
            session = self.sessions.get(session_id.decode("latin-1"))
            if session is None:
                await _plain(send, 404, "session not found: it ended or never existed; start a new one with initialize")
                return
            if session.principal != principal or session.transport is None:
                await _plain(send, 404, "session not found: it ended or never existed; start a new one with initialize")
                return
            session.touch()
            if not await _known_version(headers, send):
                return
            if scope["method"] == "POST" and await self._answer_directly(session, scope, body, headers, after_body, send):
                return
            await session.transport.handle_request(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _plain(send, 400, "a request without Mcp-Session-Id must be a POST that starts a session (initialize)")
            return
        if not await _known_version(headers, send):
            return
        await self._open(scope, receive, send, principal, body)

    async def _answer_directly(
        self, session: HttpSession, scope: Scope, body: bytes, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> bool:
        """The fast path (see `gateway.fronts.http.direct`); False: take the SDK path."""
        if session.closing or session.transport is None or session.transport.is_terminated:
            return False  # the SDK path answers 404
        picked = direct.candidate(
            body, headers, json_only=self.settings.json_responses, resumable=session.resumable, open_ids=session.is_open
        )
        if picked is None:
            return False
        refused = await self._guard.validate_request(Request(scope, receive), is_post=True)  # Host/Origin, as the SDK checks
        if refused is not None:
            await refused(scope, receive, send)
            return True
        await session.answer_directly(picked[0], picked[1], body, receive, send)
        return True

    async def _open(self, scope: Scope, receive: Receive, send: Send, principal: Principal, body: bytes) -> None:
        if not await _admitted(self._guard, scope, receive, send, is_post=True):
            return
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await _plain(send, 400, f"the body is not JSON: {exc}")
            return
        if type(message) is not dict or message.get("method") != methods.INITIALIZE:
            refused = await self.pools.serve(principal, scope, receive, send)
            if refused is not None:
                await _plain(send, refused.status, refused.message, list(refused.headers), code=refused.code)
            return
        if not await self.sessions.reserve_making_room():
            await _plain(send, 503, "too many open sessions", [(b"retry-after", b"5")])
            return
        try:
            await self._open_reserved(scope, receive, send, principal)
        finally:
            self.sessions.release()

    async def _open_reserved(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        """A new stateful session, for the `initialize` in the (replayed) body of the request."""
        session_id = secrets.token_hex(16)
        # Resumability: a session's SSE events are kept (bounded) for a client that reconnects with
        # Last-Event-ID. Not for JSON responses (which have no event stream).
        resumable = self.settings.resume_events > 0 and not self.settings.json_responses
        events = SessionEvents(self.settings.resume_events) if resumable else None
        transport = StreamableHTTPServerTransport(
            session_id, is_json_response_enabled=self.settings.json_responses, event_store=events, security_settings=self.security
        )
        try:
            parts = self.make_session(session_id, principal, "streamable-http")
        except GatewayError as error:
            log.error("session not opened", error=error.message)
            await _plain(send, 500, f"the session could not be set up: {error.message}")
            return
        session = HttpSession(self.settings, transport, parts, principal, resumable=resumable)
        task = self.sessions.run(session)
        await session.ready.wait()
        if session.done.is_set():
            reason = session.start_error or "it ended at once"
            await _plain(send, 502, f"the upstream server could not be started: {reason}", code=UPSTREAM_UNAVAILABLE)
            return
        self.sessions.add(session_id, session, task)
        log.info("session opened", session=session_id, **principal.describe())
        try:
            await transport.handle_request(scope, receive, send)
        finally:
            if transport.is_terminated:
                await transport.terminate()
                await session.done.wait()

    async def _legacy_sse(self, scope: Scope, receive: Receive, send: Send, principal: Principal, path: str) -> None:
        """The 2024-11-05 HTTP+SSE transport: GET the SSE path opens a session (and its
        upstream) for as long as the stream lasts; its messages are POSTed to the endpoint the
        first event names, with the same token."""
        if path == _SSE_MESSAGES.rstrip("/"):
            if scope["method"] != "POST":
                await _plain(send, 405, "POST messages here", [(b"allow", b"POST")])
                return
            # Read as the SDK's router reads it (percent-decoded), and only if it is unambiguous: a
            # second session_id, encoded or not, could route to a session the check never saw.
            found = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("session_id", [])
            if len(found) != 1:
                await _plain(send, 400, f"give exactly one session_id in the query (got {len(found)})")
                return
            if self.sessions.sse_owner(found[0]) != principal:
                await _plain(send, 404, f"session not found: it ended or never existed; open a new one with GET {self.settings.sse_path}")
                return
            await self._sse.handle_post_message(scope, receive, send)
            return
        if scope["method"] != "GET":
            await _plain(send, 405, "GET this path to open an SSE session", [(b"allow", b"GET")])
            return
        if not await _admitted(self._guard, scope, receive, send, is_post=False):
            return
        if not self.sessions.reserve():
            await _plain(send, 503, "too many open sessions", [(b"retry-after", b"5")])
            return
        try:
            await self._legacy_stream(scope, receive, send, principal)
        finally:
            self.sessions.release()

    async def _legacy_stream(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        owned: list[str] = []

        async def send_and_learn(event: MutableMapping[str, Any]) -> None:
            if not owned and event.get("type") == "http.response.body":
                found = _SSE_SESSION.search(event.get("body", b""))
                if found:
                    owned.append(found.group(1).decode())
                    self.sessions.own_sse(owned[0], principal)
            await send(event)

        name = secrets.token_hex(16)
        try:
            parts = self.make_session(name, principal, "sse")
        except GatewayError as error:
            log.error("session not opened", error=error.message)
            await _plain(send, 500, f"the session could not be set up: {error.message}")
            return

        def connect() -> Any:
            return self._sse.connect_sse(scope, receive, send_and_learn)

        session = HttpSession(self.settings, None, parts, principal, connect=connect, name=name)
        log.info("legacy SSE session opened", session=name, **principal.describe())
        try:
            await session.run()
        except ValueError:
            pass  # refused by the SDK's Host/Origin guard: it has answered already
        finally:
            for sse_id in owned:
                self.sessions.release_sse(sse_id)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                if self.settings.session_idle_timeout > 0:
                    self._reaper = asyncio.ensure_future(self.sessions.close_idle(self.settings.session_idle_timeout))
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                if self._reaper is not None:
                    self._reaper.cancel()
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        await self.sessions.close()


async def _known_version(headers: dict[bytes, bytes], send: Send) -> bool:
    """False (and answered 400) when the request names a protocol version the SDK does not know."""
    version = headers.get(b"mcp-protocol-version")
    if version is None or version.decode("latin-1") in SUPPORTED_PROTOCOL_VERSIONS:
        return True
    known = ", ".join(SUPPORTED_PROTOCOL_VERSIONS)
    await _plain(send, 400, f"unsupported Mcp-Protocol-Version {version.decode('latin-1')[:40]!r}: send one of {known}")
    return False


async def _admitted(guard: TransportSecurityMiddleware, scope: Scope, receive: Receive, send: Send, *, is_post: bool) -> bool:
    """Host and Origin checked (DNS rebinding) as the SDK's transport checks them, before anything
    is allocated for the request; False: refused, and answered."""
    refused = await guard.validate_request(Request(scope, receive), is_post=is_post)
    if refused is not None:
        await refused(scope, receive, send)
        return False
    return True


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, however it is sent (chunked too); _BodyTooLarge past `limit`."""
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        event = await receive()
        if event.get("type") != "http.request":
            break
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        more = event.get("more_body", False)
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the already-read body once, then the connection's own events."""
    given = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def serve(settings: ServeSettings, make_session: SessionFactory) -> int:
    """Run the HTTP front until SIGINT/SIGTERM."""
    import uvicorn

    check_settings(settings)
    app = ServeApp(settings, make_session)
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None:
        import ssl

        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key) if settings.tls_key else None}
        if settings.tls_client_ca is not None:
            from uvicorn.protocols.http.auto import AutoHTTPProtocol

            # The verified client certificate goes into each request's scope: the flight log records who it was.
            tls |= {
                "ssl_ca_certs": str(settings.tls_client_ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
                "http": with_client_certificate(AutoHTTPProtocol),
            }
    elif settings.tls_client_ca is not None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mTLS runs over TLS)")
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", lifespan="on", timeout_graceful_shutdown=3, **tls
    )
    server = uvicorn.Server(config)
    scheme = "https" if settings.tls_cert is not None else "http"
    log.info(
        "serving MCP over streamable HTTP",
        url=f"{scheme}://{settings.host}:{settings.port}{settings.path}",
        tokens=[t.id for t in settings.tokens],
    )
    async with AsyncExitStack():
        await server.serve()
    return 0
