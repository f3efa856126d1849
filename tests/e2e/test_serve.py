"""`airlock serve`: server-everything behind the streamable HTTP front, driven by the real mcp
client over HTTP, and by raw HTTP requests where the case is about the HTTP layer itself
(authentication, bad input, session ids)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp.types as types
import orjson
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.errors import FLOW_DENIED
from gateway.labels.masks import META_KEY
from tests.e2e.conftest import (
    ROOT,
    TRANSPARENT_POLICY,
    eventually,
    everything_argv,
    free_port,
    process_alive,
    upstream_pids,
    wait_for_tool,
    wait_until_dead,
)

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]
PROTOCOL = "2025-06-18"
SSE_AND_JSON = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "airlock-serve-tests", "version": "0"}},
}
MAX_BODY = 64 * 1024


@dataclass
class Served:
    """A running `airlock serve` process and what a test needs to talk to it."""

    url: str
    port: int
    tokens: dict[str, str]  # token id -> secret
    stderr_path: Path
    process: Process

    @property
    def token(self) -> str:
        return next(iter(self.tokens.values()))

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def upstream_pids(self) -> list[int]:
        return upstream_pids(self.log())

    def http(self, token: str | None = None) -> httpx2.AsyncClient:
        """An HTTP client that authenticates with `token` (the first token by default)."""
        secret = self.token if token is None and self.tokens else token
        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {secret}"} if secret else {}, timeout=30)


def _environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name != "AIRLOCK_TOKENS"}


@asynccontextmanager
async def airlock_serve(tmp_path: Path, *options: str, token_count: int = 2) -> AsyncIterator[Served]:
    """Start `airlock serve` on a free port in front of server-everything, wait until it answers,
    and on exit stop it, checking that it exits cleanly, leaves no upstream process behind and
    never wrote a token to its log."""
    tokens = {f"tok{i}": secrets.token_hex(24) for i in range(1, token_count + 1)}
    auth: list[str] = []
    if tokens:
        token_file = tmp_path / "tokens.txt"
        token_file.write_text("# test tokens\n" + "".join(f"{tid}:{secret}\n" for tid, secret in tokens.items()))
        auth = ["--token-file", str(token_file)]
    policy = [] if "--policy" in options else ["--policy", str(TRANSPARENT_POLICY)]
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", *auth, *policy, *options, "--", *everything_argv()]
    stderr_path = tmp_path / f"serve-{port}.log"
    with open(stderr_path, "wb") as stderr:
        process = await anyio.open_process(
            argv,
            cwd=str(ROOT),
            env=_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    served = Served(f"http://127.0.0.1:{port}/mcp", port, tokens, stderr_path, process)
    try:

        async def answers() -> bool:
            if process.returncode is not None:
                pytest.fail(f"airlock serve exited with status {process.returncode}:\n{served.log()}")
            try:
                async with httpx2.AsyncClient() as http:
                    await http.get(served.url)
            except httpx2.TransportError:
                return False
            return True

        await eventually(answers, timeout=30)
        yield served
        process.terminate()
        with anyio.fail_after(30):
            status = await process.wait()
        log = served.log()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught.
        assert status in (0, -signal.SIGTERM), log
        pids = upstream_pids(log)
        assert [pid for pid in pids if process_alive(pid)] == [], "upstream processes outlived airlock serve"
        for secret in tokens.values():
            assert secret not in log
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            for pid in upstream_pids(served.log()):  # only the upstreams this gateway started
                if process_alive(pid):
                    os.killpg(pid, signal.SIGKILL)
            await process.aclose()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with airlock_serve(tmp_path, "--max-body-bytes", str(MAX_BODY)) as running:
        yield running


def _mcp_client(url: str, http: httpx2.AsyncClient, mode: str = "legacy", **callbacks: Any) -> Client:
    return Client(streamable_http_client(url, http_client=http), mode=mode, **callbacks)


def _text(result: types.CallToolResult) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content)


async def _echo_works(served: Served, message: str = "still serving") -> None:
    """A normal session, start to end, through the gateway."""
    with anyio.fail_after(30):
        async with served.http() as http, _mcp_client(served.url, http) as client:
            await wait_for_tool(client, "echo")
            result = await client.call_tool("echo", {"message": message})
    assert _text(result) == f"Echo: {message}"


def _sse_messages(text: str) -> list[Any]:
    return [orjson.loads(line[5:]) for line in text.splitlines() if line.startswith("data:") and line[5:].strip()]


def _answer_messages(response: httpx2.Response) -> list[Any]:
    """The messages of a POST's answer: one JSON body, or an SSE stream (the gateway streams
    when messages about the request come before its response)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return [response.json()]
    return _sse_messages(response.text)


