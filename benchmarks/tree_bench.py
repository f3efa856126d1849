"""This tree against another checkout, in one run: `airlock --help` wall time, `decide` p50 at 500
rules, and the flight log's entries/s on the relay's path.

    .venv/bin/python benchmarks/tree_bench.py --baseline DIR [--rounds R]

DIR is another checkout of this repository (for example `git worktree add DIR REV` at the commit
before a refactor). Each tree runs its own copy of `policy_bench.py` and `flightlog_bench.py`
(their code follows the tree's API) with its own `gateway` on the path, alternating tree by tree
for R rounds; each figure is the median over the rounds and is printed with this tree's ratio to
the baseline. The relay's throughput at 16 in flight is measured by `relay_bench.py --baseline DIR`,
which keeps both trees' gateways up in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def tree_env(tree: Path) -> dict[str, str]:
    """`python` that imports the `gateway` of `tree`: PYTHONSAFEPATH keeps the working directory
    off sys.path, so PYTHONPATH decides."""
    return {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(tree)}


def run(tree: Path, *argv: str) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=tree, env=tree_env(tree), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def help_seconds(tree: Path, times: int = 5) -> float:
    """Median wall time of `python -m gateway --help` (imports included)."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run(tree, "-m", "gateway", "--help")
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def decide_p50(tree: Path) -> float:
    """The worst steady `decide` p50 at 500 rules, in microseconds (policy_bench's own line)."""
    out = run(tree, "benchmarks/policy_bench.py", "--decisions", "20000", "--listings", "5", "--sessions", "2")
    found = re.search(r"worst steady p50 ([0-9.]+) us", out)
    if found is None:
        raise SystemExit(f"{tree}: policy_bench.py printed no 'worst steady p50' line:\n{out}")
    return float(found.group(1))


def relay_path_entries(tree: Path) -> float:
    """Entries/s of the flight log in group mode on the relay's path (flightlog_bench's table)."""
    out = run(tree, "benchmarks/flightlog_bench.py")
    table = out[out.index("the relay's path") :]
    found = re.search(r"^group\s+([0-9,]+)", table, re.M)
    if found is None:
        raise SystemExit(f"{tree}: flightlog_bench.py printed no relay-path 'group' row:\n{out}")
    return float(found.group(1).replace(",", ""))


MEASURES = {
    "airlock --help (s)": (help_seconds, "lower"),
    "decide p50 @500 rules (us)": (decide_p50, "lower"),
    "flight log, relay path (entries/s)": (relay_path_entries, "higher"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, required=True, metavar="DIR", help="another checkout of this repository")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = args.baseline.resolve()
    if not (base / "gateway" / "__init__.py").is_file():
        parser.error(f"--baseline {args.baseline}: not a checkout of this repository (no gateway/__init__.py)")
    trees = {"this tree": HERE, "baseline": base}
    samples: dict[tuple[str, str], list[float]] = {(m, t): [] for m in MEASURES for t in trees}
    for round_index in range(args.rounds):
        order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
        for measure, (function, _) in MEASURES.items():
            for name in order:
                samples[measure, name].append(function(trees[name]))
    print(f"this tree {HERE} vs baseline {base}; median of {args.rounds} alternating rounds")
    print(f"{'measure':<38}{'this tree':>12}{'baseline':>12}{'ratio':>8}  better")
    for measure, (_, better) in MEASURES.items():
        mine, theirs = (statistics.median(samples[measure, t]) for t in trees)
        print(f"{measure:<38}{mine:>12,.4g}{theirs:>12,.4g}{mine / theirs:>7.2f}x  {better}")


if __name__ == "__main__":
    main()
