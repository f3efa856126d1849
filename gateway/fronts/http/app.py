"""`airlock serve`: the gateway over streamable HTTP, one upstream per HTTP session.

Each MCP session (`Mcp-Session-Id`) gets its own upstream child process, its own relay and
mediator, so its own label state, and its own flight-log file. The HTTP side (sessions, SSE
streams, Accept/Content-Type checks, DNS-rebinding guard) is the mcp SDK's
`StreamableHTTPServerTransport`; Airlock relays at the message level behind it, exactly as on
stdio: the transport's messages are turned into the same JSON lines `Relay.from_client` reads.

In front of every request, before any session is touched: bearer-token authentication (on by
default; constant-time comparison; the token's id, never the token, is logged), a body-size
limit, and Host/Origin validation. A request without a session id that is not `initialize`
(e.g. the 2026-07-28 `server/discover` probe) is served by a one-shot session, ended after
its answer.

Server-to-client messages of a stdio upstream say nothing about which request they belong to:
a progress notification is routed by its progress token, anything else to the client request
opened most recently and still open, else to the session's standalone GET stream.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio
import orjson
import structlog
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter
from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS
from starlette.requests import Request

from gateway.errors import UPSTREAM_UNAVAILABLE, ConfigError, GatewayError, UpstreamStartFailed
from gateway.evidence.flightlog import FlightLog
from gateway.fronts.http import direct
from gateway.fronts.http.events import DEFAULT_MAX_EVENTS, SessionEvents
from gateway.fronts.http.peer import Principal, client_certificate, with_client_certificate
from gateway.mediation.interface import Mediator
from gateway.protocol import jsonrpc
from gateway.protocol.framing import DEFAULT_MAX_MESSAGE_BYTES
from gateway.protocol.pipes import LineWriter, QueueSink
from gateway.recording.cassette import CassetteWriter
from gateway.session.evidence import WriteAhead
from gateway.session.wiring import wire_session
from gateway.upstream import Upstream, UpstreamSpec

log = structlog.get_logger("airlock.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SESSION_HEADER: Final = b"mcp-session-id"
_SSE_MESSAGES: Final = "/messages/"
_SSE_SESSION: Final = re.compile(rb"session_id=([0-9a-f]{32})")
TOKENS_ENV: Final = "AIRLOCK_TOKENS"
DEFAULT_MAX_BODY: Final = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class ServeSettings:
    #: A command (each session starts its own child) or a remote server (`--url`: each session
    #: opens its own connection to it).
    upstream: UpstreamSpec
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/mcp"
    tokens: tuple[Token, ...] = ()
    allow_unauthenticated: bool = False  # only ever on loopback
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_sessions: int = 100
    #: The legacy (2024-11-05) HTTP+SSE endpoint, e.g. "/sse" (None: off); messages go to /messages/.
    sse_path: str | None = None
    #: Per-token rate limit: requests per second (0: off) and burst.
    rate: float = 0.0
    burst: int = 20
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate this CA signed (mTLS)
    #: Answer each POST with one JSON body instead of an SSE stream: about half the CPU per call,
    #: but messages sent during a call (progress, sampling, elicitation, logging) have no channel.
    json_responses: bool = False
    #: SSE events kept per session for clients resuming with Last-Event-ID (0: no resumability).
    resume_events: int = DEFAULT_MAX_EVENTS


def load_tokens(path: Path) -> tuple[Token, ...]:
    """Tokens, one per line as `ID:TOKEN` (or a bare token, id `tN`); blank lines and `#`
    comments ignored. Several tokens allow rotation. Raises ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the token file: {exc.strerror or exc}") from None
    tokens: list[Token] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        token_id, sep, secret = line.partition(":")
        if not sep:
            token_id, secret = f"t{len(tokens) + 1}", line
        if len(secret) < 16:
            raise ConfigError(f"{path}:{number}: the token is shorter than 16 characters; use e.g. 'openssl rand -hex 32'")
        tokens.append(Token(token_id.strip(), secret.strip().encode()))
    if not tokens:
        raise ConfigError(f"{path}: no token in the file; write one per line as ID:TOKEN")
    return tuple(tokens)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(settings: ServeSettings) -> None:
    """Fail closed: listening beyond loopback needs tokens."""
    if not settings.tokens and not (settings.allow_unauthenticated and is_loopback(settings.host)):
        if is_loopback(settings.host):
            raise ConfigError("airlock serve needs bearer tokens (--token-file or AIRLOCK_TOKENS); on loopback only, "
                              "--insecure-no-auth turns authentication off")  # fmt: skip
        raise ConfigError(f"airlock serve on {settings.host} (beyond loopback) needs bearer tokens: pass --token-file")
    if settings.resume_events < 0:
        raise ConfigError(f"--resume-events {settings.resume_events}: give a count of events, or 0 to turn resumability off")


