"""A minimal, fast JSON-RPC client over a child's stdio, shared by the benchmarks.

It is deliberately not the `mcp` client: the point is to measure the server and the gateway,
so the client side must cost as little as possible and the same on every path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

import orjson


class RawClient(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self._buf = b""
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited = asyncio.Event()

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str] | None = None) -> RawClient:
        loop = asyncio.get_running_loop()
        _, proto = await loop.subprocess_exec(
            cls,
            *argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env or dict(os.environ),
            start_new_session=True,
        )
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            if not line:
                continue
            msg = orjson.loads(line)
            waiter = self._waiters.pop(msg.get("id"), None) if "id" in msg and "method" not in msg else None
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)

    def process_exited(self) -> None:
        self.exited.set()

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(orjson.dumps(message) + b"\n")

    def request(self, method: str, params: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        self._next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[self._next_id] = fut
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return fut

    async def initialize(self) -> None:
        await self.request(
            "initialize",
            {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def close(self) -> None:
        assert self.transport is not None
        stdin = self.transport.get_pipe_transport(0)
        if stdin is not None:
            stdin.close()
        try:
            await asyncio.wait_for(self.exited.wait(), 3)
        except TimeoutError:
            os.killpg(self.transport.get_pid(), 9)
            await self.exited.wait()


async def latencies(client: RawClient, method: str, params: dict[str, Any], count: int) -> list[float]:
    """Sequential calls (one in flight); seconds per call."""
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        reply = await client.request(method, params)
        out.append(time.perf_counter() - t0)
        assert "result" in reply, reply
    return out


async def throughput(client: RawClient, method: str, params: dict[str, Any], count: int, in_flight: int) -> float:
    """Calls per second with `in_flight` requests kept open."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            reply = await client.request(method, params)
            assert "result" in reply, reply

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count / (time.perf_counter() - t0)
