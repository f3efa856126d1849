"""Option groups that several commands share: the upstream (local or remote), the policy, logging
and the flight log."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.evidence.flightlog import FSYNC_MODES
from gateway.evidence.signing import (
    KEY_FILE_ENV,
)


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def remote_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a remote upstream (of `run`, `serve` and `pin`)."""
    parser.add_argument("--url", help="a remote upstream MCP server (instead of '-- CMD')")
    parser.add_argument("--url-env", metavar="VAR", help="as --url, the URL read from environment variable VAR (a URL holding a token)")
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http", help="transport of --url")
    parser.add_argument("--header", action="append", default=[], type=env_pair, metavar="NAME=VALUE", help="HTTP header for --url")
    parser.add_argument(
        "--header-env",
        action="append",
        default=[],
        type=env_pair,
        metavar="NAME=VAR",
        help="HTTP header for --url whose value is in environment variable VAR (never logged)",
    )
    parser.add_argument("--bearer-env", metavar="VAR", help="send 'Authorization: Bearer $VAR' to --url (the token is never logged)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="--url: how long a request may wait for an answer (default 30)")


def upstream_options(parser: argparse.ArgumentParser) -> None:
    """The options of `run` and `serve`: the upstream, the policy, logging and the flight log."""
    parser.add_argument("--config", type=Path, help="gateway config file (TOML)")
    parser.add_argument("--upstream", metavar="NAME", help="which [upstreams.NAME] of the config to run")
    parser.add_argument("--policy", type=Path, help="policy file (TOML; default: policies/default.toml)")
    parser.add_argument("--lock", type=Path, help="descriptor lockfile written by 'airlock pin' (default: pin on first sight, per session)")
    parser.add_argument("--name", help="the server's name in rules and pins (default: the config's upstream name, else its own name)")
    parser.add_argument("--deny", action="append", default=[], metavar="TOOL", help="refuse and hide this tool, before any rule")
    parser.add_argument("--env", action="append", default=[], type=env_pair, metavar="NAME=VALUE", help="set a variable for the upstream")
    parser.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of the gateway's environment to the upstream",
    )
    parser.add_argument("--cwd", help="working directory of the upstream")
    remote_options(parser)
    parser.add_argument("--max-message-bytes", type=int, help="largest message accepted in either direction")
    parser.add_argument("--max-in-flight", type=int, help="most requests open at once in each direction")
    parser.add_argument("--shutdown-grace", type=float, help="seconds the upstream gets to exit after its input closes")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["console", "json"])
    parser.add_argument("--log", type=Path, help="flight log: a new file, or a directory (one new file per run)")
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--key", type=Path, help=f"Ed25519 private key file (or ${KEY_FILE_ENV}); made by 'airlock keygen'")
    key.add_argument(
        "--ephemeral-key", action="store_true", help="UNSAFE for evidence: sign with a throwaway in-memory key (marked in the log)"
    )
    parser.add_argument("--fsync", choices=list(FSYNC_MODES), help="flight-log durability: always | group (default) | off")
    parser.add_argument("--store-raw", action="store_true", help="keep raw arguments and results in the flight log (for replay)")
    parser.add_argument("--record", type=Path, metavar="CASSETTE", help="record every message, both ways, to a new cassette file")
    parser.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="PATH",
        help="in the cassette, replace this field (e.g. params.arguments.password) by a stable placeholder",
    )
    parser.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