async def _post(http: httpx2.AsyncClient, url: str, message: Any, session: str | None = None) -> httpx2.Response:
    headers = {"Content-Type": "application/json", "Accept": SSE_AND_JSON}
    if session is not None:
        headers |= {"Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL}
    return await http.post(url, content=orjson.dumps(message), headers=headers)


async def _open_raw_session(http: httpx2.AsyncClient, url: str) -> str:
    """initialize + initialized over raw HTTP; the session id the gateway issued."""
    with anyio.fail_after(30):
        opened = await _post(http, url, INITIALIZE)
        assert opened.status_code == 200, opened.text
        session = opened.headers["mcp-session-id"]
        initialized = await _post(http, url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
        assert initialized.status_code == 202, initialized.text
    return session


# -- the same server, through HTTP ------------------------------------------------------------


async def _answer_sampling(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled"), model="test")


@pytest.mark.parametrize("mode", MODES)
async def test_the_client_sees_the_same_tools_and_echo_answer_through_airlock_serve(served: Served, mode: str) -> None:
    with anyio.fail_after(60):
        direct_server = StdioServerParameters(command=everything_argv()[0], args=[])
        async with Client(direct_server, mode=mode, sampling_callback=_answer_sampling) as direct:
            expected = await wait_for_tool(direct, "trigger-sampling-request")
            expected_echo = await direct.call_tool("echo", {"message": "same answer"})
        async with served.http() as http, _mcp_client(served.url, http, mode, sampling_callback=_answer_sampling) as client:
            seen = await wait_for_tool(client, "trigger-sampling-request")
            echo = await client.call_tool("echo", {"message": "same answer"})
    assert sorted((t.model_dump() for t in seen), key=lambda t: t["name"]) == sorted(
        (t.model_dump() for t in expected), key=lambda t: t["name"]
    )
    assert echo.content == expected_echo.content
    assert _text(echo) == "Echo: same answer"
    assert echo.meta is not None
    labels = echo.meta[META_KEY]
    assert labels["source"] == {"server": "mcp-servers-everything", "tool": "echo"}
    assert labels["integrity"] == "untrusted"


class Session:
    """One client's callbacks: its own sampling answer, its own record of progress."""

    def __init__(self, name: str) -> None:
        self.answer = f"sampled-for-{name}"
        self.sampled: list[types.CreateMessageRequestParams] = []
        self.progress: list[float] = []

    async def sampling_callback(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampled.append(params)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=self.answer), model="test")

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(progress)


async def test_sampling_requests_and_progress_reach_the_client_whose_call_caused_them(served: Served) -> None:
    sessions = {name: Session(name) for name in ("alpha", "beta", "gamma")}
    results: dict[str, tuple[str, str]] = {}

    async def run(name: str, session: Session) -> None:
        async with served.http() as http, _mcp_client(served.url, http, sampling_callback=session.sampling_callback) as client:
            await wait_for_tool(client, "trigger-sampling-request")
            long_running = await client.call_tool(
                "trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=session.on_progress
            )
            sampled = await client.call_tool("trigger-sampling-request", {"prompt": f"hello from {name}", "maxTokens": 5})
            results[name] = (_text(long_running), _text(sampled))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for name, session in sessions.items():
                group.start_soon(run, name, session)

    for name, session in sessions.items():
        long_running, sampled = results[name]
        assert "Long running operation completed" in long_running
        assert session.progress == [1, 2, 3], name
        assert len(session.sampled) == 1, name
        assert f"hello from {name}" in str(session.sampled[0].messages)
        assert session.answer in sampled
        assert all(other.answer not in sampled for other in sessions.values() if other is not session)


# -- access control ----------------------------------------------------------------------------


async def test_a_request_without_a_token_is_refused_with_401_and_a_bearer_challenge(served: Served) -> None:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient() as http:
            refused = await _post(http, served.url, INITIALIZE)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert served.upstream_pids() == []  # refused before any upstream was started


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer wrong-token-0123456789abcdef", id="wrong token"),
        pytest.param("Bearer", id="scheme without a token"),
        pytest.param("Basic dXNlcjpwYXNz", id="another scheme"),
    ],
)
async def test_a_wrong_token_is_refused_with_401(served: Served, authorization: str) -> None:
    with anyio.fail_after(30):
        async with httpx2.AsyncClient(headers={"Authorization": authorization}) as http:
            refused = await _post(http, served.url, INITIALIZE)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_with_the_right_secret_in_another_case_is_refused(served: Served) -> None:
    with anyio.fail_after(30):
        async with served.http(served.token.upper()) as http:
            refused = await _post(http, served.url, INITIALIZE)
    assert refused.status_code == 401


