"""A flight log that runs out of space under the real gateway: the gateway fails closed (every
later call is refused with EvidenceUnavailable, never forwarded unrecorded), keeps serving what
needs no evidence, and every call it acknowledged is in the part of the log that was written.

The disk filling up is a file-size limit (RLIMIT_FSIZE) on the gateway process: writes past it
fail with EFBIG, as they would with ENOSPC (Python ignores SIGXFSZ)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest

from gateway.errors import EVIDENCE_UNAVAILABLE
from gateway.evidence.failures import LogUnsealed
from gateway.evidence.verify import verify_file
from tests.e2e.conftest import ROOT, GatewayProcess, everything_argv, gateway_argv

pytestmark = pytest.mark.anyio

INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
LOG_LIMIT = 24 * 1024  # bytes: room for the genesis entry and a few dozen entries


def _with_file_size_limit(argv: list[str], limit: int) -> list[str]:
    """`argv`, run with RLIMIT_FSIZE set (a wrapper that sets the limit and execs)."""
    code = (
        "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); os.execv(sys.argv[2], sys.argv[2:])"
    )
    return [sys.executable, "-c", code, str(limit), *argv]


async def test_a_full_log_refuses_later_calls_and_loses_no_acknowledged_one(tmp_path: Path) -> None:
    key = tmp_path / "signing.key"
    subprocess.run([sys.executable, "-m", "gateway", "keygen", "--out", str(key)], check=True, capture_output=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    argv = _with_file_size_limit(gateway_argv(everything_argv(), "--log", str(logs), "--key", str(key)), LOG_LIMIT)
    acknowledged: list[int] = []
    refused: list[dict[str, Any]] = []
    stderr = bytearray()

    async def collect_stderr(stream: Any) -> None:
        async for chunk in stream:
            stderr.extend(chunk)

    # stderr is a pipe: a regular file would be under the same size limit.
    process = await anyio.open_process(argv, cwd=str(ROOT), start_new_session=True)
    gateway = GatewayProcess(process)
    async with anyio.create_task_group() as group:
        group.start_soon(collect_stderr, process.stderr)
        try:
            await gateway.call(0, "initialize", INIT)
            await gateway.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            await gateway.list_tools()
            for request_id in range(1, 121):
                reply = await gateway.call(request_id, "tools/call", {"name": "echo", "arguments": {"message": f"m{request_id}"}})
                if "result" in reply:
                    assert not refused, "a call succeeded after the log had failed"
                    acknowledged.append(request_id)
                else:
                    refused.append(reply)
            # What needs no evidence is still served.
            pong = await gateway.call(500, "ping")
            assert pong == {"jsonrpc": "2.0", "id": 500, "result": {}}
            await gateway.close_input()
            await gateway.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
    assert acknowledged and refused, (len(acknowledged), len(refused))
    for reply in refused:
        assert reply["error"]["code"] == EVIDENCE_UNAVAILABLE
        assert "cannot be written" in reply["error"]["message"]
    assert b"cannot be written" in stderr
    path = next(logs.glob("*.jsonl"))
    assert os.path.getsize(path) <= LOG_LIMIT
    with pytest.raises(LogUnsealed):  # no room for a seal; a torn last line is a torn tail
        verify_file(path)
    entries = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]
    logged_calls = {e["request_id"] for e in entries if e["kind"] == "call" and e["decision"] == "allow"}
    logged_results = {e["request_id"] for e in entries if e["kind"] == "result"}
    assert set(acknowledged) <= logged_calls
    assert set(acknowledged) <= logged_results


async def test_through_the_hub_a_full_log_refuses_later_calls_and_withholds_unlogged_answers(tmp_path: Path) -> None:
    # `airlock run --all`: answers pass through the hub, which re-encodes them; a relay that
    # withdraws an answer (its entry could not be written) must still keep it from the client.
    key = tmp_path / "signing.key"
    subprocess.run([sys.executable, "-m", "gateway", "keygen", "--out", str(key)], check=True, capture_output=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    config = tmp_path / "airlock.toml"
    config.write_text(f"[upstreams.everything]\ncommand = {orjson.dumps(everything_argv()[0]).decode()}\n")
    gateway = [sys.executable, "-m", "gateway", "run", "--all", "--config", str(config), "--log", str(logs), "--key", str(key),
               "--log-level", "warning"]  # fmt: skip
    process = await anyio.open_process(_with_file_size_limit(gateway, LOG_LIMIT), cwd=str(ROOT), start_new_session=True)
    client = GatewayProcess(process)
    acknowledged, refused = 0, 0
    async with anyio.create_task_group() as group:
        group.start_soon(_drain, process.stderr)
        try:
            await client.call(0, "initialize", INIT)
            await client.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
            await client.call(1, "tools/list", {})
            for request_id in range(2, 122):
                reply = await client.call(request_id, "tools/call", {"name": "everything__echo", "arguments": {"message": "m"}})
                if "result" in reply:
                    assert not refused, "a call succeeded after the log had failed"
                    acknowledged += 1
                else:
                    assert reply["error"]["code"] == EVIDENCE_UNAVAILABLE, reply
                    refused += 1
            await client.close_input()
            await client.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()
    assert acknowledged and refused, (acknowledged, refused)
    path = next(logs.glob("*.jsonl"))
    entries = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]
    assert acknowledged <= sum(1 for e in entries if e["kind"] == "result" and e.get("tool") == "echo")


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
