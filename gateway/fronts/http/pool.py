"""`airlock serve`'s stateless requests: one long-lived pool per principal.

A request without `Mcp-Session-Id` that is not `initialize` (every request of a 2026-07-28
client, the `server/discover` probe of an mcp 2.x client) belongs to its principal (`Principal`:
the token id and, under mTLS, the client certificate). All of one principal's stateless
requests go to that principal's pool: one `HttpSession` with its upstream process, relay,
mediator (so one label state) and flight log, started by the first of them and kept until it
is idle past `--session-idle-timeout`, closed to make room at `--max-sessions` (it counts
against the cap like a session), or its upstream ends. Two principals never share a pool.

Each HTTP request is served by an SDK transport of its own (`StreamableHTTPServerTransport`
without a session id, which gives the standard answers: JSON or SSE, Accept and Content-Type
checks), bridged to the pool. Requests of one pool run concurrently; `multiplex.Multiplexer`
keeps their ids apart. An HTTP request that ends before its answer cancels its call upstream.

Label state outlives the pool: when a principal's pool ends (idle, made room for, its upstream
died) the next one continues the same label state (`SessionParts.label_state`), for as long as
this `airlock serve` runs. Otherwise waiting, or opening sessions until the pool is closed to
make room, would wash a principal's taint away. The conservative consequence: a private read
in one conversation taints every later stateless request of the same principal.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import structlog
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types.jsonrpc import JSONRPCError, JSONRPCNotification, JSONRPCResponse

from gateway.errors import UPSTREAM_UNAVAILABLE, GatewayError
from gateway.fronts.http.direct import Receive, Send
from gateway.fronts.http.multiplex import Multiplexer
from gateway.fronts.http.peer import Principal
from gateway.fronts.http.session import HttpSession, SessionFactory, SessionRegistry
from gateway.fronts.http.settings import ServeSettings
from gateway.protocol import methods

log = structlog.get_logger("airlock.serve")

Scope = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why no pool could take a request: the HTTP status, the message, extra headers, the code."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    code: int = -32600


class Pool:
    """One principal's stateless requests on one session (see the module docstring)."""

    def __init__(self, settings: ServeSettings, security: TransportSecuritySettings) -> None:
        self._settings = settings
        self._security = security
        self.ids = Multiplexer()
        self._channels: dict[int, asyncio.Queue[SessionMessage]] = {}
        self._inbox, self._read = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        self.session: HttpSession | None = None  # set once, right after the pool is made

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Any, Any]]:
        """The session's streams: nothing comes in through the read one (requests are
        delivered to the session directly), until `stop` ends it."""
        try:
            yield self._read, _Output(self)
        finally:
            self._inbox.close()
            self._read.close()

    def stop(self) -> None:
        self._inbox.close()

    def route(self, item: SessionMessage) -> None:
        """A message of the session to the channel it is for (dropped if it has none)."""
        message = item.message
        if isinstance(message, JSONRPCResponse | JSONRPCError):
            route = self.ids.answered(message.id)
            if route is None:
                log.info("stateless answer for no open request dropped", id=message.id)
                return
            out = SessionMessage(message.model_copy(update={"id": route.request_id}))
        else:
            related = item.metadata.related_request_id if isinstance(item.metadata, ServerMessageMetadata) else None
            route = self.ids.related(related)
            if route is None:  # no standalone GET stream without a session
                log.info("stateless message for no open request dropped", method=getattr(message, "method", None))
                return
            if isinstance(message, JSONRPCNotification) and message.method == methods.PROGRESS and message.params is not None:
                token = self.ids.client_token(message.params.get("progressToken"))
                if token is not None:
                    message = message.model_copy(update={"params": {**message.params, "progressToken": token}})
            out = SessionMessage(message, metadata=ServerMessageMetadata(related_request_id=route.request_id))
        channel = self._channels.get(route.channel)
        if channel is not None:
            channel.put_nowait(out)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request on this pool."""
        session = self.session
        assert session is not None
        session.touch()
        transport = StreamableHTTPServerTransport(
            None, is_json_response_enabled=self._settings.json_responses, event_store=None, security_settings=self._security
        )
        channel = self.ids.open_channel()
        queue: asyncio.Queue[SessionMessage] = asyncio.Queue()
        self._channels[channel] = queue
        try:
            async with transport.connect() as (read_stream, write_stream), anyio.create_task_group() as tasks:
                tasks.start_soon(_forward, queue, write_stream)
                tasks.start_soon(self._handle, transport, scope, receive, send)
                tasks.start_soon(_end_with, session, transport)
                try:
                    async for item in read_stream:  # ends when the request is answered (terminate)
                        if isinstance(item, Exception):
                            continue
                        rewritten = self.ids.inbound(channel, item.message.model_dump(by_alias=True, mode="json", exclude_unset=True))
                        if rewritten is not None:
                            session.deliver(rewritten)
                except (anyio.ClosedResourceError, anyio.EndOfStream):
                    pass
                tasks.cancel_scope.cancel()
        finally:
            del self._channels[channel]
            for gateway_id in self.ids.close_channel(channel):  # its HTTP request ended unanswered
                cancel = {"requestId": gateway_id, "reason": "the stateless HTTP request ended before its answer"}
                session.deliver({"jsonrpc": "2.0", "method": methods.CANCELLED, "params": cancel})
            session.touch()

    @staticmethod
    async def _handle(transport: StreamableHTTPServerTransport, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await transport.handle_request(scope, receive, send)
        finally:
            await transport.terminate()


class _Output:
    """The session's write stream: each message goes to its channel."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def send(self, item: SessionMessage) -> None:
        self._pool.route(item)


