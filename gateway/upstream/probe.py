"""`airlock pin`'s I/O: start an upstream, introduce itself as a client, and collect everything
the server shows a model (instructions, tools, prompts, resources, resource templates), exactly
as sent. The pins are computed from these raw objects with the same hashing the gateway uses
at run time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import UpstreamStartFailed, UpstreamUnavailable
from gateway.protocol import jsonrpc, methods
from gateway.protocol.methods import LIST_METHODS
from gateway.upstream import UpstreamSpec, open_upstream
from gateway.upstream.child import ChildSpec
from gateway.upstream.http import HttpSpec

PROBE_PROTOCOL: Final = "2025-11-25"
_CAPABILITY_OF: Final = {"tools": "tools", "prompts": "prompts", "resources": "resources", "resourceTemplates": "resources"}
_MAX_PAGES: Final = 1000


@dataclass(slots=True)
class ServerListing:
    server_name: str | None = None
    instructions: str | None = None
    items: dict[str, list[Any]] = field(default_factory=dict)


class _Conversation:
    """One JSON-RPC conversation over lines: `read_line` gives the server's next line (b"" at
    its end), `write_line` sends one."""

    def __init__(self, read_line: Callable[[], Awaitable[bytes]], write_line: Callable[[bytes], Awaitable[None]]) -> None:
        self._read_line = read_line
        self._write_line = write_line
        self._next = 0

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self._next += 1
        request_id = f"airlock-pin-{self._next}"
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            line = await self._read_line()
            if not line:
                raise UpstreamUnavailable(f"the upstream closed its output while answering {method}")
            try:
                reply = jsonrpc.decode(line)
            except Exception:
                continue  # not JSON-RPC (a banner): the gateway would drop it too
            if type(reply) is not dict:
                continue
            if "method" in reply and "id" in reply:  # a request to us (sampling, roots): decline
                await self.send({"jsonrpc": "2.0", "id": reply["id"], "error": {"code": -32601, "message": "airlock pin answers nothing"}})
                continue
            if reply.get("id") != request_id:
                continue
            if "error" in reply:
                error = reply["error"] if type(reply["error"]) is dict else {}
                raise UpstreamUnavailable(f"the upstream answered {method} with an error: {error.get('message')!r}")
            return reply.get("result")

    async def send(self, message: dict[str, Any]) -> None:
        await self._write_line(jsonrpc.encode(message) + b"\n")


async def list_server(spec: UpstreamSpec, *, timeout: float = 60.0) -> ServerListing:
    """Everything the server shows a model: a command started as a child, or a remote server
    (streamable HTTP or SSE) over the gateway's own upstream connection.

    Raises:
        UpstreamUnavailable: it could not be started or reached, did not answer in time, or failed.
    """
    if isinstance(spec, HttpSpec):
        return await _list_remote(spec, timeout)
    return await _list_child(spec, timeout)


async def _list_child(spec: ChildSpec, timeout: float) -> ServerListing:
    # A plain subprocess, not `ChildProcess`: the probe reads whole lines of any size, then kills the group.
    try:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=dict(spec.env),
            cwd=spec.cwd,
            start_new_session=True,
            limit=64 * 1024 * 1024,
        )
    except OSError as exc:
        raise UpstreamUnavailable(f"cannot start the upstream {spec.argv[0]!r}: {exc.strerror or exc}") from None
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None

    async def write_line(line: bytes) -> None:
        stdin.write(line)
        await stdin.drain()

    try:
        async with asyncio.timeout(timeout):
            return await _converse(_Conversation(stdout.readline, write_line))
    except TimeoutError:
        raise UpstreamUnavailable(f"the upstream did not answer within {timeout:.0f} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


async def _list_remote(spec: HttpSpec, timeout: float) -> ServerListing:
    lines: asyncio.Queue[bytes] = asyncio.Queue()

    def on_output(data: bytes) -> None:
        for line in data.split(b"\n"):
            if line:
                lines.put_nowait(line)

    upstream = open_upstream(spec, on_output)
    try:
        await upstream.start()
    except UpstreamStartFailed as error:
        raise UpstreamUnavailable(error.message) from None

    async def read_line() -> bytes:
        getter = asyncio.ensure_future(lines.get())
        ended = asyncio.ensure_future(upstream.exited.wait())
        try:
            await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()
        return b""

    async def write_line(line: bytes) -> None:
        upstream.stdin.write(line)

    try:
        async with asyncio.timeout(timeout):
            return await _converse(_Conversation(read_line, write_line))
    except TimeoutError:
        raise UpstreamUnavailable(f"the upstream at {spec.display} did not answer within {timeout:.0f} s") from None
    finally:
        await upstream.terminate(grace=0.5)


async def _converse(talk: _Conversation) -> ServerListing:
    init = await talk.request(
        methods.INITIALIZE, {"protocolVersion": PROBE_PROTOCOL, "capabilities": {}, "clientInfo": {"name": "airlock-pin", "version": "1"}}
    )
    await talk.send({"jsonrpc": "2.0", "method": methods.INITIALIZED})
    listing = ServerListing()
    if type(init) is dict:
        info = init.get("serverInfo")
        if type(info) is dict and type(info.get("name")) is str:
            listing.server_name = info["name"]
        if type(init.get("instructions")) is str:
            listing.instructions = init["instructions"]
    capabilities = init.get("capabilities") if type(init) is dict else None
    capabilities = capabilities if type(capabilities) is dict else {}
    for method, kind in LIST_METHODS.items():
        if _CAPABILITY_OF[kind] not in capabilities:
            continue
        items: list[Any] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            page = await talk.request(method, {"cursor": cursor} if cursor else None)
            page = page if type(page) is dict else {}
            found = page.get(kind)
            items.extend(found if type(found) is list else [])
            cursor = page.get("nextCursor") if type(page.get("nextCursor")) is str else None
            if not cursor:
                break
        listing.items[kind] = items
    return listing
