"""An upstream MCP server over streamable HTTP or legacy SSE, behind the same small surface
`run_stdio` uses for a child process: lines in (`stdin.write`), lines out (`on_output`),
`exited`, `terminate`.

The mcp SDK's client transports do the HTTP (sessions, SSE streams, reconnection of the GET
stream where the transport allows it); Airlock relays at the message level on top: each line the
relay writes is validated into a JSON-RPC message and sent, each message received is encoded
back into a line for `Relay.from_upstream`. Headers (bearer tokens) come from the config or the
environment and are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import orjson
import structlog

from gateway.errors import UpstreamStartFailed
from gateway.protocol import jsonrpc
from gateway.protocol.pipes import FlowLink, QueueSink

log = structlog.get_logger("airlock.http-upstream")


@dataclass(frozen=True, slots=True)
class HttpSpec:
    url: str
    transport: Literal["streamable-http", "sse"] = "streamable-http"
    headers: Mapping[str, str] = field(default_factory=dict)  # secrets: never logged
    timeout: float = 30.0
    connect_timeout: float = 10.0

    @property
    def display(self) -> str:
        """The URL as logs and errors show it: a query or user part (which may hold a token) is
        replaced by "..."."""
        try:
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return self.url.split("?", 1)[0].split("@")[-1]
        shown = f"{parts.scheme}://{'...@' if parts.username or parts.password else ''}{host}{port}{parts.path}"
        return shown + ("?..." if parts.query else "")


def describe_failure(exc: BaseException) -> str:
    """What went wrong, naming the network errors inside the SDK's exception groups (a bare
    group says only "unhandled errors in a TaskGroup")."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(exc)
    return "; ".join(f"{type(e).__name__}: {str(e)[:200]}" for e in leaves[:3])


class HttpUpstream:
    def __init__(self, spec: HttpSpec, on_output: Callable[[bytes], None]) -> None:
        self.spec = spec
        self._on_output = on_output
        self.stdin = QueueSink()
        self.stdin_flow = FlowLink()
        self.exited = asyncio.Event()
        self.returncode: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._error: str | None = None

    # the reader side of a FlowLink: nothing to pause on a message stream
    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    async def start(self) -> None:
        """Connect. Raises UpstreamStartFailed naming the URL (never the headers)."""
        self._task = asyncio.ensure_future(self._run())
        waiter = asyncio.ensure_future(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=self.spec.connect_timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self._connected.is_set():
            if self._task in done:
                raise UpstreamStartFailed(f"cannot connect to the upstream at {self.spec.display}: {self._error or 'connection ended'}")
            self._task.cancel()
            raise UpstreamStartFailed(f"the upstream at {self.spec.display} did not answer within {self.spec.connect_timeout} s")
        log.info("upstream connected", url=self.spec.display, transport=self.spec.transport)

    async def _run(self) -> None:
        # The SDK's client (and httpx2 under it) is imported when a remote upstream is opened:
        # commands and stdio upstreams never pay for it.
        import httpx2
        from mcp.client.sse import sse_client
        from mcp.client.streamable_http import streamable_http_client

        try:
            async with httpx2.AsyncClient(headers=dict(self.spec.headers), timeout=self.spec.timeout) as http:
                # The SDK connects lazily; probe now so a wrong URL or credential fails at start-up.
                probe = await http.request("OPTIONS", self.spec.url, timeout=self.spec.connect_timeout)
                if probe.status_code in (401, 403):
                    raise PermissionError(f"HTTP {probe.status_code}: the upstream refused the credentials (check --bearer-env/--header)")
                if self.spec.transport == "sse":
                    context: Any = sse_client(self.spec.url, headers=dict(self.spec.headers), timeout=self.spec.timeout)
                else:
                    context = streamable_http_client(self.spec.url, http_client=http)
                async with context as streams:
                    read_stream, write_stream = streams[0], streams[1]
                    self._connected.set()
                    sender = asyncio.ensure_future(self._send(write_stream))
                    try:
                        async for item in read_stream:
                            if isinstance(item, Exception):
                                log.warning("upstream transport error", url=self.spec.display, error=str(item)[:300])
                                continue
                            message = item.message.model_dump(by_alias=True, mode="json", exclude_unset=True)
                            self._on_output(jsonrpc.encode(message) + b"\n")
                    finally:
                        sender.cancel()
            self.returncode = 0
        except asyncio.CancelledError:
            self.returncode = 0
        except Exception as exc:  # a network failure ends the upstream like a child's exit
            self._error = describe_failure(exc)
            log.error("upstream connection failed", url=self.spec.display, error=self._error)
            self.returncode = 1
        finally:
            self.exited.set()

    async def _send(self, write_stream: Any) -> None:
        from mcp.shared.message import SessionMessage
        from mcp_types.jsonrpc import jsonrpc_message_adapter

        while True:
            line = await self.stdin.queue.get()
            if line is None:
                return
            try:
                message = jsonrpc_message_adapter.validate_python(orjson.loads(line), by_name=False)
            except Exception as exc:  # the relay only sends valid JSON-RPC
                log.error("message not sendable over HTTP; dropped", error=str(exc)[:200])
                continue
            await write_stream.send(SessionMessage(message))

    async def wait_output_done(self, timeout: float) -> None:
        return None

    def ended_because(self) -> str:
        """Why the upstream is gone, for the errors that answer its open requests."""
        return f"the connection to the upstream at {self.spec.display} was lost: {self._error or 'it closed'}"

    async def terminate(self, grace: float = 1.0) -> int:
        """Send what is queued (for at most `grace` seconds), then close the connection (a
        streamable-HTTP session is ended with DELETE by the SDK)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.stdin.queue.qsize() and loop.time() < deadline and not self.exited.is_set():
            await asyncio.sleep(0.01)
        self.stdin.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return self.returncode if self.returncode is not None else 0
