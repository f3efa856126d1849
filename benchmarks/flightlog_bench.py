"""Flight-log throughput: signed entries/s per fsync mode (pinned to one core) and `verify` lines/s.

    .venv/bin/python benchmarks/flightlog_bench.py [--entries N]

Targets (issue 3, this 2-core machine): >= 15,000 signed entries/s with group commit;
verify >= 8,000 lines/s. Pinned to one core, the signer thread shares it with the loop.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from gateway.flightlog import FlightLog, LogSettings
from gateway.signing import generate_key
from gateway.verify import verify_file


async def write_entries(path: Path, fsync: str, count: int) -> float:
    log = FlightLog.open(LogSettings(path=path, fsync=fsync), generate_key(), policy_hash="ab" * 32)  # type: ignore[arg-type]
    log.start("bench", ephemeral=True)
    started = time.perf_counter()
    for i in range(count):
        log.append("call", server="bench", tool="echo", request_id=i, args_hash="cd" * 32, decision="allow",
                   rule="default.allow", reason="no rule denies this call")  # fmt: skip
        if i % 64 == 63:
            await asyncio.sleep(0)  # the event loop runs between messages, as in the gateway
    await log.aclose()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=30_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    print(f"flight log, {args.entries} call entries per mode, one core")
    print(f"{'mode':<8}{'entries/s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        last = Path(tmp)
        for fsync in ("always", "group", "off"):
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


if __name__ == "__main__":
    main()
