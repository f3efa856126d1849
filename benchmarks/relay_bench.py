"""Relay overhead: the same echo calls directly over stdio and through `airlock run`, in one run.

    .venv/bin/python benchmarks/relay_bench.py [--calls N] [--upstream everything|demo]

Prints p50/p99 latency per `tools/call` (1 in flight) and calls/s at 1 and 16 in flight, with
the gateway's figures as ratios to the direct path; the third path adds the signed flight log
(group commit, ephemeral key). Targets (issue 2, this 2-core machine):
added p50 <= 0.5 ms; throughput at 16 in flight >= 25% of direct.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawClient, latencies, throughput

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = [str(ROOT / "node_modules" / ".bin" / "mcp-server-everything")]
ECHO = {"name": "echo", "arguments": {"message": "hello through the airlock"}}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(argv: list[str], calls: int) -> dict[str, float]:
    client = await RawClient.start(argv)
    try:
        await client.initialize()
        await latencies(client, "tools/call", ECHO, 300)  # warm-up (JIT, caches)
        lat = await latencies(client, "tools/call", ECHO, calls)
        tput1 = await throughput(client, "tools/call", ECHO, calls, 1)
        tput16 = await throughput(client, "tools/call", ECHO, calls * 2, 16)
    finally:
        await client.close()
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": quantile(lat, 0.99) * 1e3,
        "cps1": tput1,
        "cps16": tput16,
    }


def gateway_argv(extra: list[str], upstream: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway", "run", "--log-level", "warning", *extra, "--", *upstream]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="alternate direct/gateway this many times; best round kept")
    args = parser.parse_args()
    log_dir = tempfile.mkdtemp(prefix="airlock-bench-")
    paths = {
        "direct": EVERYTHING,
        "airlock run": gateway_argv([], EVERYTHING),
        "+ flight log": gateway_argv(["--log", log_dir, "--ephemeral-key"], EVERYTHING),
    }
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, argv in paths.items():
            figures = await measure(argv, args.calls)
            if name not in best:
                best[name] = figures
            else:
                prev = best[name]
                best[name] = {
                    "p50_ms": min(prev["p50_ms"], figures["p50_ms"]),
                    "p99_ms": min(prev["p99_ms"], figures["p99_ms"]),
                    "cps1": max(prev["cps1"], figures["cps1"]),
                    "cps16": max(prev["cps16"], figures["cps16"]),
                }
    direct = best["direct"]
    print(f"echo tools/call against server-everything, {args.calls} calls per figure, best of {args.rounds} rounds")
    print(f"{'path':<14}{'p50 ms':>9}{'p99 ms':>9}{'calls/s @1':>12}{'calls/s @16':>13}{'added p50 ms':>14}{'@16 vs direct':>15}")
    for name, f in best.items():
        added = f["p50_ms"] - direct["p50_ms"]
        ratio = f["cps16"] / direct["cps16"]
        print(f"{name:<14}{f['p50_ms']:>9.3f}{f['p99_ms']:>9.3f}{f['cps1']:>12.0f}{f['cps16']:>13.0f}{added:>14.3f}{ratio:>14.0%}")
    cost = 1 - best["+ flight log"]["cps16"] / best["airlock run"]["cps16"]
    print(f"flight log cost at 16 in flight: {cost:.0%} of the relay's calls/s (group commit, 2 signed entries per call)")
    shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
