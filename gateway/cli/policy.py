"""`airlock policy check` and `airlock policy schema`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from gateway.cli.compose import named_policy_and_lock
from gateway.errors import EXIT_OK
from gateway.policy.lint import lint
from gateway.policy.model import policy_schema


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="check a policy file, or print its JSON Schema")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_commands.add_parser("check", help="validate and lint a policy (exit 2 when invalid)")
    check.add_argument("policy", type=Path)
    check.add_argument("--lock", type=Path, help="also report rules naming tools no pinned server has")
    check.set_defaults(handler=cmd_policy_check)
    schema = policy_commands.add_parser("schema", help="print the policy file's JSON Schema (for editors)")
    schema.set_defaults(handler=cmd_policy_schema)


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy, lock = named_policy_and_lock(args.policy, args.lock)
    findings = lint(policy, lock)
    for finding in findings:
        print(f"{args.policy}: warning: {finding.kind}: {finding.message}")
    print(f"{args.policy}: valid, {len(policy.rules)} rule(s), policy hash {policy.hash}, {len(findings)} warning(s)")
    return EXIT_OK


def cmd_policy_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(policy_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK
