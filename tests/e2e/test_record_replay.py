"""Record a real session (`airlock run --record` wrapping server-everything, driven by the real
mcp client), then replay it with `airlock replay`: the same policy gives no differences and
byte-identical flight logs twice; a stricter policy reports the flipped call (exit 4); a
corrupted line is named by its number (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, everything_argv, through_gateway

pytestmark = pytest.mark.anyio

STRICT = """
version = 1
default = "allow"
extra_arguments = "allow"
[pins]
unpinned = "trust-on-first-use"
[[rules]]
id = "no-echo"
tools = ["*.echo"]
action = "deny"
"""


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "replay", *args], cwd=str(ROOT), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


async def _record(cassette: Path) -> None:
    with anyio.fail_after(60):
        async with Client(
            through_gateway(everything_argv(), "--record", str(cassette), "--redact", "params.arguments.message"), mode="legacy"
        ) as c:
            await c.list_tools()
            await c.call_tool("echo", {"message": "secret-recorded-42"})
            await c.call_tool("get-sum", {"a": 2, "b": 40})


async def test_a_recorded_session_replays_with_the_same_decisions_and_identical_logs(tmp_path: Path) -> None:
    cassette = tmp_path / "session.cassette.jsonl"
    await _record(cassette)
    text = cassette.read_text()
    assert "secret-recorded-42" not in text and "<redacted:" in text  # the argument, and its echo, are placeholders
    logs = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    for log in logs:
        done = _replay(str(cassette), "--policy", str(TRANSPARENT_POLICY), "--log", str(log))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "echo" in done.stdout and "get-sum" in done.stdout
    assert logs[0].read_bytes() == logs[1].read_bytes()
    verified = subprocess.run([sys.executable, "-m", "gateway", "verify", str(logs[0])], cwd=str(ROOT), capture_output=True,
                              timeout=60, check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_stricter_policy_reports_the_call_it_would_flip(tmp_path: Path) -> None:
    cassette = tmp_path / "session.cassette.jsonl"
    await _record(cassette)
    policy = tmp_path / "strict.toml"
    policy.write_text(STRICT)
    done = _replay(str(cassette), "--policy", str(policy))
    assert done.returncode == 4, done.stdout + done.stderr
    assert "no-echo" in done.stdout


async def test_a_corrupted_cassette_line_is_named_by_its_number(tmp_path: Path) -> None:
    cassette = tmp_path / "session.cassette.jsonl"
    await _record(cassette)
    lines = cassette.read_text().splitlines()
    lines[3] = lines[3][: len(lines[3]) // 2]
    cassette.write_text("\n".join(lines) + "\n")
    done = _replay(str(cassette), "--policy", str(TRANSPARENT_POLICY))
    assert done.returncode == 2
    assert f"{cassette}:4" in done.stderr


FLOWS = """
version = 1
default = "allow"
extra_arguments = "allow"
[pins]
unpinned = "trust-on-first-use"
[[tools]]
tools = ["*.echo"]
returns = "secret"
[[flows]]
id = "no-secret-out"
labels = ["secret"]
to = ["egress", "write"]
"""


async def test_replays_under_a_policy_with_flow_rules_give_identical_logs(tmp_path: Path) -> None:
    # Label sources carry the time a result was seen: replay passes its fixed clock to the mediator.
    cassette = tmp_path / "session.cassette.jsonl"
    await _record(cassette)
    policy = tmp_path / "flows.toml"
    policy.write_text(FLOWS)
    logs = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    for log in logs:
        done = _replay(str(cassette), "--policy", str(policy), "--log", str(log))
        assert done.returncode in (0, 4), done.stdout + done.stderr
    assert logs[0].read_bytes() == logs[1].read_bytes()
