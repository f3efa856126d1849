"""The real `airlock run` process driven with raw JSON-RPC lines: ids verbatim, malformed input,
misbehaving and dying upstreams, signals. The upstream is fixtures/servers/misbehaving_server.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from gateway.errors import (
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    UPSTREAM_UNAVAILABLE,
)
from tests.e2e.conftest import ROOT, eventually, fixture_server_argv, gateway_argv, raw_gateway, unlabelled, upstream_pids, wait_until_dead

pytestmark = pytest.mark.anyio

MISBEHAVING = fixture_server_argv("misbehaving_server.py")


@pytest.mark.parametrize(
    "request_id",
    [0, 1, -7, 2**53 + 1, 2**64 + 3, "", "abc", "ünïcødé ✓", "1", "\u0000nul", "x" * 300],
    ids=["zero", "one", "negative", "beyond-double", "beyond-64-bit", "empty-string", "string", "unicode", "digit-string", "nul", "long"],
)
async def test_request_ids_come_back_verbatim(request_id: Any) -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        reply = await gateway.request(request_id, "echo", {"k": request_id})
    assert reply["id"] == request_id and type(reply["id"]) is type(request_id)
    assert unlabelled(reply["result"]) == {"k": request_id}


async def test_unknown_methods_and_fields_pass_through_unchanged() -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"_meta": {"x/y": [1, {"z": None}]}, "new": 1.5}})
        assert unlabelled((await gateway.receive())["result"]) == {"_meta": {"x/y": [1, {"z": None}]}, "new": 1.5}
        reply = await gateway.request(2, "vendor/brand-new-method", {})
        assert reply["error"]["code"] == METHOD_NOT_FOUND  # the upstream's own answer


async def test_duplicate_keys_reach_the_upstream_as_the_gateway_read_them() -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send_raw(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"name":"first","name":"last"}}\n')
        reply = await gateway.receive()
    assert unlabelled(reply["result"]) == {"name": "last"}


@pytest.mark.parametrize(
    ("line", "code", "reply_id"),
    [
        (b"this is not json", PARSE_ERROR, None),
        (b'{"jsonrpc":"2.0","id":5,"method":"echo"', PARSE_ERROR, 5),
        (b'{"jsonrpc":"2.0","id":6,"method":"echo","params":{"s":"\xff\xfe"}}', PARSE_ERROR, 6),
        (b"42", INVALID_REQUEST, None),
        (b'{"id":7,"method":"echo"}', INVALID_REQUEST, 7),
        (b'{"jsonrpc":"2.0","id":true,"method":"echo"}', INVALID_REQUEST, None),
        (b'{"jsonrpc":"2.0","id":8,"method":"echo","params":[1]}', INVALID_REQUEST, 8),
        (b'{"jsonrpc":"2.0","id":9,"method":"echo","params":{"n":NaN}}', PARSE_ERROR, 9),
        (b'{"jsonrpc":"2.0","id":10}', INVALID_REQUEST, 10),
    ],
    ids=["not-json", "truncated", "invalid-utf8", "not-an-object", "no-jsonrpc-member", "bool-id", "array-params", "nan", "no-method"],
)
async def test_malformed_input_gets_a_precise_error_and_the_gateway_keeps_serving(line: bytes, code: int, reply_id: Any) -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send_raw(line + b"\n")
        reply = await gateway.receive()
        assert reply["error"]["code"] == code
        assert reply["id"] == reply_id
        assert unlabelled((await gateway.request(99, "echo", {"still": "serving"}))["result"]) == {"still": "serving"}


async def test_a_batch_gets_one_error_per_request_in_an_array() -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "echo"},
        {"jsonrpc": "2.0", "method": "note"},
        {"jsonrpc": "2.0", "id": "b", "method": "echo"},
    ]
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send(batch)
        reply = await gateway.receive()
        assert [(r["id"], r["error"]["code"]) for r in reply] == [(1, INVALID_REQUEST), ("b", INVALID_REQUEST)]
        assert unlabelled((await gateway.request(2, "echo", {}))["result"]) == {}


async def test_an_oversized_line_is_refused_by_id_without_being_buffered_whole() -> None:
    async with raw_gateway(MISBEHAVING, "--max-message-bytes", "4096") as gateway:
        big = orjson.dumps({"jsonrpc": "2.0", "id": "big", "method": "echo", "params": {"blob": "x" * 200_000}})
        await gateway.send_raw(big + b"\n")
        reply = await gateway.receive()
        assert reply["id"] == "big"
        assert reply["error"]["code"] == MESSAGE_TOO_LARGE
        assert reply["error"]["data"]["size"] == len(big)
        assert unlabelled((await gateway.request(2, "echo", {"after": 1}))["result"]) == {"after": 1}


async def test_an_oversized_upstream_answer_becomes_an_error_for_that_request() -> None:
    async with raw_gateway(MISBEHAVING, "--max-message-bytes", "4096") as gateway:
        reply = await gateway.request(3, "huge", {"size": 100_000})
        assert reply["error"]["code"] == MESSAGE_TOO_LARGE and reply["id"] == 3
        assert unlabelled((await gateway.request(4, "echo", {"ok": True}))["result"]) == {"ok": True}


async def test_upstream_garbage_is_reported_not_relayed(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr"
    with open(errlog, "wb") as stderr:
        async with raw_gateway(MISBEHAVING, stderr=stderr) as gateway:
            reply = await gateway.request(1, "garbage", {})
            assert {**reply, "result": unlabelled(reply["result"])} == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}
            assert unlabelled((await gateway.request(2, "echo", {"x": 1}))["result"]) == {"x": 1}
    assert errlog.read_text(errors="replace").count("upstream wrote an invalid message") == 3


async def test_a_response_to_no_open_request_is_dropped() -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        reply = await gateway.request(1, "unsolicited", {})
        assert {**reply, "result": unlabelled(reply["result"])} == {"jsonrpc": "2.0", "id": 1, "result": {"ok": True}}


async def test_a_server_to_client_request_round_trips_through_the_gateway() -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send({"jsonrpc": "2.0", "id": 1, "method": "ask_client", "params": {}})
        asked = await gateway.receive()
        assert asked["method"] == "sampling/createMessage" and asked["id"] == "srv-1"
        await gateway.send({"jsonrpc": "2.0", "id": "srv-1", "result": {"answer": 42}})
        reply = await gateway.receive()
        assert {**reply, "result": unlabelled(reply["result"])} == {"jsonrpc": "2.0", "id": 1, "result": {"client_said": {"answer": 42}}}


async def test_when_the_upstream_dies_every_open_request_gets_an_error_and_the_gateway_exits_3(tmp_path: Path) -> None:
    errlog = tmp_path / "stderr"
    with open(errlog, "wb") as stderr:
        async with raw_gateway(MISBEHAVING, stderr=stderr) as gateway:
            await gateway.send({"jsonrpc": "2.0", "id": "a", "method": "hang"})
            await gateway.send({"jsonrpc": "2.0", "id": "b", "method": "hang"})
            await gateway.send({"jsonrpc": "2.0", "id": "c", "method": "crash"})
            replies = [await gateway.receive() for _ in range(3)]
            status = await gateway.wait()
    assert sorted(r["id"] for r in replies) == ["a", "b", "c"]
    assert {r["error"]["code"] for r in replies} == {UPSTREAM_UNAVAILABLE}
    assert "status 7" in replies[0]["error"]["message"]
    assert status == 3
    assert "exited unexpectedly" in errlog.read_text()


async def test_answers_still_owed_are_delivered_after_the_client_closes_its_input() -> None:
    async with raw_gateway(MISBEHAVING) as gateway:
        await gateway.send({"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"last": True}})
        await gateway.close_input()
        assert unlabelled((await gateway.receive())["result"]) == {"last": True}
        assert await gateway.wait() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_ends_the_gateway_and_its_upstream_process_group(sig: signal.Signals, tmp_path: Path) -> None:
    errlog = tmp_path / "stderr"
    # A shell that starts a grandchild: the whole group must go, not only the direct child.
    upstream = ["/bin/sh", "-c", f"sleep 300 & exec {sys.executable} {MISBEHAVING[1]}"]
    with open(errlog, "wb") as stderr:
        async with raw_gateway(upstream, stderr=stderr) as gateway:
            assert unlabelled((await gateway.request(1, "echo", {}))["result"]) == {}
            pgid = os.getpgid(upstream_pids(errlog.read_text())[0])
            gateway.process.send_signal(sig)
            assert await gateway.wait(timeout=10) == 0
    await wait_until_dead(upstream_pids(errlog.read_text())[0])
    await eventually(lambda: subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode != 0)


async def test_an_upstream_that_cannot_start_is_a_clear_error_with_exit_status_3() -> None:
    result = subprocess.run(gateway_argv(["/nonexistent/mcp-server"]), capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert result.returncode == 3
    assert "cannot start the upstream server '/nonexistent/mcp-server'" in result.stderr
    assert result.stdout == ""


async def test_the_child_gets_only_the_allowed_environment(tmp_path: Path) -> None:
    probe = tmp_path / "env_server.py"
    probe.write_text(
        "import json, os, sys\n"
        "for line in sys.stdin:\n"
        "    m = json.loads(line)\n"
        "    print(json.dumps({'jsonrpc': '2.0', 'id': m['id'], 'result': dict(os.environ)}), flush=True)\n"
    )
    env = {**os.environ, "AIRLOCK_TEST_SECRET": "s3cret", "AIRLOCK_TEST_PASSED": "yes"}
    argv = gateway_argv([sys.executable, str(probe)], "--pass-env", "AIRLOCK_TEST_PASSED", "--env", "EXTRA=1")
    process = await anyio.open_process(argv, cwd=str(ROOT), env=env)
    try:
        assert process.stdin is not None and process.stdout is not None
        await process.stdin.send(b'{"jsonrpc":"2.0","id":1,"method":"env"}\n')
        with anyio.fail_after(15):
            data = b""
            while not data.endswith(b"\n"):
                data += await process.stdout.receive()
        child_env = unlabelled(orjson.loads(data)["result"])
    finally:
        process.terminate()
        await process.wait()
        await process.aclose()
    assert "AIRLOCK_TEST_SECRET" not in child_env
    assert child_env["AIRLOCK_TEST_PASSED"] == "yes"
    assert child_env["EXTRA"] == "1"
    assert child_env["PATH"] == os.environ["PATH"]
