"""`examples/ci/airlock-replay.sh`, run as CI would run it, on a repository layout in a tmp dir:
the fixture cassette and a real recording of server-everything replay with no differences and
verified logs; a stricter policy fails the job and names the call; a corrupt cassette is
reported with its line number while the others still replay; nothing to replay is exit 2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, everything_argv, through_gateway

SCRIPT = ROOT / "examples" / "ci" / "airlock-replay.sh"
FIXTURES = ROOT / "fixtures" / "cassettes"


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "my repo"  # a space in the path, on purpose
    (repo / "cassettes").mkdir(parents=True)
    (repo / "policies").mkdir()
    shutil.copy(FIXTURES / "notes.cassette.jsonl", repo / "cassettes" / "notes.cassette.jsonl")
    shutil.copy(FIXTURES / "notes-record.toml", repo / "policies" / "policy.toml")
    shutil.copy(FIXTURES / "notes-strict.toml", repo / "policies" / "strict.toml")
    return repo


def _run(repo: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}  # only where a test sets it
    environment |= {"AIRLOCK": f"{sys.executable} -m gateway", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=str(repo), env=environment, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_the_recorded_sessions_replay_with_the_same_decisions_and_verified_logs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    summary_file = tmp_path / "step-summary.md"
    done = _run(repo, env={"GITHUB_STEP_SUMMARY": str(summary_file)})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (repo / "airlock-replay-out" / "summary.md").read_text()
    assert "notes: same decisions; flight log verified" in summary
    assert summary_file.read_text() == summary  # published to the job summary too


def test_a_stricter_policy_fails_the_job_and_the_summary_names_the_differing_call(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    done = _run(repo, "cassettes", "policies/strict.toml")
    assert done.returncode == 1, done.stdout + done.stderr
    summary = (repo / "airlock-replay-out" / "summary.md").read_text()
    assert "DIFFERENT decisions" in summary and "deny(" in summary


def test_a_corrupt_cassette_is_reported_with_its_line_and_the_others_still_replay(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    lines = (repo / "cassettes" / "notes.cassette.jsonl").read_text().splitlines()
    lines[2] = "{not json"
    (repo / "cassettes" / "broken.cassette.jsonl").write_text("\n".join(lines) + "\n")
    done = _run(repo)
    assert done.returncode == 1
    summary = (repo / "airlock-replay-out" / "summary.md").read_text()
    assert "broken: replay FAILED (exit 2)" in summary and "broken.cassette.jsonl:3" in summary
    assert "notes: same decisions; flight log verified" in summary


def test_nothing_to_replay_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "cassettes").mkdir(parents=True)
    done = _run(empty)
    assert done.returncode == 2
    assert "no *.cassette.jsonl" in done.stderr


def test_a_real_recording_of_server_everything_replays_through_the_script(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    cassette = repo / "cassettes" / "everything.cassette.jsonl"

    async def record() -> None:
        with anyio.fail_after(60):
            async with Client(through_gateway(everything_argv(), "--record", str(cassette)), mode="legacy") as client:
                await client.list_tools()
                await client.call_tool("echo", {"message": "ci"})

    anyio.run(record)
    (repo / "cassettes" / "notes.cassette.jsonl").unlink()
    shutil.copy(TRANSPARENT_POLICY, repo / "policies" / "policy.toml")
    done = _run(repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "echo" in (repo / "airlock-replay-out" / "everything.table.txt").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_script_passes_shellcheck() -> None:
    assert subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, timeout=60, check=False).returncode == 0