async def test_every_token_in_the_token_file_is_accepted_so_tokens_can_be_rotated(served: Served) -> None:
    assert len(served.tokens) == 2
    for token in served.tokens.values():
        with anyio.fail_after(30):
            async with served.http(token) as http, _mcp_client(served.url, http) as client:
                await wait_for_tool(client, "echo")
                result = await client.call_tool("echo", {"message": "rotated"})
        assert _text(result) == "Echo: rotated"


async def test_a_session_opened_with_one_token_cannot_be_used_with_another(served: Served) -> None:
    first, second = served.tokens.values()
    list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    with anyio.fail_after(30):
        async with served.http(first) as owner, served.http(second) as other:
            session = await _open_raw_session(owner, served.url)
            hijacked = await _post(other, served.url, list_tools, session)
            deleted = await other.delete(served.url, headers={"Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL})
            listed = await _post(owner, served.url, list_tools, session)
    assert hijacked.status_code == 404
    assert deleted.status_code == 404
    assert listed.status_code == 200  # the other token's DELETE did not end it
    assert [m["id"] for m in _answer_messages(listed) if "method" not in m] == [2]  # past any notification


async def test_serving_beyond_loopback_without_tokens_exits_2_naming_the_token_file_option() -> None:
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"0.0.0.0:{free_port()}", "--policy", str(TRANSPARENT_POLICY)]
    with anyio.fail_after(60):
        finished = await anyio.run_process([*argv, "--", *everything_argv()], cwd=str(ROOT), env=_environment(), check=False)
    assert finished.returncode == 2
    assert b"--token-file" in finished.stderr


async def test_insecure_no_auth_beyond_loopback_is_refused_too() -> None:
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"0.0.0.0:{free_port()}", "--insecure-no-auth"]
    with anyio.fail_after(60):
        finished = await anyio.run_process(
            [*argv, "--policy", str(TRANSPARENT_POLICY), "--", *everything_argv()], cwd=str(ROOT), env=_environment(), check=False
        )
    assert finished.returncode == 2
    assert b"--token-file" in finished.stderr


async def test_insecure_no_auth_on_loopback_serves_without_an_authorization_header(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path, "--insecure-no-auth", token_count=0) as served:
        assert served.tokens == {}
        await _echo_works(served, "no header needed")


async def test_tokens_never_appear_in_the_gateway_log(tmp_path: Path) -> None:
    wrong = "Bearer never-log-this-wrong-token-0123456789"
    async with airlock_serve(tmp_path, "--log-level", "debug") as served:
        await _echo_works(served)
        async with httpx2.AsyncClient(headers={"Authorization": wrong}) as http:
            assert (await _post(http, served.url, INITIALIZE)).status_code == 401
        log = served.log()
    assert "session opened" in log  # the log is the verbose one
    for secret in [*served.tokens.values(), wrong.split()[1]]:
        assert secret not in log


