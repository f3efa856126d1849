"""A remote upstream that misbehaves (fixtures/servers/flaky_http_server.py) behind `airlock run
--url` and `airlock serve --url`, driven by the real mcp client: each failure reaches the client
as a JSON-RPC error within a bounded time, never a hang, and the gateway goes on serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, INTERNAL_ERROR, PARSE_ERROR, jsonrpc_message_adapter

from gateway.errors import EXIT_UPSTREAM, UPSTREAM_UNAVAILABLE
from tests.e2e.conftest import FIXTURE_SERVERS, ROOT, TRANSPARENT_POLICY, eventually, free_port

pytestmark = pytest.mark.anyio

FLAKY = FIXTURE_SERVERS / "flaky_http_server.py"
TOOLS = ["ok", "boom500", "hangup", "garbage", "slow"]
#: Bound on one call. A failure is answered at once; a hang would run into the gateway's own
#: 30 s upstream timeout, well past this.
CALL_BOUND = 15.0

#: tool -> (code, words of the message) the client gets when the upstream fails the call that way.
#: The messages are the mcp SDK's (its streamable HTTP client transport, inside the gateway); the
#: gateway relays them unchanged.
FAILURES = {
    "boom500": (INTERNAL_ERROR, "Server returned an error response"),  # the status and body are not passed on
    "hangup": (CONNECTION_CLOSED, "SSE stream ended without a response"),
    "garbage": (PARSE_ERROR, "Failed to parse JSON response"),
}


@dataclass
class Flaky:
    """The flaky server, running as a child of the test."""

    url: str
    port: int
    log_path: Path
    process: Process

    def calls(self) -> list[str]:
        """The tools/call names the server received so far (it announces each on stdout)."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line.removeprefix("call ") for line in lines if line.startswith("call ")]

    async def kill(self) -> None:
        self.process.kill()
        with anyio.fail_after(10):
            await self.process.wait()


@asynccontextmanager
async def flaky_server(tmp_path: Path, port: int | None = None) -> AsyncIterator[Flaky]:
    """Start the flaky server (on `port`, or a free one), wait until it answers HTTP, kill it on exit."""
    port = free_port() if port is None else port
    log_path = tmp_path / f"flaky-{port}.log"
    with open(log_path, "ab") as log:
        process = await anyio.open_process([sys.executable, str(FLAKY), str(port)], cwd=str(ROOT), stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=log, start_new_session=True)  # fmt: skip
    flaky = Flaky(f"http://127.0.0.1:{port}/mcp", port, log_path, process)
    try:
        await eventually(lambda: _answers(flaky.url, process, log_path), timeout=30)
        yield flaky
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
                await process.wait()
        await process.aclose()


async def _answers(url: str, process: Process, log_path: Path) -> bool:
    if process.returncode is not None:
        pytest.fail(f"{url}: the server exited with status {process.returncode}:\n{log_path.read_text(errors='replace')}")
    try:
        async with httpx2.AsyncClient() as http:
            await http.get(url)  # any status will do: something listens
    except httpx2.TransportError:
        return False
    return True


def _run_argv(url: str) -> list[str]:
    return [sys.executable, "-m", "gateway", "run", "--policy", str(TRANSPARENT_POLICY), "--url", url]


@asynccontextmanager
async def airlock_run(url: str, stderr: IO[bytes]) -> AsyncIterator[tuple[Process, TransportStreams]]:
    """`airlock run --url` as a child of the test (so its exit status can be read) and the mcp
    client transport over its stdio: one JSON-RPC message a line, as the SDK's stdio client does."""
    process = await anyio.open_process(_run_argv(url), cwd=str(ROOT), stderr=stderr, start_new_session=True)
    assert process.stdin is not None and process.stdout is not None
    stdin, stdout = process.stdin, BufferedByteReceiveStream(process.stdout)
    to_client, from_gateway = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_gateway, from_client = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with to_client:
            while True:
                try:
                    line = await stdout.receive_until(b"\n", 1 << 24)
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    return  # the gateway closed its output: the client sees the connection end
                await to_client.send(SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False)))

    async def write_lines() -> None:
        async with from_client:
            async for message in from_client:
                try:
                    await stdin.send(message.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the gateway is gone; the reader ends the session
        await stdin.aclose()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_lines)
            tasks.start_soon(write_lines)
            yield process, (from_gateway, to_gateway)
            tasks.cancel_scope.cancel()
    finally:
        await _kill_group(process)