async def _forward(queue: asyncio.Queue[SessionMessage], write_stream: Any) -> None:
    while True:
        item = await queue.get()
        try:
            await write_stream.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return


async def _end_with(session: HttpSession, transport: StreamableHTTPServerTransport) -> None:
    """The pool ended (its upstream, idle, shutdown): the request is answered no more."""
    await session.done.wait()
    await transport.terminate()


class StatelessPools:
    """The pools of one `airlock serve`, one per principal, and the label state each principal
    keeps across its pools."""

    def __init__(
        self, settings: ServeSettings, make_session: SessionFactory, sessions: SessionRegistry, security: TransportSecuritySettings
    ) -> None:
        self._settings = settings
        self._make_session = make_session
        self._sessions = sessions
        self._security = security
        self._pools: dict[Principal, Pool] = {}
        self._label_states: dict[Principal, object] = {}
        self._starting: dict[Principal, asyncio.Lock] = {}

    async def serve(self, principal: Principal, scope: Scope, receive: Receive, send: Send) -> Refusal | None:
        """Answer one stateless request of `principal` on its pool; a Refusal (not answered):
        no pool could take it."""
        pool = await self.acquire(principal)
        if isinstance(pool, Refusal):
            return pool
        await pool.answer(scope, receive, send)
        return None

    async def acquire(self, principal: Principal) -> Pool | Refusal:
        """`principal`'s open pool, started if it has none (taking a place under `--max-sessions`)."""
        async with self._starting.setdefault(principal, asyncio.Lock()):  # one start at a time per principal
            pool = self._pools.get(principal)
            if pool is not None and pool.session is not None and not pool.session.closing:
                return pool
            if not await self._sessions.reserve_making_room():
                return Refusal(503, "too many open sessions", ((b"retry-after", b"5"),))
            try:
                return await self._start(principal)
            finally:
                self._sessions.release()

    async def _start(self, principal: Principal) -> Pool | Refusal:
        name = f"stateless-{secrets.token_hex(8)}"
        kept = self._label_states.get(principal)
        try:
            parts = self._make_session(name, principal, "stateless", label_state=kept)
        except GatewayError as error:
            log.error("stateless pool not opened", error=error.message)
            return Refusal(500, f"the session could not be set up: {error.message}")
        if parts.label_state is not None:
            self._label_states[principal] = parts.label_state
        pool = Pool(self._settings, self._security)
        session = HttpSession(self._settings, None, parts, principal, connect=pool.connect, on_stop=pool.stop, name=name)
        pool.session = session
        task = self._sessions.run(session)
        await session.ready.wait()
        if session.done.is_set():
            reason = session.start_error or "it ended at once"
            return Refusal(502, f"the upstream server could not be started: {reason}", code=UPSTREAM_UNAVAILABLE)
        self._sessions.add_pool(session, task)
        self._pools[principal] = pool
        task.add_done_callback(lambda _: self._pools.pop(principal, None) if self._pools.get(principal) is pool else None)
        log.info("stateless pool opened", session=name, label_state="continued" if kept is not None else "new", **principal.describe())
        return pool
