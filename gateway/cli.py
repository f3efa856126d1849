"""The `airlock` command: argparse subcommands, each a small function over the library.

One top-level handler turns a `GatewayError` into a one-line message on stderr and the exit
code from the table in `gateway.errors`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from gateway import __version__
from gateway.config import GatewayConfig, load_config
from gateway.errors import EXIT_INTERNAL, EXIT_USAGE, ConfigError, GatewayError
from gateway.logs import configure_logging
from gateway.mediation.denylist import ToolDenyList
from gateway.mediation.interface import Mediator, PassThrough
from gateway.runner import RunSettings, run_stdio
from gateway.transports.child import ChildSpec, child_environment


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock", description="MCP Airlock: a security gateway for MCP servers.")
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="wrap a stdio MCP server: airlock run [options] -- CMD [ARG...]",
        description="Run CMD as the upstream MCP server and relay this process's stdio to it, mediated.",
    )
    run.add_argument("--config", type=Path, help="gateway config file (TOML)")
    run.add_argument("--upstream", metavar="NAME", help="which [upstreams.NAME] of the config to run")
    run.add_argument("--deny", action="append", default=[], metavar="TOOL", help="refuse and hide this tool (repeatable)")
    run.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="set a variable for the upstream")
    run.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of the gateway's environment to the upstream",
    )
    run.add_argument("--cwd", help="working directory of the upstream")
    run.add_argument("--max-message-bytes", type=int, help="largest message accepted in either direction")
    run.add_argument("--max-in-flight", type=int, help="most requests open at once in each direction")
    run.add_argument("--shutdown-grace", type=float, help="seconds the upstream gets to exit after its input closes")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", choices=["console", "json"])
    run.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="run the gateway against a built-in demo server and show what it does")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _settings_from(args: argparse.Namespace) -> tuple[RunSettings, Mediator, GatewayConfig]:
    config = load_config(args.config) if args.config else GatewayConfig()
    section = config.gateway
    argv = list(args.upstream_command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    upstream = config.upstream(args.upstream) if not argv else None
    if argv:
        spec = ChildSpec(tuple(argv), child_environment(args.pass_env, dict(args.env)), args.cwd)
    elif upstream is not None:
        env = {**upstream.env, **dict(args.env)}
        spec = ChildSpec(
            (upstream.command, *upstream.args),
            child_environment([*upstream.pass_env, *args.pass_env], env),
            args.cwd or upstream.cwd,
        )
    else:
        raise ConfigError("no upstream server given: use 'airlock run -- CMD [ARG...]' or name one in --config")
    settings = RunSettings(
        upstream=spec,
        max_message_bytes=_positive(args.max_message_bytes, section.max_message_bytes, "--max-message-bytes"),
        max_in_flight=_positive(args.max_in_flight, section.max_in_flight, "--max-in-flight"),
        shutdown_grace=section.shutdown_grace if args.shutdown_grace is None else max(0.0, args.shutdown_grace),
    )
    deny = ToolDenyList([*section.deny, *args.deny])
    return settings, (deny if deny else PassThrough()), config


def _positive(flag: int | None, configured: int, name: str) -> int:
    if flag is None:
        return configured
    if flag < 1:
        raise ConfigError(f"{name} must be a positive integer, got {flag}")
    return flag


def cmd_run(args: argparse.Namespace) -> int:
    settings, mediator, config = _settings_from(args)
    configure_logging(args.log_level or config.gateway.log_level, args.log_format or config.gateway.log_format)
    return asyncio.run(run_stdio(settings, mediator))


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.walkthrough import run_demo

    configure_logging("warning")
    return run_demo()


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
    except Exception:
        structlog.get_logger("airlock").exception("internal error; please report it with the traceback above")
        return EXIT_INTERNAL
