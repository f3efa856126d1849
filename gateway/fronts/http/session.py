"""`airlock serve`'s sessions: one `HttpSession` per MCP session (its transport, upstream, relay
and flight log, wired as every front wires one), the `_Router` that tells which client request a
server-to-client message belongs to, and the `SessionRegistry` of the open sessions, which owns
`max_sessions` (as the MCP SDK's `StreamableHTTPSessionManager` owns its session table).

Server-to-client messages of a stdio upstream say nothing about which request they belong to:
a progress notification is routed by its progress token, anything else to the client request
opened most recently and still open, else to the session's standalone GET stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import structlog
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter

from gateway.errors import UpstreamStartFailed
from gateway.evidence.flightlog import FlightLog
from gateway.fronts.http import direct
from gateway.fronts.http.direct import Receive, Send
from gateway.fronts.http.peer import Principal
from gateway.fronts.http.settings import ServeSettings
from gateway.mediation.interface import Mediator
from gateway.protocol import jsonrpc, methods
from gateway.protocol.pipes import LineWriter, QueueSink
from gateway.recording.cassette import CassetteWriter
from gateway.session.evidence import WriteAhead
from gateway.session.wiring import wire_session
from gateway.upstream import Upstream

log = structlog.get_logger("airlock.serve")


@dataclass(slots=True)
class _Router:
    """Which client request a server-to-client message belongs to."""

    open: dict[Any, None] = field(default_factory=dict)  # insertion-ordered open request ids
    progress: dict[Any, Any] = field(default_factory=dict)  # progress token -> request id

    def client_request(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        params = message.get("params")
        if message.get("method") == methods.CANCELLED and type(params) is dict:
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
        if message.get("method") == methods.PROGRESS and type(token) in (int, str):
            owner = self.progress.get(token)
            if owner is not None:
                return owner
        return next(reversed(self.open), None)


@dataclass(slots=True)
class SessionParts:
    """What `airlock serve` builds for each session: its mediator (label state, pins), its
    flight log and, with `--record`, its cassette. `label_state` is the mediator's label state,
    opaque to the front: a stateless pool that is started again for the same principal gets it
    back (`SessionFactory`'s `label_state`), so its labels survive the pool."""

    mediator: Mediator
    flight_log: FlightLog | None = None
    recorder: CassetteWriter | None = None
    label_state: object | None = None


class SessionFactory(Protocol):
    def __call__(self, session: str, principal: Principal, transport: str, *, label_state: object | None = None) -> SessionParts:
        """The parts of session `session` opened by `principal` over `transport`
        ("streamable-http", "stateless" or "sse"); with `label_state` (a `SessionParts.label_state`
        of an earlier session), its mediator continues that label state instead of a new one.

        Raises:
            GatewayError: the session cannot be set up (e.g. its flight log cannot be opened).
        """
        ...


class HttpSession:
    """One MCP session: its transport, upstream child, relay and flight log."""

    def __init__(
        self,
        settings: ServeSettings,
        transport: StreamableHTTPServerTransport | None,
        parts: SessionParts,
        principal: Principal,
        *,
        connect: Callable[[], Any] | None = None,
        on_stop: Callable[[], None] | None = None,
        name: str | None = None,
        resumable: bool = False,
    ) -> None:
        """`transport`: a streamable-HTTP session; or `connect`: the streams of another transport
        (the legacy SSE one, whose session ends with the request that opened it; a stateless
        pool's, which `on_stop` ends)."""
        self.settings = settings
        self.transport = transport
        self._connect = connect if connect is not None else transport.connect if transport is not None else None
        self.name = name if name is not None else transport.mcp_session_id if transport is not None else None
        self.principal = principal
        self._on_stop = on_stop
        self.flight_log = flight_log = parts.flight_log
        self.recorder = recorder = parts.recorder
        self.ready = asyncio.Event()
        self.done = asyncio.Event()
        self.start_error: str | None = None  # why the upstream could not be started
        self.closing = False  # the session is ending: the fast path takes no new request
        self.last_request = asyncio.get_running_loop().time()  # `touch`ed by every request routed to it
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

    def touch(self) -> None:
        """A request came for this session: it is in use."""
        self.last_request = asyncio.get_running_loop().time()

    def idle_since(self) -> float | None:
        """When its last request came, if nothing of it is open now (None: it is in use)."""
        return None if self.closing or self.relay.pending_client_requests else self.last_request

    async def stop(self) -> None:
        """End the session: its run ends, and its upstream with it."""
        if self.transport is not None:
            await self.transport.terminate()
        elif self._on_stop is not None:
            self._on_stop()

    def deliver(self, message: dict[str, Any]) -> bool:
        """Relay one message from the client; False: the session is ending and took nothing."""
        if self.closing:
            return False
        self._router.client_request(message)
        self._from_client(jsonrpc.encode(message))
        self._flush()
        if message.get("method") == methods.CANCELLED:  # a cancelled fast-path call is answered no more
            cancelled = jsonrpc.members(message.get("params")).get("requestId")
            waiting = self._direct.get(cancelled) if type(cancelled) in (int, str) else None
            if waiting is not None:
                waiting.put_nowait(None)
        return True

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
                            self.deliver(item.message.model_dump(by_alias=True, mode="json", exclude_unset=True))
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
            log.info("session ended", session=self.name, **self.principal.describe(), upstream_status=status, **self.relay.describe())
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
                    error = {
                        "code": -32603,
                        "message": "the client connection has no channel for requests during a call (airlock serve --json-responses)",
                    }
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


class SessionRegistry:
    """The open sessions of one `airlock serve`: streamable-HTTP ones by `Mcp-Session-Id`, the
    stateless pools (no id: `gateway.fronts.http.pool` finds them by principal), legacy SSE
    ones by who opened each (their session lives as long as its GET request), the tasks that
    run them, and the `max_sessions` limit."""

    def __init__(self, max_sessions: int) -> None:
        self.max_sessions = max_sessions
        self._by_id: dict[str, HttpSession] = {}
        self._pools: set[HttpSession] = set()
        self._sse_owners: dict[str, Principal] = {}  # legacy SSE session id -> who opened it
        self._tasks: set[asyncio.Task[None]] = set()
        #: Places taken by sessions being set up, one-shot (stateless) requests and legacy SSE
        #: streams: taken before anything is started, given back when they end.
        self._reserved = 0

    def get(self, session_id: str) -> HttpSession | None:
        return self._by_id.get(session_id)

    def reserve(self) -> bool:
        """Take a place for a session or a one-shot request before starting anything for it;
        False: the limit is reached. Checked and taken in one step (no await between), so
        concurrent requests can never pass the limit together."""
        if len(self._by_id) + len(self._pools) + self._reserved >= self.max_sessions:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """Give back a place `reserve` took (the session was registered with `add`, or ended)."""
        self._reserved -= 1

    async def reserve_making_room(self) -> bool:
        """`reserve`, and at the cap first close the longest-idle session (nothing open, no
        request for longest) to make room; False: every session is in use."""
        if self.reserve():
            return True
        for session in self.idle(asyncio.get_running_loop().time())[:1]:
            await self.end(session, "the longest idle, to make room at --max-sessions")
        return self.reserve()

    async def close_idle(self, timeout: float) -> None:
        """Forever: every so often (a quarter of `timeout`, at most 30 s), close the sessions
        idle for more than `timeout` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(timeout / 4, 30.0))
            for session in self.idle(loop.time() - timeout):
                await self.end(session, f"idle for more than {timeout:g} s (--session-idle-timeout)")

    def idle(self, older_than: float) -> list[HttpSession]:
        """The sessions whose last request came before `older_than` and have nothing open,
        longest-idle first."""
        sessions = [*self._by_id.values(), *self._pools]
        found = [(since, s) for s in sessions if (since := s.idle_since()) is not None and since < older_than]
        return [session for _, session in sorted(found, key=lambda pair: pair[0])]

    async def end(self, session: HttpSession, why: str) -> None:
        """Close `session` and its upstream now (its place is free when this returns; bounded: 5 s)."""
        log.info("session closed", session=session.name, reason=why, **session.principal.describe())
        for session_id, known in list(self._by_id.items()):
            if known is session:
                del self._by_id[session_id]
        self._pools.discard(session)
        await session.stop()
        with anyio.move_on_after(5):
            await session.done.wait()

    def run(self, session: HttpSession) -> asyncio.Task[None]:
        """Run `session` in a task of its own, kept until it ends (`close` waits for it)."""
        task = asyncio.ensure_future(session.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add(self, session_id: str, session: HttpSession, task: asyncio.Task[None]) -> None:
        """`session`, run by `task`, answers to `session_id` until it ends."""
        self._by_id[session_id] = session
        task.add_done_callback(lambda _: self._by_id.pop(session_id, None))

    def add_pool(self, session: HttpSession, task: asyncio.Task[None]) -> None:
        """`session`, run by `task`, is a stateless pool: it holds a place until it ends."""
        self._pools.add(session)
        task.add_done_callback(lambda _: self._pools.discard(session))

    def sse_owner(self, sse_id: str) -> Principal | None:
        return self._sse_owners.get(sse_id)

    def own_sse(self, sse_id: str, principal: Principal) -> None:
        self._sse_owners[sse_id] = principal

    def release_sse(self, sse_id: str) -> None:
        self._sse_owners.pop(sse_id, None)

    async def close(self) -> None:
        """End every streamable-HTTP session and stateless pool, and wait (at most 5 s) for their tasks."""
        for session in [*self._by_id.values(), *self._pools]:
            await session.stop()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