def authenticate(settings: ServeSettings, header: bytes | None) -> str | None:
    """The id of the token the Authorization header carries, or None. Every configured token
    is compared, in constant time, whichever matches."""
    if not settings.tokens:
        return "unauthenticated-loopback" if settings.allow_unauthenticated else None
    if header is None or header[:7].lower() != b"bearer ":
        return None
    offered = header[7:].strip()
    found = None
    for token in settings.tokens:
        if hmac.compare_digest(offered, token.secret):
            found = token.id
    return found


async def _plain(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None, *,
                 code: int = -32600) -> None:  # fmt: skip
    body = orjson.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}})
    fixed = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*fixed, *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


@dataclass(slots=True)
class TokenBucket:
    """`rate` requests per second on average, `burst` at once. Pure: the caller passes the time."""

    rate: float
    burst: int
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> float:
        """0 when a request may pass (and it is counted), else the seconds until one may."""
        if self.tokens < 0:
            self.tokens, self.stamp = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass(slots=True)
class _Router:
    """Which client request a server-to-client message belongs to."""

    open: dict[Any, None] = field(default_factory=dict)  # insertion-ordered open request ids
    progress: dict[Any, Any] = field(default_factory=dict)  # progress token -> request id

    def client_request(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        params = message.get("params")
        if message.get("method") == "notifications/cancelled" and type(params) is dict:
            self.closed(params.get("requestId"))  # no response will come: messages must not be routed to it
            return
        if type(request_id) not in (int, str) or "method" not in message:
            return
        self.open[request_id] = None
        meta = params.get("_meta") if type(params) is dict else None
        token = meta.get("progressToken") if type(meta) is dict else None
        if type(token) in (int, str):  # anything else cannot be a key (and is no valid token)
            self.progress[token] = request_id

    def closed(self, request_id: Any) -> None:
        if type(request_id) in (int, str):
            self.open.pop(request_id, None)
            for token in [t for t, r in self.progress.items() if r == request_id]:
                del self.progress[token]

    def related(self, message: dict[str, Any]) -> Any:
        if "method" not in message:  # a response: routed by its own id
            self.closed(message.get("id"))
            return None
        params = message.get("params")
        token = params.get("progressToken") if type(params) is dict else None
        if message.get("method") == "notifications/progress" and type(token) in (int, str):
            owner = self.progress.get(token)
            if owner is not None:
                return owner
        return next(reversed(self.open), None)


@dataclass(slots=True)
class SessionParts:
    """What `airlock serve` builds for each session: its mediator (label state, pins), its
    flight log and, with `--record`, its cassette."""

    mediator: Mediator
    flight_log: FlightLog | None = None
    recorder: CassetteWriter | None = None


#: (session id, principal, transport: "streamable-http" | "sse") -> the session's parts
SessionFactory = Callable[[str, Principal, str], SessionParts]


class HttpSession:
    """One MCP session: its transport, upstream child, relay and flight log."""

    def __init__(self, settings: ServeSettings, transport: StreamableHTTPServerTransport | None, parts: SessionParts,
                 principal: Principal, *, connect: Callable[[], Any] | None = None, name: str | None = None,
                 resumable: bool = False) -> None:  # fmt: skip
        """`transport`: a streamable-HTTP session; or `connect`: the streams of another transport
        (the legacy SSE one), whose session ends with the request that opened it."""
        self.settings = settings
        self.transport = transport
        self._connect = connect if connect is not None else transport.connect if transport is not None else None
        self.name = name if name is not None else transport.mcp_session_id if transport is not None else None
        self.principal = principal
        self.flight_log = flight_log = parts.flight_log
        self.recorder = recorder = parts.recorder
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.start_error: str | None = None  # why the upstream could not be started
        self.closing = False  # the session is ending: the fast path takes no new request
        self._to_client_transport = QueueSink()
        self._to_client = LineWriter("client")
        self._to_client.attach(self._to_client_transport)
        self._write_ahead = WriteAhead(flight_log, self._to_client)
        self._session = wire_session(
            parts.mediator,
            settings.upstream,
            to_client=self._to_client.add,
            write_ahead=self._write_ahead,
            after_upstream_chunk=self._flush,
            max_message_bytes=settings.max_message_bytes,
            recorder=recorder,
        )
        self.relay = self._session.relay
        self._from_client = self._session.from_client
        self._router = _Router()
        self._direct: dict[Any, asyncio.Queue[direct.Delivery]] = {}  # request id -> its fast-path answer
        self.resumable = resumable

    def is_open(self, request_id: Any) -> bool:
        return request_id in self._router.open or request_id in self._direct

    async def answer_directly(self, request_id: Any, message: dict[str, Any], body: bytes, receive: Receive, send: Send) -> None:
        """Relay one client request and write its answer on this HTTP request (fast path)."""
        queue: asyncio.Queue[direct.Delivery] = asyncio.Queue()
        self._direct[request_id] = queue
        try:
            if self.closing:
                queue.put_nowait(None)
            else:
                self._router.client_request(message)
                self._from_client(body if b"\n" not in body else jsonrpc.encode(message))
                self._flush()
            await direct.answer(queue, receive, send, (self.name or "").encode())
        finally:
            self._direct.pop(request_id, None)

    def _flush(self) -> None:
        self._write_ahead.commit()

    async def run(self) -> None:
        child = self._session.upstream
        try:
            try:
                await self._session.start()
            except UpstreamStartFailed as error:
                self.start_error = error.message
                log.error("session not opened: the upstream could not be started", session=self.name, error=error.message)
                return
            assert self._connect is not None
            async with self._connect() as (read_stream, write_stream):
                self.ready.set()
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(self._send_to_client, write_stream)
                    tasks.start_soon(self._watch_child, child, tasks.cancel_scope)
                    try:
                        async for item in read_stream:
                            if isinstance(item, Exception):
                                log.info("client sent an unreadable message", error=str(item))
                                continue
                            message = item.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                            self._router.client_request(message)
                            self._from_client(jsonrpc.encode(message))
                            self._flush()
                            if message.get("method") == "notifications/cancelled":  # a cancelled fast-path call is answered no more
                                cancelled = jsonrpc.members(message.get("params")).get("requestId")
                                waiting = self._direct.get(cancelled) if type(cancelled) in (int, str) else None
                                if waiting is not None:
                                    waiting.put_nowait(None)
                    except (anyio.ClosedResourceError, anyio.EndOfStream):
                        pass  # the session was terminated (DELETE, or the upstream ended)
                    tasks.cancel_scope.cancel()
        finally:
            self.closing = True
            self.ready.set()
            self._to_client_transport.close()
            for queue in self._direct.values():
                queue.put_nowait(None)
            status = await child.terminate(grace=0.5) if child.returncode is None else child.returncode
            log.info("session ended", session=self.name, **self.principal.describe(), upstream_status=status,
                     **self.relay.describe())  # fmt: skip
            if self.flight_log is not None:
                await self.flight_log.aclose("session ended")
            if self.recorder is not None:
                self.recorder.close()
            self.done.set()

    async def _watch_child(self, child: Upstream, scope: anyio.CancelScope) -> None:
        await child.exited.wait()
        await child.wait_output_done(1.0)
        self.relay.upstream_lost(child.ended_because())
        self._flush()
        await asyncio.sleep(0.05)  # let the sender pass the errors on
        if self.transport is not None:
            await self.transport.terminate()
        scope.cancel()

    async def _send_to_client(self, write_stream: Any) -> None:
        queue = self._to_client_transport.queue
        while True:
            line = await queue.get()
            if line is None:
                return
            message = jsonrpc.decode(line)  # as the relay wrote it (lone surrogates, big integers included)
            if type(message) is not dict:
                continue
            related = self._router.related(message)
            if self.settings.json_responses and related is not None and "method" in message:
                if "id" in message:  # a request during a call has no channel back: the upstream gets an error, not silence
                    error = {"code": -32603, "message": "the client connection has no channel for requests during a call "
                             "(airlock serve --json-responses)"}  # fmt: skip
                    self._from_client(jsonrpc.encode({"jsonrpc": "2.0", "id": message["id"], "error": error}))
                    self._flush()
                continue  # a notification during a call has no channel either
            if self._direct:  # a fast-path request's response, or a message about it
                key = message.get("id") if "method" not in message else related
                waiting = self._direct.get(key) if type(key) in (int, str) else None
                if waiting is not None:
                    waiting.put_nowait((line, "method" not in message))
                    continue
            try:
                typed = jsonrpc_message_adapter.validate_python(message, by_name=False)
            except Exception as exc:  # the relay only sends valid JSON-RPC; never crash the session on it
                log.error("message to the client not relayable over HTTP", error=str(exc)[:200])
                continue
            metadata = ServerMessageMetadata(related_request_id=related) if related is not None else None
            await write_stream.send(SessionMessage(typed, metadata=metadata))


class ServeApp:
    """The ASGI application."""

    def __init__(self, settings: ServeSettings, make_session: SessionFactory) -> None:
        self.settings = settings
        self.make_session = make_session
        self.sessions: dict[str, HttpSession] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._sse_owners: dict[str, Principal] = {}  # legacy SSE session id -> who opened it
        self._tasks: set[asyncio.Task[None]] = set()
        hosts = list(settings.allowed_hosts) or [f"{settings.host}:{settings.port}", settings.host, f"localhost:{settings.port}",
                                                 "localhost", f"127.0.0.1:{settings.port}", "127.0.0.1"]  # fmt: skip
        origins = list(settings.allowed_origins) or [f"http://{h}" for h in hosts]
        self.security = TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
        self._guard = TransportSecurityMiddleware(self.security)
        self._sse = SseServerTransport(_SSE_MESSAGES, security_settings=self.security, max_request_body_size=settings.max_body_bytes)

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
            version = headers.get(b"mcp-protocol-version")
            if version is not None and version.decode("latin-1") not in SUPPORTED_PROTOCOL_VERSIONS:
                await _plain(send, 400, f"unsupported Mcp-Protocol-Version {version.decode('latin-1')[:40]!r}: "
                                        f"send one of {', '.join(SUPPORTED_PROTOCOL_VERSIONS)}")  # fmt: skip
                return
            if scope["method"] == "POST" and await self._answer_directly(session, scope, body, headers, after_body, send):
                return
            await session.transport.handle_request(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _plain(send, 400, "a request without Mcp-Session-Id must be a POST that starts a session (initialize)")
            return
        await self._open(scope, receive, send, principal)

    async def _answer_directly(self, session: HttpSession, scope: Scope, body: bytes, headers: dict[bytes, bytes],
                               receive: Receive, send: Send) -> bool:  # fmt: skip
        """The fast path (see `gateway.fronts.http.direct`); False: take the SDK path."""
        if session.closing or session.transport is None or session.transport.is_terminated:
            return False  # the SDK path answers 404
        picked = direct.candidate(body, headers, json_only=self.settings.json_responses, resumable=session.resumable,
                                  open_ids=session.is_open)  # fmt: skip
        if picked is None:
            return False
        refused = await self._guard.validate_request(Request(scope, receive), is_post=True)  # Host/Origin, as the SDK checks
        if refused is not None:
            await refused(scope, receive, send)
            return True
        await session.answer_directly(picked[0], picked[1], body, receive, send)
        return True

    async def _open(self, scope: Scope, receive: Receive, send: Send, principal: Principal) -> None:
        if len(self.sessions) >= self.settings.max_sessions:
            await _plain(send, 503, "too many open sessions", [(b"retry-after", b"5")])
            return
        body = await _read_body(receive, self.settings.max_body_bytes)  # already read and checked: replayed
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            await _plain(send, 400, f"the body is not JSON: {exc}")
            return
        stateful = type(message) is dict and message.get("method") == "initialize"
        session_id = secrets.token_hex(16) if stateful else None
        # Resumability: a session's SSE events are kept (bounded) for a client that reconnects with
        # Last-Event-ID. Not for one-shot requests, nor JSON responses (which have no event stream).
        resumable = stateful and self.settings.resume_events > 0 and not self.settings.json_responses
        events = SessionEvents(self.settings.resume_events) if resumable else None
        transport = StreamableHTTPServerTransport(session_id, is_json_response_enabled=self.settings.json_responses,
                                                  event_store=events, security_settings=self.security)  # fmt: skip
        try:
            parts = self.make_session(session_id or secrets.token_hex(16), principal, "streamable-http")
        except GatewayError as error:
            log.error("session not opened", error=error.message)
            await _plain(send, 500, f"the session could not be set up: {error.message}")
            return
        session = HttpSession(self.settings, transport, parts, principal, resumable=resumable)
        task = asyncio.ensure_future(session.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await session.ready.wait()
        if session.done.is_set():
            reason = session.start_error or "it ended at once"
            await _plain(send, 502, f"the upstream server could not be started: {reason}", code=UPSTREAM_UNAVAILABLE)
            return
        if session_id is not None:
            self.sessions[session_id] = session
            task.add_done_callback(lambda _: self.sessions.pop(session_id, None))
        log.info("session opened" if stateful else "one-shot request", session=session_id, **principal.describe())
        try:
            await transport.handle_request(scope, _replay(body, receive), send)
        finally:
            if not stateful or transport.is_terminated:
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
            query = scope.get("query_string", b"").decode("latin-1")
            sse_id = dict(part.partition("=")[::2] for part in query.split("&") if part).get("session_id", "")
            if self._sse_owners.get(sse_id) != principal:
                await _plain(send, 404, f"session not found: it ended or never existed; open a new one with GET {self.settings.sse_path}")
                return
            await self._sse.handle_post_message(scope, receive, send)
            return
        if scope["method"] != "GET":
            await _plain(send, 405, "GET this path to open an SSE session", [(b"allow", b"GET")])
            return
        if len(self.sessions) + len(self._sse_owners) >= self.settings.max_sessions:
            await _plain(send, 503, "too many open sessions", [(b"retry-after", b"5")])
            return
        owned: list[str] = []

        async def send_and_learn(event: MutableMapping[str, Any]) -> None:
            if not owned and event.get("type") == "http.response.body":
                found = _SSE_SESSION.search(event.get("body", b""))
                if found:
                    owned.append(found.group(1).decode())
                    self._sse_owners[owned[0]] = principal
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
                self._sse_owners.pop(sse_id, None)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def close(self) -> None:
        for session in list(self.sessions.values()):
            if session.transport is not None:
                await session.transport.terminate()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)


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
            tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED,
                    "http": with_client_certificate(AutoHTTPProtocol)}  # fmt: skip
    elif settings.tls_client_ca is not None:
        raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mTLS runs over TLS)")
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=3, **tls)  # fmt: skip
    server = uvicorn.Server(config)
    scheme = "https" if settings.tls_cert is not None else "http"
    log.info("serving MCP over streamable HTTP", url=f"{scheme}://{settings.host}:{settings.port}{settings.path}",
             tokens=[t.id for t in settings.tokens])  # fmt: skip
    async with AsyncExitStack():
        await server.serve()
    return 0
