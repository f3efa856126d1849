"""Shared parts of the end-to-end tests: real servers, the real gateway process, the real client."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client, types
from mcp.client.stdio import StdioServerParameters

from gateway.protocol import jsonrpc

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_SERVERS = ROOT / "fixtures" / "servers"
EVERYTHING = ROOT / "node_modules" / ".bin" / "mcp-server-everything"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def everything_argv() -> list[str]:
    if not EVERYTHING.exists():
        pytest.fail("server-everything is not installed: run 'make test' (it runs 'npm ci' first)")
    return [str(EVERYTHING)]


def time_server_argv() -> list[str]:
    exe = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("mcp-server-time is not installed: run 'make test' (it installs the test extra)")
    return [exe]


def fixture_server_argv(name: str) -> list[str]:
    return [sys.executable, str(FIXTURE_SERVERS / name)]


#: The relay-transparency tests run under a policy that allows and shows everything; tests
#: of the policy itself pass their own --policy.
TRANSPARENT_POLICY = ROOT / "tests" / "e2e" / "policies" / "transparent.toml"


def gateway_argv(upstream: list[str], *options: str) -> list[str]:
    policy = [] if "--policy" in options else ["--policy", str(TRANSPARENT_POLICY)]
    return [sys.executable, "-m", "gateway", "run", *policy, *options, "--", *upstream]


def through_gateway(upstream: list[str], *options: str) -> StdioServerParameters:
    argv = gateway_argv(upstream, *options)
    return StdioServerParameters(command=argv[0], args=argv[1:], cwd=str(ROOT))


def upstream_pids(gateway_log: str) -> list[int]:
    """The pids the gateway logged when it started its upstream."""
    return [int(pid) for pid in re.findall(r"upstream started.*?pid=(\d+)", gateway_log)]


def process_alive(pid: int) -> bool:
    """True when `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


#: How often `eventually` looks again. Waits are bounded by `anyio.fail_after`, never by time.
POLL_INTERVAL = 0.02


async def eventually(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0) -> None:
    """Wait until `condition()` holds, failing after `timeout` seconds. Only for state in another
    process (a child's liveness, a server's counters, a file another process writes), which no
    event in this process can signal."""
    with anyio.fail_after(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(POLL_INTERVAL)


async def wait_until_dead(pid: int, timeout: float = 10.0) -> None:
    await eventually(lambda: not process_alive(pid), timeout)


class GatewayProcess:
    """The real `airlock run` process, driven with raw JSON-RPC lines."""

    def __init__(self, process: Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self._reader = BufferedByteReceiveStream(process.stdout)

    async def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send(data)

    async def send(self, message: Any) -> None:
        await self.send_raw(jsonrpc.encode(message) + b"\n")

    async def receive_line(self, timeout: float = 15.0) -> bytes:
        with anyio.fail_after(timeout):
            return await self._reader.receive_until(b"\n", 64 * 1024 * 1024)

    async def receive(self, timeout: float = 15.0) -> Any:
        return jsonrpc.decode(await self.receive_line(timeout))

    async def request(self, request_id: Any, method: str, params: dict[str, Any] | None = None) -> Any:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.receive()

    async def call(self, request_id: Any, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send a request and return its reply, skipping the server's notifications and requests."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            reply = await self.receive()
            if reply.get("id") == request_id and "method" not in reply:
                return reply

    async def list_tools(self) -> list[str]:
        """tools/list through the gateway (a tool must be listed before the gateway lets it be called)."""
        reply = await self.call("airlock-test-list", "tools/list")
        return [tool["name"] for tool in reply["result"]["tools"]]

    async def close_input(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def wait(self, timeout: float = 15.0) -> int:
        with anyio.fail_after(timeout):
            return await self.process.wait()


@asynccontextmanager
async def raw_gateway(upstream: list[str], *options: str, stderr: Any = None) -> AsyncIterator[GatewayProcess]:
    process = await anyio.open_process(gateway_argv(upstream, *options), cwd=str(ROOT), stderr=stderr, start_new_session=True)
    gateway = GatewayProcess(process)
    try:
        yield gateway
    finally:
        if process.returncode is None:
            with anyio.CancelScope(shield=True):
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        await process.aclose()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def listening(argv: list[str], url: str, *, env: dict[str, str] | None = None, cwd: str | None = None) -> Iterator[str]:
    """Start a server process that listens on `url`, wait (bounded) until it accepts
    connections, and stop it on exit; yields the URL."""
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.from_thread.start_blocking_portal() as portal:
            portal.call(wait_listening, url)
        yield url
    finally:
        process.terminate()
        process.wait(10)


async def wait_listening(url: str, process: Process | None = None, log_path: Path | None = None) -> None:
    """Until a server process accepts connections on `url` (bounded: 30 s). With `process`, fail
    at once (showing `log_path`) when it exits first."""
    import httpx2

    async def accepts() -> bool:
        if process is not None and process.returncode is not None:
            shown = log_path.read_text(errors="replace") if log_path is not None else ""
            pytest.fail(f"the server exited with status {process.returncode} before listening on {url}:\n{shown}")
        try:
            async with httpx2.AsyncClient() as http:
                await http.get(url)
        except httpx2.TransportError:
            return False
        return True

    await eventually(accepts, timeout=30)


async def wait_for_tool(client: Client, name: str) -> list[types.Tool]:
    """The client's tool list once it holds `name`: server-everything registers some tools only
    after `initialized`, and the gateway lets a tool be called only once it has seen it listed."""
    seen: list[types.Tool] = []

    async def listed() -> bool:
        seen[:] = (await client.list_tools()).tools
        return any(tool.name == name for tool in seen)

    await eventually(listed)
    return seen


@pytest.fixture
def remote_everything() -> Iterator[str]:
    """server-everything over streamable HTTP on a free local port; its URL."""
    everything_argv()  # fails with the install hint when it is missing
    port = free_port()
    with listening([str(EVERYTHING), "streamableHttp"], f"http://127.0.0.1:{port}/mcp", env={**os.environ, "PORT": str(port)}) as url:
        yield url


def unlabelled(result: Any) -> Any:
    """A result as the upstream sent it: without the labels the gateway stamps in its `_meta`
    (and without `_meta` when that was all it held)."""
    from gateway.labels.masks import META_KEY

    if type(result) is not dict or type(result.get("_meta")) is not dict or META_KEY not in result["_meta"]:
        return result
    meta = {k: v for k, v in result["_meta"].items() if k != META_KEY}
    rest = {k: v for k, v in result.items() if k != "_meta"}
    return {**rest, "_meta": meta} if meta else rest
