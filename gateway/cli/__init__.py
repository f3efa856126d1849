"""The `airlock` command: argparse subcommands, each a small function over the library.

One top-level handler turns a `GatewayError` into a one-line message on stderr and the exit
code from the table in `gateway.errors`.

Imports: *.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import structlog

from gateway import __version__
from gateway.cli import demo, fork, inspect, install, keys, pin, policy, replay, run, serve, verify
from gateway.errors import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, GatewayError
from gateway.logs import configure_logging

__all__ = ["build_parser", "main"]

# In the order `airlock --help` lists them.
COMMANDS = (run, serve, keys, verify, inspect, pin, policy, install, replay, fork, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock", description="MCP Airlock: a security gateway for MCP servers.")
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging("info")
    try:
        return int(args.handler(args))
    except GatewayError as error:
        print(f"airlock: error: {error.message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (e.g. `airlock inspect LOG | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:
        structlog.get_logger("airlock").exception("internal error; please report it with the traceback above")
        return EXIT_INTERNAL