@asynccontextmanager
async def _given(streams: TransportStreams) -> AsyncIterator[TransportStreams]:
    yield streams


async def _kill_group(process: Process) -> None:
    """End a gateway started in its own session, children included, whatever cancelled us."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    await process.aclose()


@asynccontextmanager
async def airlock_serve(tmp_path: Path, url: str) -> AsyncIterator[tuple[str, Process, Path]]:
    """`airlock serve --url` on a free loopback port (no authentication): its URL, process and log.
    On exit it is stopped with SIGTERM and must exit cleanly."""
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--insecure-no-auth",
            "--policy", str(TRANSPARENT_POLICY), "--url", url]  # fmt: skip
    log_path = tmp_path / f"serve-{port}.log"
    with open(log_path, "wb") as log:
        process = await anyio.open_process(argv, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                                           start_new_session=True)  # fmt: skip
    served = f"http://127.0.0.1:{port}/mcp"
    try:
        await eventually(lambda: _answers(served, process, log_path), timeout=30)
        yield served, process, log_path
        process.terminate()
        with anyio.fail_after(30):
            status = await process.wait()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught.
        assert status in (0, -signal.SIGTERM), log_path.read_text(errors="replace")
    finally:
        await _kill_group(process)


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[Client]:
    """A real mcp client session over streamable HTTP (to `airlock serve`)."""
    async with httpx2.AsyncClient(timeout=30) as http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
        yield client


def _leaves(group: BaseExceptionGroup[MCPError]) -> list[MCPError]:
    return [leaf for error in group.exceptions for leaf in (_leaves(error) if isinstance(error, BaseExceptionGroup) else [error])]


async def _call_fails(client: Client, tool: str) -> MCPError:
    with anyio.fail_after(CALL_BOUND), pytest.raises(MCPError) as caught:
        await client.call_tool(tool, {})
    return caught.value


async def _text_of(client: Client, tool: str) -> str:
    with anyio.fail_after(CALL_BOUND):
        result = await client.call_tool(tool, {})
    assert not result.is_error, result
    return " ".join(getattr(block, "text", "") for block in result.content)


async def _each_failure_then_ok(client: Client) -> None:
    with anyio.fail_after(CALL_BOUND):
        assert sorted(tool.name for tool in (await client.list_tools()).tools) == sorted(TOOLS)
    for tool, (code, words) in FAILURES.items():
        error = await _call_fails(client, tool)
        assert (error.error.code, words in error.error.message) == (code, True), f"{tool}: {error.error}"
    assert await _text_of(client, "ok") == "ok"
    assert await _text_of(client, "slow") == "slow"


# airlock run --url


async def test_every_way_a_remote_upstream_fails_a_call_reaches_the_client_as_an_error_and_the_session_goes_on(tmp_path: Path) -> None:
    stderr = tmp_path / "gateway.log"
    async with flaky_server(tmp_path) as flaky:
        params = StdioServerParameters(command=sys.executable, args=_run_argv(flaky.url)[1:], cwd=str(ROOT))
        with stderr.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:
                await _each_failure_then_ok(client)
        assert flaky.calls() == [*FAILURES, "ok", "slow"]
    assert "this is {not json" in stderr.read_text()  # the SDK logs the body it could not parse


async def _lose_the_upstream(tmp_path: Path, during_call: bool) -> tuple[MCPError, int, str, str]:
    """List the tools through `airlock run --url`, kill the remote server (between two calls, or
    while `slow` is in flight) and call: the error the client got, the gateway's exit status and
    stderr, and the URL."""
    stderr_path = tmp_path / "gateway.log"
    async with flaky_server(tmp_path) as flaky:
        with stderr_path.open("wb") as stderr:
            async with airlock_run(flaky.url, stderr) as (gateway, streams), Client(_given(streams), mode="legacy") as client:
                with anyio.fail_after(CALL_BOUND):
                    assert len((await client.list_tools()).tools) == len(TOOLS)
                if during_call:
                    async with anyio.create_task_group() as tasks:
                        failed: list[MCPError] = []

                        async def call_slow() -> None:
                            failed.append(await _call_fails(client, "slow"))

                        tasks.start_soon(call_slow)
                        await eventually(lambda: "slow" in flaky.calls())
                        await flaky.kill()
                    error = failed[0]
                else:
                    await flaky.kill()
                    error = await _call_fails(client, "ok")
                with anyio.fail_after(CALL_BOUND):
                    status = await gateway.wait()
    return error, status, stderr_path.read_text(errors="replace"), flaky.url


@pytest.mark.parametrize("during_call", [False, True], ids=["between-calls", "during-a-call"])
async def test_a_remote_upstream_that_dies_fails_the_call_and_stops_the_gateway_naming_the_url(tmp_path: Path, during_call: bool) -> None:
    error, status, stderr, url = await _lose_the_upstream(tmp_path, during_call)

    assert error.error.code == UPSTREAM_UNAVAILABLE, error.error
    assert f"the connection to the upstream at {url} was lost" in error.error.message
    assert status == EXIT_UPSTREAM, stderr
    failed = [line for line in stderr.splitlines() if "upstream connection failed" in line]
    assert failed and url in failed[0], stderr


@pytest.mark.parametrize("during_call", [False, True], ids=["between-calls", "during-a-call"])
async def test_the_network_error_that_ended_a_remote_upstream_is_named_on_stderr(tmp_path: Path, during_call: bool) -> None:
    _, _, stderr, _ = await _lose_the_upstream(tmp_path, during_call)

    # Regression (was a bug): the log said only "unhandled errors in a TaskGroup (1 sub-exception)", the SDK's
    # exception group, hiding the network error inside it.
    failed = next(line for line in stderr.splitlines() if "upstream connection failed" in line)
    assert any(cause in failed for cause in ("ConnectError", "RemoteProtocolError", "ReadError")), failed
    assert "TaskGroup" not in failed


# airlock serve --url


async def test_every_way_a_remote_upstream_fails_a_call_reaches_an_http_client_as_an_error_and_the_session_goes_on(tmp_path: Path) -> None:
    async with flaky_server(tmp_path) as flaky, airlock_serve(tmp_path, flaky.url) as (url, _, _), http_session(url) as client:
        await _each_failure_then_ok(client)


async def test_airlock_serve_outlives_a_remote_upstream_that_dies_and_serves_it_again_once_it_is_back(tmp_path: Path) -> None:
    async with flaky_server(tmp_path) as flaky, airlock_serve(tmp_path, flaky.url) as (url, serve, log_path):
        async with http_session(url) as client:
            with anyio.fail_after(CALL_BOUND):
                assert len((await client.list_tools()).tools) == len(TOOLS)
            await flaky.kill()
            error = await _call_fails(client, "ok")
        assert error.error.code == UPSTREAM_UNAVAILABLE, error.error
        assert f"the connection to the upstream at {flaky.url} was lost" in error.error.message
        assert serve.returncode is None, log_path.read_text(errors="replace")
        log = log_path.read_text(errors="replace")
        assert any("upstream connection failed" in line and flaky.url in line for line in log.splitlines()), log

        async with flaky_server(tmp_path, flaky.port), http_session(url) as client:
            with anyio.fail_after(CALL_BOUND):
                await client.list_tools()
            assert await _text_of(client, "ok") == "ok"


async def test_a_session_opened_while_the_remote_upstream_is_down_is_refused_as_upstream_unavailable(tmp_path: Path) -> None:
    async with flaky_server(tmp_path) as flaky, airlock_serve(tmp_path, flaky.url) as (url, _, log_path):
        await flaky.kill()
        refused: list[MCPError] = []
        with anyio.fail_after(CALL_BOUND):
            try:
                async with http_session(url):
                    pass
            except* MCPError as group:
                refused.extend(_leaves(group))
    # Regression (was a bug): refused with -32600 (invalid request) and no cause, and the session task's
    # UpstreamStartFailed went unretrieved ("Task exception was never retrieved" on stderr).
    assert [error.error.code for error in refused] == [UPSTREAM_UNAVAILABLE], refused
    assert flaky.url in refused[0].error.message and "could not be started" in refused[0].error.message
    assert "never retrieved" not in log_path.read_text(errors="replace")
