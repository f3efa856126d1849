"""`airlock serve` allocates nothing for a request it refuses, and its session cap is a cap:
through real HTTP on loopback, in front of the real server-everything.

Found as an attacker would (issue 16): requests refused for a bad Host still started a session
and an upstream process, so three of them filled `--max-sessions 3`; eight concurrent
`initialize`s against `--max-sessions 2` got eight sessions and eight upstreams; and a duplicate,
percent-encoded `session_id` on the legacy SSE transport routed one principal's messages into
another's session, because the owner check and the SDK's router read the query differently."""

from __future__ import annotations

from pathlib import Path

import anyio
import orjson
import pytest

from tests.e2e.conftest import eventually, process_alive, wait_until_dead
from tests.e2e.test_serve import INITIALIZE, JSON_HEADERS, _echo_works, _open_raw_session, _post, airlock_serve

pytestmark = pytest.mark.anyio


async def test_requests_refused_for_their_host_start_no_session_and_no_upstream(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path, "--max-sessions", "3") as served:
        async with served.http() as http:
            for _ in range(5):  # more than the cap: refused ones must not hold a place
                with anyio.fail_after(30):
                    refused = await http.post(
                        served.url, content=orjson.dumps(INITIALIZE), headers={**JSON_HEADERS, "Host": "evil.example:80"}
                    )
                assert refused.status_code == 421
        assert served.upstream_pids() == []
        await _echo_works(served)  # a legitimate client still gets a session


async def test_concurrent_initializes_never_open_more_sessions_than_the_cap(tmp_path: Path) -> None:
    statuses: list[int] = []
    async with airlock_serve(tmp_path, "--max-sessions", "2") as served, served.http() as http:

        async def initialize() -> None:
            answer = await http.post(served.url, content=orjson.dumps(INITIALIZE), headers=JSON_HEADERS)
            statuses.append(answer.status_code)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for _ in range(8):
                    group.start_soon(initialize)
        assert sorted(statuses).count(200) <= 2
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) >= 6
        started = served.upstream_pids()
        assert len(started) <= 2
        assert len([pid for pid in started if process_alive(pid)]) <= 2


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("session_id={own}&session_id={own}", id="twice"),
        pytest.param("session_id={own}&session%5Fid={own}", id="twice-one-encoded"),
        pytest.param("session_id={own}&%73ession_id=0000", id="an-encoded-second-one"),
        pytest.param("", id="none"),
    ],
)
async def test_a_legacy_post_with_an_ambiguous_session_id_is_refused(tmp_path: Path, query: str) -> None:
    async with airlock_serve(tmp_path, "--sse-path", "/sse") as served:
        base = f"http://127.0.0.1:{served.port}"
        async with served.http() as http:
            with anyio.fail_after(30):
                async with http.stream("GET", base + "/sse", headers={"Accept": "text/event-stream"}) as stream:
                    lines = stream.aiter_lines()  # kept open: the session lasts as long as its stream
                    endpoint = ""
                    while not endpoint.startswith("/"):
                        line = await anext(lines)
                        endpoint = line.removeprefix("data:").strip() if line.startswith("data:") else ""
                    own = endpoint.split("session_id=", 1)[1]
                    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
                    answer = await http.post(base + "/messages/?" + query.format(own=own), json=ping)
                    assert answer.status_code == 400, answer.text
                    sole = await http.post(base + endpoint, json=ping)
                    assert sole.status_code == 202, sole.text


async def test_clients_that_walk_away_never_lock_others_out(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path, "--max-sessions", "2") as served:
        async with served.http() as http:
            for _ in range(6):  # 3x the cap, none ever DELETEd: the longest idle makes room each time
                await _open_raw_session(http, served.url)
            with anyio.fail_after(30):
                await eventually(lambda: len([pid for pid in served.upstream_pids() if process_alive(pid)]) <= 2)
        assert "the longest idle, to make room at --max-sessions" in served.log()
        await _echo_works(served)


async def test_an_idle_session_is_closed_with_its_upstream(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path, "--session-idle-timeout", "1") as served:
        async with served.http() as http:
            session = await _open_raw_session(http, served.url)
            (pid,) = served.upstream_pids()
            await wait_until_dead(pid)
            with anyio.fail_after(30):
                after = await _post(http, served.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
            assert after.status_code == 404
        assert "--session-idle-timeout" in served.log()
