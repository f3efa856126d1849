"""`airlock serve` resumability: a client whose SSE stream breaks mid-call reconnects with
`Last-Event-ID` and gets every event it missed, in order, then the rest of the call, through
the gateway, from server-everything's long-running tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest

from tests.e2e.test_serve import airlock_serve

pytestmark = pytest.mark.anyio
VERSION = "2025-11-25"  # resumability (priming events) is for clients of this version and later
ACCEPT_BOTH = "application/json, text/event-stream"
CALL_ID = 7


async def _events(response: httpx2.Response) -> Any:
    """(event id, parsed data) for each SSE event with data, as it arrives."""
    event_id, data = None, []
    async for line in response.aiter_lines():
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "":
            if data and "".join(data):
                yield event_id, orjson.loads("".join(data))
            event_id, data = None, []


async def _session(http: httpx2.AsyncClient, url: str) -> dict[str, str]:
    client = {"name": "resume-test", "version": "0"}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": VERSION, "capabilities": {}, "clientInfo": client}}  # fmt: skip
    opened = await http.post(url, json=initialize, headers={"Accept": ACCEPT_BOTH})
    assert opened.status_code == 200, opened.text
    headers = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": VERSION, "Accept": ACCEPT_BOTH}
    assert (await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)).status_code == 202
    listed = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=headers)
    assert "trigger-long-running-operation" in listed.text  # the gateway lets only listed tools be called
    return headers


async def test_a_client_that_loses_its_stream_mid_call_resumes_with_last_event_id(tmp_path: Path) -> None:
    call = {"jsonrpc": "2.0", "id": CALL_ID, "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 1.5, "steps": 5},
                       "_meta": {"progressToken": "resume-me"}}}  # fmt: skip
    async with airlock_serve(tmp_path) as served, served.http() as http:
        with anyio.fail_after(60):
            headers = await _session(http, served.url)
            before: list[tuple[str | None, Any]] = []
            async with http.stream("POST", served.url, json=call, headers=headers) as first:
                assert first.status_code == 200
                async for event in _events(first):
                    before.append(event)
                    if event[1].get("method") == "notifications/progress":
                        break  # the connection drops after the first progress event
            last_id = before[-1][0]
            assert last_id is not None, "events carry ids when resumability is on"
            after: list[tuple[str | None, Any]] = []
            async with http.stream("GET", served.url, headers={**headers, "Last-Event-ID": last_id}) as resumed:
                assert resumed.status_code == 200
                async for event in _events(resumed):
                    after.append(event)
                    if event[1].get("id") == CALL_ID:
                        break
    progress = [data["params"]["progress"] for _, data in before + after if data.get("method") == "notifications/progress"]
    assert progress == sorted(set(progress)) and len(progress) == 5  # every step exactly once, in order
    result = after[-1][1]
    assert result["id"] == CALL_ID and "result" in result
    assert "dev.mcp-airlock/labels" in result["result"]["_meta"]  # still mediated after the reconnect
    assert [int(i) for i, _ in after if i is not None] == sorted(int(i) for i, _ in after if i is not None)


async def test_an_unknown_last_event_id_replays_nothing_and_the_session_goes_on(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path) as served, served.http() as http:
        with anyio.fail_after(60):
            headers = await _session(http, served.url)
            async with http.stream("GET", served.url, headers={**headers, "Last-Event-ID": "999999"}) as resumed:
                assert resumed.status_code == 200
            ping = await http.post(served.url, json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=headers)
            assert ping.status_code == 200 and '"result"' in ping.text
        assert "never issued" in served.log()
