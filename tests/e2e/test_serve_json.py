"""`airlock serve --json-responses`: one JSON body per POST. Plain calls work; a request the
upstream sends during a call (sampling) has no channel back, so the upstream gets an error
instead of waiting forever."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import mcp.types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, eventually, everything_argv, free_port

pytestmark = pytest.mark.anyio


@pytest.fixture
def json_serve(tmp_path: Any) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--insecure-no-auth", "--json-responses",
            "--policy", str(TRANSPARENT_POLICY), "--", *everything_argv()]  # fmt: skip
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen(argv, cwd=str(ROOT), stderr=stderr, stdout=subprocess.DEVNULL)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            process.terminate()
            process.wait(15)


async def _up(url: str) -> bool:
    try:
        async with httpx2.AsyncClient() as http:
            await http.get(url)
        return True
    except httpx2.TransportError:
        return False


async def _sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="never delivered"), model="t")


async def test_json_responses_answer_plain_calls_and_refuse_requests_during_a_call(json_serve: str) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _up(json_serve))
        async with Client(streamable_http_client(json_serve), mode="legacy", sampling_callback=_sampling) as client:

            async def listed() -> bool:
                return any(t.name == "trigger-sampling-request" for t in (await client.list_tools()).tools)

            await eventually(listed)
            echoed = await client.call_tool("echo", {"message": "json"})
            assert echoed.content[0].text == "Echo: json"  # type: ignore[union-attr]
            try:
                sampled: Any = await client.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
                text = " ".join(getattr(block, "text", "") for block in sampled.content)
            except Exception as exc:
                text = str(exc)
    assert "never delivered" not in text
    assert "no channel" in text or "error" in text.lower()
