"""The label-flow scenario suites (issue 5) through the real gateway, as a table.

    .venv/bin/python benchmarks/label_scenarios.py [SCENARIO ...]

Runs each scenario of fixtures/scenarios (inbox, files, web, chat, bank) with the runner of
tests/e2e/test_label_flows.py: a fresh `airlock run --policy fixtures/scenarios/NAME.toml
--name NAME` in front of fixtures/servers/scenarios/NAME_server.py, every step in order. Prints
per scenario how many benign flows were allowed and how many attacks a flow rule refused, the
steps off because of a known gateway issue, and any other disagreement; writes the same to
benchmarks/results/label_flows.txt. Exit status 1 when a step disagrees other than as marked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: the tests package lives at the repository root

from tests.e2e.test_label_flows import SCENARIOS, ScenarioReport, run_scenario, table  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "label_flows.txt"


async def run_all(names: list[str]) -> list[ScenarioReport]:
    return [await run_scenario(name) for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    names = parser.parse_args().scenarios or list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    reports = anyio.run(run_all, names)
    lines = [table(reports)]
    known = [line for report in reports for line in report.known()]
    if known:
        lines += ["", "Known gateway issues (step [issue]: what happened instead):", *known]
    wrong = [line for report in reports for line in report.mismatches()]
    if wrong:
        lines += ["", "Disagreements:", *wrong]
    fixed = [line for report in reports for line in report.fixed()]
    if fixed:
        lines += ["", "Marked with a gateway issue but now as expected (remove the marker):", *fixed]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    return 1 if wrong or fixed else 0


if __name__ == "__main__":
    sys.exit(main())
