"""`airlock replay`: a cassette through the gateway under a policy, every decision reported."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.cli.compose import named_policy_and_lock
from gateway.logs import configure_logging
from gateway.recording.cassette import read_cassette
from gateway.recording.replay import replay
from gateway.recording.report import load_expectations


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`airlock replay CASSETTE --policy P [--lock L] [--expect E] [--log F]`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay a recorded session under a policy and report every decision (exit 4 on differences)",
        description="Run a cassette's client side through the gateway against a mock upstream that answers from the "
        "cassette. Exit 0: same decisions; 4: differences (decisions, expectations, descriptors vs the lock); 2: bad input.",
    )
    parser.add_argument("cassette", type=Path, help="a cassette written by 'airlock run --record'")
    parser.add_argument("--policy", type=Path, required=True, help="the policy to replay under (TOML)")
    parser.add_argument("--lock", type=Path, help="descriptor lockfile: report descriptors that no longer match it")
    parser.add_argument("--expect", type=Path, help='expected decisions, JSON {"calls": [{"tool", "decision", "rule"?}, ...]}')
    parser.add_argument("--log", type=Path, help="write the replay's flight log here (a new file, or a directory)")
    parser.set_defaults(handler=cmd_replay)
    return parser


def cmd_replay(args: argparse.Namespace, out: Callable[[str], None] | None = None) -> int:
    """Returns 0 (no differences) or 4 (differences); bad input raises a ConfigError (exit 2)."""
    configure_logging("warning")
    policy, lock = named_policy_and_lock(args.policy, args.lock)
    expect = load_expectations(args.expect) if args.expect is not None else None
    cassette = read_cassette(args.cassette)
    report = replay(cassette, policy, lock, expect=expect, log_path=args.log)
    (out or _print)(report.table())
    if report.log_path is not None:
        print(f"replay flight log: {report.log_path}", file=sys.stderr)
    return report.exit_code


def _print(text: str) -> None:
    print(text)
