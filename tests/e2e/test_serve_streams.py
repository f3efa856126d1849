"""How `airlock serve` answers a request, through server-everything: resumability (a client
whose SSE stream breaks mid-call reconnects with `Last-Event-ID` and gets every event it missed,
in order, then the rest of the call), and the fast path (one JSON body when the response comes
first, an SSE stream when messages about the call come before it)."""

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


# -- the fast path: JSON when the response comes first, SSE when messages come before it -------


async def test_a_plain_call_is_answered_with_one_json_body(tmp_path: Path) -> None:
    call = {"jsonrpc": "2.0", "id": 11, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "fast"}}}
    async with airlock_serve(tmp_path) as served, served.http() as http:
        with anyio.fail_after(60):
            headers = await _session(http, served.url)
            answered = await http.post(served.url, json=call, headers=headers)
    assert answered.status_code == 200
    assert answered.headers["content-type"] == "application/json"
    assert answered.headers["mcp-session-id"] == headers["Mcp-Session-Id"]
    reply = answered.json()
    assert reply["id"] == 11 and reply["result"]["content"][0]["text"] == "Echo: fast"
    assert "dev.mcp-airlock/labels" in reply["result"]["_meta"]  # mediated like any other answer


async def test_a_call_with_progress_streams_its_messages_then_its_response(tmp_path: Path) -> None:
    call = {"jsonrpc": "2.0", "id": 12, "method": "tools/call",
            "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 0.3, "steps": 3},
                       "_meta": {"progressToken": "p"}}}  # fmt: skip
    async with airlock_serve(tmp_path, "--resume-events", "0") as served, served.http() as http:  # no resumability: fast path
        with anyio.fail_after(60):
            headers = await _session(http, served.url)
            async with http.stream("POST", served.url, json=call, headers=headers) as streamed:
                assert streamed.headers["content-type"].startswith("text/event-stream")
                seen = [data async for _, data in _events(streamed)]
    assert [m.get("method") for m in seen[:-1]] == ["notifications/progress"] * 3
    assert seen[-1]["id"] == 12 and "result" in seen[-1]


async def test_a_denied_call_and_a_reused_request_id_get_their_answers(tmp_path: Path) -> None:
    unknown = {"jsonrpc": "2.0", "id": 13, "method": "tools/call", "params": {"name": "no-such-tool", "arguments": {}}}
    async with airlock_serve(tmp_path) as served, served.http() as http:
        with anyio.fail_after(60):
            headers = await _session(http, served.url)
            refused = await http.post(served.url, json=unknown, headers=headers)
            again = await http.post(served.url, json=unknown, headers=headers)  # the id is free again once answered
            not_json = await http.post(served.url, content=b"{nope", headers={**headers, "Content-Type": "application/json"})
            bad_version = await http.post(served.url, json=unknown, headers={**headers, "Mcp-Protocol-Version": "1999-01-01"})
    for answer in (refused, again):
        assert answer.status_code == 200 and answer.json()["id"] == 13 and "error" in answer.json()
    assert not_json.status_code == 400  # the SDK path's parse error
    assert bad_version.status_code == 400 and "unsupported Mcp-Protocol-Version" in bad_version.text
