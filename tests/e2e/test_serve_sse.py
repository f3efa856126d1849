"""`airlock serve --sse-path /sse`: the legacy (2024-11-05) HTTP+SSE transport, with the same
authentication, one upstream per stream, and messages accepted only with the opening token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, eventually, everything_argv, free_port

pytestmark = pytest.mark.anyio

TOKEN_A = "a-0123456789abcdef0123"
TOKEN_B = "b-0123456789abcdef0123"


@pytest.fixture
def sse_serve(tmp_path: Path) -> Iterator[str]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"a:{TOKEN_A}\nb:{TOKEN_B}\n")
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens), "--sse-path",
            "/sse", "--policy", str(TRANSPARENT_POLICY), "--", *everything_argv()]  # fmt: skip
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(argv, cwd=str(ROOT), stderr=stderr, stdout=subprocess.DEVNULL)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(15)
    assert TOKEN_A not in (tmp_path / "stderr.txt").read_text()


async def _up(base: str) -> bool:
    try:
        async with httpx2.AsyncClient() as http:
            await http.get(base + "/mcp")
        return True
    except httpx2.TransportError:
        return False


async def test_a_legacy_sse_client_is_served_and_its_results_labelled(sse_serve: str) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _up(sse_serve))
        async with Client(sse_client(sse_serve + "/sse", headers={"Authorization": f"Bearer {TOKEN_A}"}), mode="legacy") as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            echoed = await client.call_tool("echo", {"message": "over sse"})
    assert "echo" in tools
    assert echoed.content[0].text == "Echo: over sse"  # type: ignore[union-attr]
    assert echoed.meta is not None and "dev.mcp-airlock/labels" in echoed.meta


async def test_the_sse_endpoints_need_a_token_and_a_session_takes_messages_only_with_its_own(sse_serve: str) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _up(sse_serve))
        async with httpx2.AsyncClient(base_url=sse_serve) as http:
            assert (await http.get("/sse")).status_code == 401
            assert (await http.post("/messages/?session_id=" + "0" * 32, json={})).status_code == 401
            async with http.stream("GET", "/sse", headers={"Authorization": f"Bearer {TOKEN_A}"}) as stream:
                lines = stream.aiter_lines()  # kept open: the session lasts as long as its stream
                endpoint = ""
                while not endpoint.startswith("/"):
                    line = await anext(lines)
                    endpoint = line.removeprefix("data:").strip() if line.startswith("data:") else ""
                assert "session_id=" in endpoint
                ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                other = await http.post(endpoint, json=ping, headers={"Authorization": f"Bearer {TOKEN_B}"})
                assert other.status_code == 404
                own = await http.post(endpoint, json=ping, headers={"Authorization": f"Bearer {TOKEN_A}"})
                assert own.status_code == 202, own.text
