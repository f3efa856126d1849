"""`airlock fork`: re-decide a verified flight log under another policy and list what flips."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from gateway.cli.compose import named_policy_and_lock, read_public_key
from gateway.recording.fork import fork, read_verified


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`airlock fork LOG --policy P2 [--lock L] [--public-key PUB] [--json] [--strict]`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "fork",
        help="re-decide a flight log's calls under another policy and list what would flip (exit 4 on flips)",
        description="Verify a flight log, then re-decide each recorded call under POLICY from the recorded evidence "
        "(descriptor hashes, labels, stored arguments). Exit 0: nothing flips; 4: something flips; 2: bad input.",
    )
    parser.add_argument("log", type=Path, help="a flight log (it must verify)")
    parser.add_argument("--policy", type=Path, required=True, help="the policy to re-decide under (TOML)")
    parser.add_argument("--lock", type=Path, help="lockfile whose pinned descriptors (matched by hash) the calls were decided on")
    parser.add_argument("--public-key", help="the key the log must be signed by (ed25519:... or a file)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--strict", action="store_true", help="exit 4 also when a call cannot be re-decided from the log")
    parser.set_defaults(handler=cmd_fork)
    return parser


def cmd_fork(args: argparse.Namespace, out: Callable[[str], None] | None = None) -> int:
    """Returns 0 (nothing flips) or 4 (something flips); bad input raises a ConfigError (exit 2)."""
    pinned = read_public_key(args.public_key, flag="--public-key")
    policy, lock = named_policy_and_lock(args.policy, args.lock)
    report = fork(read_verified(args.log, pinned), policy, lock, strict=args.strict)
    (out or print)(orjson.dumps(report.to_json()).decode() if args.json else report.table())
    return report.exit_code
