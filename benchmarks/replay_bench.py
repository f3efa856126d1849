"""Replay speed: calls/s for a generated 10,000-call cassette (issue 7 target: >= 2,000 calls/s).

    .venv/bin/python benchmarks/replay_bench.py [--calls N] [--repeat R]

The cassette is recorded through the real relay and policy mediator against the in-process
notes server of fixtures/cassettes/generate.py (every fifth call denied). Measured: reading
and parsing the cassette, and the replay itself without and with a flight-log file (fixed
clock and key, inline signing). Pinned to one core. Best of R runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.logs import configure_logging
from gateway.mediation.listings import reset_memos
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy
from gateway.recording.cassette import read_cassette
from gateway.recording.replay import replay

ROOT = Path(__file__).resolve().parents[1]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate_cassettes", ROOT / "fixtures" / "cassettes" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure_logging("warning")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    gen = _generator()
    policy = CompiledPolicy.from_file(parse_policy({"version": 1, "default": "allow", "rules": [
        {"id": "no-deletes", "tools": ["notes.delete_note"], "action": "deny"}]}, "bench"))  # fmt: skip
    tools = ("search_notes", "read_note", "send_email", "read_note", "delete_note")
    session = [*gen.handshake()]
    for i in range(args.calls):
        tool = tools[i % len(tools)]
        arguments: dict[str, Any] = {"query": f"q{i}"} if tool == "search_notes" else {"id": i}
        if tool == "send_email":
            arguments = {"to": f"u{i}@example.com", "body": f"note {i}"}
        session.append(gen.call(10 + i, tool, **arguments))
    with tempfile.TemporaryDirectory() as tmp:
        path = gen.record_session(Path(tmp) / "bench.jsonl", policy, session)
        size = path.stat().st_size
        lines = path.read_bytes().count(b"\n")
        print(f"replay: {args.calls:,} calls, cassette {size / 1e6:.1f} MB, {lines:,} lines, one core")
        best_read = best_plain = best_logged = float("inf")
        for run in range(args.repeat):
            reset_memos()
            started = time.perf_counter()
            cassette = read_cassette(path)
            best_read = min(best_read, time.perf_counter() - started)
            started = time.perf_counter()
            report = replay(cassette, policy)
            best_plain = min(best_plain, time.perf_counter() - started)
            assert not report.differences, report.differences[:3]
            started = time.perf_counter()
            logged = replay(cassette, policy, log_path=Path(tmp) / f"log{run}.jsonl")
            best_logged = min(best_logged, time.perf_counter() - started)
            assert not logged.differences
        calls = len(report.rows)
        print(f"{'read + parse':<28}{calls / best_read:>12,.0f} calls/s")
        print(f"{'replay (flight log /dev/null)':<28}{calls / best_plain:>12,.0f} calls/s")
        print(f"{'replay (flight log file)':<28}{calls / best_logged:>12,.0f} calls/s")
        print(f"{'read + replay (file)':<28}{calls / (best_read + best_logged):>12,.0f} calls/s   (target >= 2,000)")


if __name__ == "__main__":
    main()
