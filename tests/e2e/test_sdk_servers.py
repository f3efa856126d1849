"""`airlock run` wrapping Python SDK servers: mcp-server-time (PyPI, 2026-07-28 era) and the
probe fixture, which reports what reached it (cancellation, `_meta`)."""

from __future__ import annotations

import json

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import eventually, fixture_server_argv, through_gateway, time_server_argv

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("mode", "era"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_the_time_server_works_through_the_gateway_in_both_protocol_eras(mode: str, era: str) -> None:
    with anyio.fail_after(60):
        async with Client(through_gateway(time_server_argv()), mode=mode) as client:
            assert client.protocol_version == era
            names = [tool.name for tool in (await client.list_tools()).tools]
            assert names == ["get_current_time", "convert_time"]
            result = await client.call_tool("get_current_time", {"timezone": "UTC"})
            assert result.structured_content is not None
            assert result.structured_content["timezone"] == "UTC"
            converted = await client.call_tool("convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"})
            assert "21:00" in json.dumps(converted.structured_content)


async def _counts(client: Client) -> dict[str, int]:
    result = await client.call_tool("cancellations", {})
    assert result.structured_content is not None
    return dict(result.structured_content)


async def _reached(client: Client, counter: str) -> bool:
    return (await _counts(client))[counter] >= 1


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_cancellation_reaches_the_upstream(mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(through_gateway(fixture_server_argv("probe_server.py")), mode=mode) as client:
            await client.list_tools()  # only listed tools can be called through the gateway
            async with anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "block_until_cancelled", {})
                await eventually(lambda: _reached(client, "started"))
                group.cancel_scope.cancel()
            await eventually(lambda: _reached(client, "cancelled"))
            assert await _counts(client) == {"started": 1, "cancelled": 1}


async def test_request_meta_reaches_the_upstream_unchanged() -> None:
    meta = {"progressToken": "tok-1", "com.example/trace": {"id": "abc", "n": [1, 2.5, None]}}
    with anyio.fail_after(60):
        async with Client(through_gateway(fixture_server_argv("probe_server.py")), mode="legacy") as client:
            await client.list_tools()
            result = await client.call_tool("echo_meta", {}, meta=meta)  # type: ignore[arg-type]
    assert result.structured_content is not None
    seen = result.structured_content["meta"]
    assert "tok-1" in seen.values()  # the SDK server exposes it as progress_token
    assert seen["com.example/trace"] == meta["com.example/trace"]