# -- bad input ---------------------------------------------------------------------------------

JSON_HEADERS = {"Content-Type": "application/json", "Accept": SSE_AND_JSON}
NOT_JSON_RPC = orjson.dumps({"hello": "world"})
TOOLS_LIST = orjson.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/list"})


@dataclass(frozen=True)
class BadRequest:
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    drop: tuple[str, ...] = ()  # headers the HTTP client would add by default, removed
    in_session: bool = False  # sent with the id of an open session
    chunked: bool = False  # sent without Content-Length


def _chunks(body: bytes) -> Any:
    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    return stream()


TOO_LARGE = orjson.dumps(
    {"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "A" * MAX_BODY}}}
)

BAD_REQUESTS = [
    pytest.param(BadRequest(headers=JSON_HEADERS, body=b"\x00{not json"), 400, id="garbage body"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=b"\x00{not json", in_session=True), 400, id="garbage body in a session"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=NOT_JSON_RPC), 400, id="JSON that is not JSON-RPC"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=NOT_JSON_RPC, in_session=True), 400, id="JSON that is not JSON-RPC in a session"),
    # Regression (was a bug): a POST whose Content-Type is not application/json is answered 400 "Invalid
    # Content-Type header", not 415 Unsupported Media Type (RFC 9110 15.5.16): the SDK's
    # transport-security guard, which `airlock serve` relies on, checks the media type before the
    # transport's own 415 check, which is unreachable. The gateway checks auth and body size in
    # front of the SDK; the media type could be checked there too.
    pytest.param(
        BadRequest(headers={"Content-Type": "text/plain", "Accept": SSE_AND_JSON}, body=TOOLS_LIST, in_session=True),
        415,
        id="wrong Content-Type",
    ),
    pytest.param(
        BadRequest(headers={"Content-Type": "application/json", "Accept": "application/json"}, body=TOOLS_LIST, in_session=True),
        406,
        id="Accept without event-stream",
    ),
    pytest.param(
        BadRequest(headers={"Content-Type": "application/json"}, drop=("accept",), body=TOOLS_LIST, in_session=True),
        406,
        id="missing Accept",
    ),
    pytest.param(BadRequest(headers={**JSON_HEADERS, "Mcp-Session-Id": "0" * 32}, body=TOOLS_LIST), 404, id="unknown session id"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=TOO_LARGE), 413, id="body larger than the limit"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=TOO_LARGE, in_session=True), 413, id="body larger than the limit in a session"),
    pytest.param(BadRequest(headers=JSON_HEADERS, body=TOO_LARGE, chunked=True), 413, id="chunked body larger than the limit"),
    # Regression (was a bug): a chunked body (no Content-Length) over --max-body-bytes sent within a session is
    # answered 500 {"code": -32603, "message": "Error handling POST request"}, not 413: the
    # gateway's limited `receive` raises `_BodyTooLarge` inside the SDK transport, whose
    # catch-all turns it into a 500. Without a session (`_open`) the same body gets its 413.
    pytest.param(
        BadRequest(headers=JSON_HEADERS, body=TOO_LARGE, in_session=True, chunked=True),
        413,
        id="chunked body larger than the limit in a session",
    ),
    pytest.param(
        BadRequest(headers={**JSON_HEADERS, "Host": "evil.example:80"}, body=orjson.dumps(INITIALIZE)), 421, id="DNS rebinding Host"
    ),
    pytest.param(
        BadRequest(headers={**JSON_HEADERS, "Host": "evil.example:80"}, body=TOOLS_LIST, in_session=True),
        421,
        id="DNS rebinding Host in a session",
    ),
    pytest.param(
        BadRequest(headers={**JSON_HEADERS, "Origin": "http://evil.example"}, body=orjson.dumps(INITIALIZE)), 403, id="foreign Origin"
    ),
    pytest.param(BadRequest(method="GET", headers={"Accept": "text/event-stream"}), 400, id="GET without a session"),
    pytest.param(BadRequest(method="DELETE"), 400, id="DELETE without a session"),
]


