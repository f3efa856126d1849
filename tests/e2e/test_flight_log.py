"""The flight log of a real `airlock run` in front of real servers: one unbroken chain under
concurrency, nothing acknowledged lost after kill -9, keys handled as promised."""

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

from gateway.evidence.failures import LogUnsealed
from gateway.evidence.verify import verify_file
from tests.e2e.conftest import ROOT, eventually, everything_argv, fixture_server_argv, gateway_argv, raw_gateway

pytestmark = pytest.mark.anyio

INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "signing.key"
    subprocess.run([sys.executable, "-m", "gateway", "keygen", "--out", str(path)], check=True, capture_output=True)
    return path


def _entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.endswith(b"}")]


def _only_log(directory: Path) -> Path:
    logs = list(directory.glob("*.jsonl"))
    assert len(logs) == 1, logs
    return logs[0]


async def test_two_hundred_concurrent_calls_make_one_unbroken_signed_chain(tmp_path: Path, key: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    async with raw_gateway(everything_argv(), "--log", str(logs), "--key", str(key)) as gateway:
        assert "result" in await gateway.request(0, "initialize", INIT)
        await gateway.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await gateway.list_tools()
        for i in range(1, 201):
            await gateway.send(
                {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": str(i)}}}
            )
        answered: dict[int, Any] = {}
        with anyio.fail_after(60):
            while len(answered) < 200:
                reply = await gateway.receive()
                if "id" in reply and "method" not in reply:
                    answered[reply["id"]] = reply
        assert all(answered[i]["result"]["content"][0]["text"] == f"Echo: {i}" for i in range(1, 201))
        await gateway.close_input()
        assert await gateway.wait() == 0
    path = _only_log(logs)
    report = verify_file(path)
    assert report.sealed and report.unsigned_tail == 0
    entries = _entries(path)
    calls = [e for e in entries if e["kind"] == "call"]
    results = [e for e in entries if e["kind"] == "result"]
    assert sorted(e["request_id"] for e in calls) == list(range(1, 201))
    assert sorted(e["request_id"] for e in results) == list(range(1, 201))
    call_hash = {e["request_id"]: e["hash"] for e in calls}
    assert all(r["data"]["call"] == call_hash[r["request_id"]] for r in results)
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("fsync", ["always", "group", "off"])
async def test_after_kill_9_under_load_every_acknowledged_call_is_in_the_log(tmp_path: Path, key: Path, fsync: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    answered: set[int] = set()
    async with raw_gateway(everything_argv(), "--log", str(logs), "--key", str(key), "--fsync", fsync) as gateway:
        await gateway.request(0, "initialize", INIT)
        await gateway.list_tools()
        sent = 0
        with anyio.fail_after(60):
            while len(answered) < 150:
                for _ in range(16):
                    sent += 1
                    await gateway.send(
                        {"jsonrpc": "2.0", "id": sent, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "x"}}}
                    )
                for _ in range(8):
                    reply = await gateway.receive()
                    if "id" in reply and "method" not in reply:
                        answered.add(reply["id"])
        gateway.process.send_signal(signal.SIGKILL)
        await gateway.wait()
    path = _only_log(logs)
    with pytest.raises(LogUnsealed) as unsealed:
        verify_file(path)
    report = unsealed.value.report
    assert report is not None and not report.sealed
    logged_calls = {e["request_id"] for e in _entries(path) if e["kind"] == "call"}
    logged_results = {e["request_id"] for e in _entries(path) if e["kind"] == "result"}
    assert answered <= logged_calls  # write-ahead: decided before forwarded
    assert answered <= logged_results  # recorded before relayed


async def test_decisions_carry_rule_and_reason_and_raw_arguments_only_when_asked(tmp_path: Path, key: Path) -> None:
    for store_raw in (False, True):
        logs = tmp_path / f"logs-{store_raw}"
        logs.mkdir()
        options = ["--log", str(logs), "--key", str(key), "--deny", "get-env"] + (["--store-raw"] if store_raw else [])
        async with raw_gateway(everything_argv(), *options) as gateway:
            await gateway.request(0, "initialize", INIT)
            await gateway.request(1, "tools/list")
            denied = await gateway.request(2, "tools/call", {"name": "get-env", "arguments": {}})
            assert denied["error"]["data"]["rule"] == "cli.deny.1"
            await gateway.request(3, "tools/call", {"name": "echo", "arguments": {"message": "secret-value-123"}})
            await gateway.close_input()
            assert await gateway.wait() == 0
        path = _only_log(logs)
        verify_file(path)
        entries = {(e["kind"], e["request_id"]): e for e in _entries(path)}
        deny = entries[("call", 2)]
        assert (deny["decision"], deny["rule"], deny["tool"]) == ("deny", "cli.deny.1", "get-env")
        allow = entries[("call", 3)]
        assert allow["decision"] == "allow" and allow["args_hash"] and allow["descriptor_hash"]
        assert allow["policy_hash"] and allow["policy_hash"] == deny["policy_hash"]
        assert ("secret-value-123" in path.read_text()) is store_raw


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--log", "{tmp}/l.jsonl"], "no built-in one"),
        (["--log", "{tmp}/l.jsonl", "--key", "{tmp}/missing.key"], "cannot open key file"),
        (["--log", "{tmp}/l.jsonl", "--key", "{loose}"], "chmod 600"),
        (["--log", "{tmp}/exists.jsonl", "--ephemeral-key"], "already exists"),
    ],
    ids=["no-key", "missing-key", "group-readable-key", "existing-log"],
)
async def test_the_gateway_refuses_to_start_without_a_usable_key_or_log(
    tmp_path: Path, key: Path, options: list[str], expected: str
) -> None:
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    loose.chmod(0o640)
    (tmp_path / "exists.jsonl").write_text("")
    argv = gateway_argv(fixture_server_argv("misbehaving_server.py"), *(o.format(tmp=tmp_path, loose=loose) for o in options))
    env = {k: v for k, v in os.environ.items() if k != "AIRLOCK_KEY_FILE"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert expected in result.stderr
    assert not (tmp_path / "l.jsonl").exists()


async def test_an_ephemeral_key_is_announced_and_marked_in_the_genesis_entry(tmp_path: Path) -> None:
    log = tmp_path / "eph.jsonl"
    errlog = tmp_path / "stderr"
    with open(errlog, "wb") as stderr:
        async with raw_gateway(
            fixture_server_argv("misbehaving_server.py"), "--log", str(log), "--ephemeral-key", stderr=stderr
        ) as gateway:
            await gateway.request(1, "echo", {})
            await gateway.close_input()
            assert await gateway.wait() == 0
    genesis = _entries(log)[0]
    assert genesis["kind"] == "genesis" and genesis["data"]["ephemeral"] is True
    assert genesis["data"]["public_key"] in errlog.read_text()
    assert verify_file(log).ephemeral is True


async def test_the_log_is_sealed_when_the_upstream_dies(tmp_path: Path, key: Path) -> None:
    log = tmp_path / "died.jsonl"
    async with raw_gateway(fixture_server_argv("misbehaving_server.py"), "--log", str(log), "--key", str(key)) as gateway:
        await gateway.send({"jsonrpc": "2.0", "id": 1, "method": "crash"})
        await gateway.receive()
        assert await gateway.wait() == 3
    report = verify_file(log)
    assert report.sealed
    assert "upstream exited" in (_entries(log)[-1]["reason"] or "")


async def test_a_rotated_key_takes_over_on_sighup_and_the_log_verifies_against_the_first_key(tmp_path: Path, key: Path) -> None:
    log = tmp_path / "rot.jsonl"
    first_public = subprocess.run(
        [sys.executable, "-m", "gateway", "keygen", "--public", str(key)], capture_output=True, text=True, check=True
    ).stdout
    async with raw_gateway(everything_argv(), "--log", str(log), "--key", str(key)) as gateway:
        await gateway.request(0, "initialize", INIT)
        await gateway.list_tools()
        await gateway.request(1, "tools/call", {"name": "echo", "arguments": {"message": "before"}})
        subprocess.run([sys.executable, "-m", "gateway", "key", "rotate", "--key", str(key)], check=True, capture_output=True)
        gateway.process.send_signal(signal.SIGHUP)
        await eventually(lambda: any(e["kind"] == "rotation" for e in _entries(log)), 15)
        await gateway.request(2, "tools/call", {"name": "echo", "arguments": {"message": "after"}})
        await gateway.close_input()
        assert await gateway.wait() == 0
    result = subprocess.run([sys.executable, "-m", "gateway", "verify", str(log), "--public-key", first_public.strip(), "--json"],
                            capture_output=True, text=True)  # fmt: skip
    report = orjson.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["rotations"] == 1 and report["sealed"]
