"""Relay overhead: the same echo calls directly over stdio, through `airlock run`, through
`airlock run` with the signed flight log, and through `airlock run` with a precise flow policy
(every result labelled private, a flow rule checking every call's arguments and members), all in
one run.

    .venv/bin/python benchmarks/relay_bench.py [--calls N] [--rounds R]

All three servers stay up for the whole run and are measured in interleaved rounds (the order
rotates each round); each figure is the median over the rounds, so a burst of noise on this
shared machine moves one sample, not the result. Printed: p50/p99 latency per `tools/call` (1 in
flight), calls/s at 1 and 16 in flight, and ratios to the direct path. Targets (issues 2 and 3,
this 2-core machine): added p50 <= 0.5 ms; throughput at 16 in flight >= 25% of direct; the
flight log costs <= 25% of the relay's calls/s at 16 in flight; with the flow policy on, >= 40%
of direct at 16 in flight (issue 15).

`--baseline DIR` adds the same two gateway paths run from another checkout of this repository
(say, the commit before a refactor, from `git worktree add DIR REV`), measured in the same
interleaved rounds, and prints each figure of this tree as a ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawClient, latencies, throughput

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = [str(ROOT / "node_modules" / ".bin" / "mcp-server-everything")]
ECHO = {"name": "echo", "arguments": {"message": "hello through the airlock"}}
#: Every result private, every call checked precisely (the rule is on secret data, so nothing is
#: refused: what is measured is the check).
FLOW_POLICY = """
version = 1
default = "allow"

[pins]
unpinned = "trust-on-first-use"

[[servers]]
servers = ["*"]
returns = "private"

[[tools]]
tools = ["*.echo"]
class = "egress"

[[flows]]
id = "no-secret-egress"
labels = ["secret"]
to = ["egress"]
"""


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def gateway_argv(extra: list[str], upstream: list[str]) -> list[str]:
    return [sys.executable, "-m", "gateway", "run", "--log-level", "warning", *extra, "--", *upstream]


def tree_env(tree: Path | None) -> dict[str, str] | None:
    """The environment that makes `python -m gateway` import the gateway of checkout `tree`
    (None: this one). PYTHONSAFEPATH keeps the working directory off sys.path, so PYTHONPATH wins."""
    if tree is None:
        return None
    return {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree.resolve())}


async def sample(client: RawClient, calls: int) -> dict[str, float]:
    lat = await latencies(client, "tools/call", ECHO, calls // 2)
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": quantile(lat, 0.99) * 1e3,
        "cps1": await throughput(client, "tools/call", ECHO, calls // 2, 1),
        "cps16": await throughput(client, "tools/call", ECHO, calls * 2, 16),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also measure the gateway of this other checkout")
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "gateway" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this repository (no gateway/__init__.py)")
    log_dir = tempfile.mkdtemp(prefix="airlock-bench-")
    flow_policy = Path(log_dir) / "flow-policy.toml"
    flow_policy.write_text(FLOW_POLICY)
    flow_policy.chmod(0o600)
    paths = {
        "direct": EVERYTHING,
        "airlock run": gateway_argv([], EVERYTHING),
        "+ flight log": gateway_argv(["--log", log_dir, "--ephemeral-key"], EVERYTHING),
        "+ flow policy": gateway_argv(["--policy", str(flow_policy)], EVERYTHING),
    }
    envs: dict[str, dict[str, str] | None] = dict.fromkeys(paths)
    if args.baseline is not None:
        paths |= {"base run": paths["airlock run"], "base + log": paths["+ flight log"]}
        envs |= dict.fromkeys(("base run", "base + log"), tree_env(args.baseline))
    clients = {name: await RawClient.start(argv, envs[name]) for name, argv in paths.items()}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in paths}
    try:
        for client in clients.values():
            await client.initialize()
            await client.request("tools/list", {})  # the gateway lets only listed tools be called
            await throughput(client, "tools/call", ECHO, 2000, 16)  # warm-up
        names = list(paths)
        for round_index in range(args.rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                samples[name].append(await sample(clients[name], args.calls))
    finally:
        for client in clients.values():
            await client.close()
        shutil.rmtree(log_dir, ignore_errors=True)
    figures = {name: {k: statistics.median(s[k] for s in rows) for k in rows[0]} for name, rows in samples.items()}
    direct = figures["direct"]
    print(f"echo tools/call against server-everything; median of {args.rounds} interleaved rounds")
    print(f"{'path':<14}{'p50 ms':>9}{'p99 ms':>9}{'calls/s @1':>12}{'calls/s @16':>13}{'added p50 ms':>14}{'@16 vs direct':>15}")
    for name, f in figures.items():
        added = f["p50_ms"] - direct["p50_ms"]
        ratio = f["cps16"] / direct["cps16"]
        print(f"{name:<14}{f['p50_ms']:>9.3f}{f['p99_ms']:>9.3f}{f['cps1']:>12.0f}{f['cps16']:>13.0f}{added:>14.3f}{ratio:>14.0%}")
    cost = 1 - figures["+ flight log"]["cps16"] / figures["airlock run"]["cps16"]
    print(f"flight log cost at 16 in flight: {cost:.0%} of the relay's calls/s (group commit, 2 signed entries per call)")
    if args.baseline is not None:
        base_cost = 1 - figures["base + log"]["cps16"] / figures["base run"]["cps16"]
        print(f"baseline {args.baseline}: flight log cost {base_cost:.0%}; this tree / baseline:")
        for mine, theirs in (("airlock run", "base run"), ("+ flight log", "base + log")):
            f, b = figures[mine], figures[theirs]
            print(
                f"  {mine:<14} p50 {f['p50_ms'] / b['p50_ms']:.2f}x  calls/s @1 {f['cps1'] / b['cps1']:.2f}x  "
                f"calls/s @16 {f['cps16'] / b['cps16']:.2f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