@pytest.mark.parametrize(("bad", "status"), BAD_REQUESTS)
async def test_bad_input_gets_its_status_and_the_gateway_keeps_serving(served: Served, bad: BadRequest, status: int) -> None:
    with anyio.fail_after(30):
        async with served.http() as http:
            headers = dict(bad.headers)
            if bad.in_session:
                headers |= {"Mcp-Session-Id": await _open_raw_session(http, served.url), "Mcp-Protocol-Version": PROTOCOL}
            content = _chunks(bad.body) if bad.chunked and bad.body is not None else bad.body
            request = http.build_request(bad.method, served.url, content=content, headers=headers)
            for name in bad.drop:
                del request.headers[name]
            answer = await http.send(request)
    assert answer.status_code == status, answer.text
    await _echo_works(served)


async def test_delete_ends_the_session_and_its_upstream_process(served: Served) -> None:
    async with served.http() as http:
        session = await _open_raw_session(http, served.url)
        (pid,) = served.upstream_pids()
        assert process_alive(pid)
        with anyio.fail_after(30):
            ended = await http.delete(served.url, headers={"Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL})
        assert ended.status_code == 200
        await wait_until_dead(pid)
        with anyio.fail_after(30):
            after = await _post(http, served.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)
        assert after.status_code == 404
    await _echo_works(served)


async def test_a_client_that_disconnects_mid_call_does_not_break_other_sessions(served: Served) -> None:
    with anyio.fail_after(60):
        async with served.http() as other_http, _mcp_client(served.url, other_http) as other:
            await wait_for_tool(other, "echo")
            async with served.http() as http:
                session = await _open_raw_session(http, served.url)
                assert (await _post(http, served.url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, session)).status_code == 200
                call = {
                    "jsonrpc": "2.0",
                    "id": 3,
                    "method": "tools/call",
                    "params": {
                        "name": "trigger-long-running-operation",
                        "arguments": {"duration": 30, "steps": 300},
                        "_meta": {"progressToken": "p"},
                    },
                }
                headers = {**JSON_HEADERS, "Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL}
                async with http.stream("POST", served.url, content=orjson.dumps(call), headers=headers) as stream:
                    assert stream.status_code == 200
                    async for line in stream.aiter_lines():
                        if line.startswith("data:") and "notifications/progress" in line:
                            break  # the call is under way: drop the connection here
            # the connection is gone without a DELETE
            result = await other.call_tool("echo", {"message": "unaffected"})
            assert _text(result) == "Echo: unaffected"
    await _echo_works(served)


# -- per-session state -------------------------------------------------------------------------

SECRET = "tok-SECRET-12345678"
# server-everything's echo says it is read-only and closed-world, which derives the class `read`;
# the policy declares it `egress` so that echo is also the sink.
SECRET_POLICY = """
version = 1
default = "allow"
extra_arguments = "allow"
[pins]
unpinned = "trust-on-first-use"
[[tools]]
tools = ["mcp-servers-everything.echo"]
class = "egress"
returns = "secret"
[[flows]]
id = "no-secret-egress"
labels = ["secret"]
to = ["egress"]
"""


async def test_two_sessions_have_separate_label_state(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(SECRET_POLICY)
    async with airlock_serve(tmp_path, "--policy", str(policy)) as served:
        with anyio.fail_after(60):
            async with (
                served.http() as http_a,
                served.http() as http_b,
                _mcp_client(served.url, http_a) as a,
                _mcp_client(served.url, http_b) as b,
            ):
                await wait_for_tool(a, "echo")
                await wait_for_tool(b, "echo")
                first = await a.call_tool("echo", {"message": SECRET})
                assert first.meta is not None and first.meta[META_KEY]["confidentiality"] == "secret"
                with pytest.raises(MCPError) as refused:
                    await a.call_tool("echo", {"message": SECRET})
                assert refused.value.code == FLOW_DENIED
                assert refused.value.data["rule"] == "no-secret-egress"
                # Session B never saw the secret: its first echo of the same text is allowed...
                in_b = await b.call_tool("echo", {"message": SECRET})
                assert _text(in_b) == f"Echo: {SECRET}"
                # ...and from then on B's own state refuses it, as A's does.
                with pytest.raises(MCPError) as refused_in_b:
                    await b.call_tool("echo", {"message": SECRET})
                assert refused_in_b.value.code == FLOW_DENIED


async def test_each_session_writes_its_own_flight_log_that_verifies(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with airlock_serve(tmp_path, "--log", str(logs), "--ephemeral-key") as served:
        with anyio.fail_after(60):
            async with served.http() as http:
                for message in ("first session", "second session"):
                    async with _mcp_client(served.url, http) as client:
                        await wait_for_tool(client, "echo")
                        await client.call_tool("echo", {"message": message})
        files = sorted(logs.iterdir())
        assert len(files) == 2

        async def verifies(path: Path) -> bool:  # sealed by the session's end, after its DELETE
            finished = await anyio.run_process([sys.executable, "-m", "gateway", "verify", str(path)], cwd=str(ROOT), check=False)
            return finished.returncode == 0

        for path in files:
            await eventually(partial(verifies, path), timeout=30)
    geneses = [orjson.loads(path.read_text().splitlines()[0]) for path in files]
    assert [genesis["data"]["principal"] for genesis in geneses] == ["tok1", "tok1"]  # the token's id, never the token
    assert len({genesis["session"] for genesis in geneses}) == 2
    assert not any(served.token in path.read_text() for path in files)


async def test_each_flight_log_names_the_http_session_it_records(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with airlock_serve(tmp_path, "--log", str(logs), "--ephemeral-key") as served, served.http() as http:
        sessions = {await _open_raw_session(http, served.url) for _ in range(2)}
        for session in sessions:
            with anyio.fail_after(30):
                ended = await http.delete(served.url, headers={"Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL})
            assert ended.status_code == 200
    logged = {orjson.loads(path.read_text().splitlines()[0])["session"] for path in logs.iterdir()}
    # Regression (was a bug): each log's entries carry a fresh random session id, not the Mcp-Session-Id the gateway
    # issued (and logs as "session opened session=..."), so a flight log cannot be matched to its
    # HTTP session: `ServeApp._open` passes the id to `make_mediator(session)`, and
    # `cmd_serve`'s `make_mediator` ignores it.
    assert logged == sessions


async def test_ten_sessions_of_twenty_concurrent_calls_each_get_their_own_answers(served: Served) -> None:
    answers: dict[tuple[int, int], str] = {}

    async def session(s: int) -> None:
        async with served.http() as http, _mcp_client(served.url, http) as client:
            await wait_for_tool(client, "echo")

            async def call(c: int) -> None:
                result = await client.call_tool("echo", {"message": f"session-{s}-call-{c}"})
                answers[(s, c)] = _text(result)

            async with anyio.create_task_group() as calls:
                for c in range(20):
                    calls.start_soon(call, c)

    with anyio.fail_after(120):
        async with anyio.create_task_group() as sessions:
            for s in range(10):
                sessions.start_soon(session, s)
    assert answers == {(s, c): f"Echo: session-{s}-call-{c}" for s in range(10) for c in range(20)}


async def test_stopping_the_gateway_ends_open_sessions_and_their_upstream_processes(tmp_path: Path) -> None:
    async with airlock_serve(tmp_path) as served, served.http() as http:
        await _open_raw_session(http, served.url)
        await _open_raw_session(http, served.url)
        pids = served.upstream_pids()
        assert len(pids) == 2 and all(process_alive(pid) for pid in pids)
    # airlock_serve sent SIGTERM, saw the gateway exit and checked no upstream outlived it
    assert not any(process_alive(pid) for pid in pids)


async def test_serve_records_one_cassette_per_session_that_replays_with_its_decisions(tmp_path: Path) -> None:
    cassettes, logs = tmp_path / "cassettes", tmp_path / "logs"
    cassettes.mkdir()
    logs.mkdir()
    options = ("--record", str(cassettes), "--redact", "params.arguments.message", "--log", str(logs), "--ephemeral-key")
    async with airlock_serve(tmp_path, *options) as served:
        with anyio.fail_after(60):
            for n in range(2):
                async with served.http() as http, _mcp_client(served.url, http) as client:
                    await wait_for_tool(client, "echo")
                    await client.call_tool("echo", {"message": f"recorded-secret-{n}-{served.token[:6]}"})
                    await client.call_tool("get-sum", {"a": n, "b": 40})

            def recorded() -> bool:  # each cassette is closed when its session ends, after the client's DELETE
                return len(list(cassettes.iterdir())) == 2 and all(p.read_text().rstrip().endswith("}") for p in cassettes.iterdir())

            await eventually(recorded, timeout=30)
            await eventually(lambda: "session ended" in served.log() and served.log().count("session ended") >= 2, timeout=30)
    files = sorted(cassettes.iterdir())
    headers = [orjson.loads(path.read_text().splitlines()[0]) for path in files]
    log_sessions = {orjson.loads(path.read_text().splitlines()[0])["session"] for path in logs.iterdir()}
    assert {header["session"] for header in headers} == log_sessions  # a cassette and its flight log name the same session
    assert {header["transport"] for header in headers} == {"streamable-http"}
    for path in files:
        text = path.read_text()
        assert "recorded-secret" not in text and "<redacted:" in text and served.token not in text
        replayed = [tmp_path / f"{path.stem}.{n}.jsonl" for n in range(2)]
        for log in replayed:
            done = await anyio.run_process([sys.executable, "-m", "gateway", "replay", str(path), "--policy", str(TRANSPARENT_POLICY),
                                            "--log", str(log)], cwd=str(ROOT), check=False)  # fmt: skip
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
            assert b"echo" in done.stdout and b"get-sum" in done.stdout
        assert replayed[0].read_bytes() == replayed[1].read_bytes()


def test_serve_record_needs_an_existing_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--insecure-no-auth", "--record", str(tmp_path / "nowhere"),
                           "--", "true"], cwd=str(ROOT), capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "--record" in done.stderr and "one cassette per session" in done.stderr


async def test_fifty_concurrent_clients_get_their_own_answers_on_both_answer_paths(tmp_path: Path) -> None:
    # 50 clients at once, each its own session (and upstream process): plain calls (one JSON body
    # each) and a call with progress (an SSE stream) interleaved. Bounded: 50 x 5 calls, 180 s.
    answers: dict[tuple[int, int], str] = {}
    progress: dict[int, int] = {}

    async def client_run(s: int) -> None:
        async with served.http() as http, _mcp_client(served.url, http) as client:
            await wait_for_tool(client, "trigger-long-running-operation")

            async def call(c: int) -> None:
                result = await client.call_tool("echo", {"message": f"client-{s}-call-{c}"})
                answers[(s, c)] = _text(result)

            async def with_progress() -> None:
                steps: list[float] = []

                async def on_progress(done: float, total: float | None, message: str | None) -> None:
                    steps.append(done)

                await client.call_tool("trigger-long-running-operation", {"duration": 0.2, "steps": 2}, progress_callback=on_progress)
                progress[s] = len(steps)

            async with anyio.create_task_group() as calls:
                for c in range(4):
                    calls.start_soon(call, c)
                calls.start_soon(with_progress)

    async with airlock_serve(tmp_path, "--max-sessions", "60") as served:
        with anyio.fail_after(180):
            async with anyio.create_task_group() as clients:
                for s in range(50):
                    clients.start_soon(client_run, s)
    assert answers == {(s, c): f"Echo: client-{s}-call-{c}" for s in range(50) for c in range(4)}
    assert progress == {s: 2 for s in range(50)}
