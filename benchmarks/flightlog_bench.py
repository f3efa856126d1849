"""Flight-log throughput: signed entries/s per fsync mode (pinned to one core), the cost of one
entry on the relay's own path, and `verify` lines/s.

    .venv/bin/python benchmarks/flightlog_bench.py [--entries N]

Targets (issue 3, this 2-core machine): >= 15,000 signed entries/s with group commit;
verify >= 8,000 lines/s. Pinned to one core, the fsync thread shares it with the loop.

The second table is the relay's path: `record` in deferred mode (a `call` and a `result` entry
per call, as `PolicyMediator` makes them) and a `flush` per 16 calls, as `run_stdio` flushes per
chunk of input. It gives the CPU time per entry on the loop thread and in the whole process
(batches, checkpoints and the fsync thread included), each the median of several runs: this
machine is shared, and CPU time moves less than wall time with what else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from gateway.evidence.flightlog import FlightLog, FsyncMode, LogSettings
from gateway.evidence.signing import generate_key
from gateway.evidence.verify import verify_file

CHUNK_CALLS = 16
RUNS = 7


async def write_entries(path: Path, fsync: FsyncMode, count: int) -> float:
    log = FlightLog.open(LogSettings(path=path, fsync=fsync), generate_key(), policy_hash="ab" * 32)
    log.start("bench", ephemeral=True)
    started = time.perf_counter()
    for i in range(count):
        log.append("call", server="bench", tool="echo", request_id=i, args_hash="cd" * 32, decision="allow",
                   rule="default.allow", reason="no rule denies this call")  # fmt: skip
        if i % 64 == 63:
            await asyncio.sleep(0)  # the event loop runs between messages, as in the gateway
    await log.aclose()
    return count / (time.perf_counter() - started)


async def record_calls(path: Path, fsync: FsyncMode, calls: int) -> tuple[float, float, float]:
    """(entries/s, loop-thread CPU us per entry, process CPU us per entry) for `calls` calls."""
    log = FlightLog.open(LogSettings(path=path, fsync=fsync), generate_key(), policy_hash="ab" * 32)
    log.start("bench", ephemeral=True)
    log.defer_writes()
    started, loop_cpu, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    for i in range(calls):
        call = log.record(
            kind="call",
            server="everything",
            tool="echo",
            request_id=i,
            descriptor_hash="ef" * 32,
            args_hash="cd" * 32,
            decision="allow",
            rule="read-only-tools",
            reason="tool 'echo' is read-only",
            data={},
        )
        log.record(
            kind="result",
            server="everything",
            tool="echo",
            request_id=i,
            descriptor_hash="ef" * 32,
            result_hash="12" * 32,
            data={"call": call, "is_error": False, "labels": ["untrusted"]},
        )
        if i % CHUNK_CALLS == CHUNK_CALLS - 1:
            log.flush()
            await asyncio.sleep(0)
    log.flush()
    elapsed, loop_cpu, cpu = time.perf_counter() - started, time.thread_time() - loop_cpu, time.process_time() - cpu
    await log.aclose()
    entries = 2 * calls
    return entries / elapsed, loop_cpu / entries * 1e6, cpu / entries * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=30_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    modes: tuple[FsyncMode, ...] = ("always", "group", "off")
    print(f"flight log, {args.entries} call entries per mode, one core")
    print(f"{'mode':<8}{'entries/s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp)
        for fsync in modes:
            count = args.entries // 10 if fsync == "always" else args.entries
            path = Path(tmp) / f"{fsync}.jsonl"
            rate = asyncio.run(write_entries(path, fsync, count))
            print(f"{fsync:<8}{rate:>12,.0f}" + ("   (fewer entries: one fsync each)" if fsync == "always" else ""))
            last = path
        lines = last.read_bytes().count(b"\n")
        started = time.perf_counter()
        report = verify_file(last)
        elapsed = time.perf_counter() - started
        print(f"verify  {lines / elapsed:>12,.0f} lines/s ({report.entries} entries, {report.checkpoints} checkpoints)")

        calls = args.entries // 2
        print(f"\nthe relay's path: {calls} calls (2 entries each) per run, a flush per {CHUNK_CALLS} calls, median of {RUNS} runs")
        print(f"{'mode':<8}{'entries/s':>12}{'loop us/entry':>16}{'cpu us/entry':>15}")
        for fsync in modes:
            runs = [asyncio.run(record_calls(Path(tmp) / f"record-{fsync}-{run}.jsonl", fsync, calls)) for run in range(RUNS)]
            rate, loop_us, cpu_us = (statistics.median(run[column] for run in runs) for column in range(3))
            print(f"{fsync:<8}{rate:>12,.0f}{loop_us:>16.2f}{cpu_us:>15.2f}" + ("   (one fsync per flush)" if fsync == "always" else ""))


if __name__ == "__main__":
    main()
