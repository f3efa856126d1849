"""`airlock run`: one upstream over stdio, or with `--all` every configured upstream behind one
session."""

from __future__ import annotations

import argparse
import asyncio

from gateway.cli.compose import (
    gateway_setup,
    logged_run,
    make_mediator,
    open_flight_log,
    policy_and_lock,
    server_names,
    signing_key_path,
    tofu_saver,
)
from gateway.cli.options import upstream_options
from gateway.cli.upstreams import settings_from
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.fronts.hub_stdio import HubUpstream, run_hub_stdio
from gateway.fronts.stdio import run_stdio
from gateway.protocol.names import server_identity
from gateway.recording.cassette import CassetteWriter
from gateway.session.directory import SEPARATOR


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="wrap a stdio MCP server: airlock run [options] -- CMD [ARG...]",
        description="Run CMD as the upstream MCP server and relay this process's stdio to it, mediated.",
    )
    run.add_argument(
        "--all", action="store_true", help="serve every [upstreams.NAME] of --config as one server (tools NAME__TOOL), with one label state"
    )
    upstream_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if args.all:
        return _run_all(args)
    settings, config, upstream_name, policy, lock_path, lock = gateway_setup(args)
    on_new_pins = tofu_saver(policy, lock, lock_path)
    flight_log = open_flight_log(args, config, policy.hash)
    identity, fallback = server_names(args.name or upstream_name, settings)
    mediator = make_mediator(
        args, config, policy, identity=identity, fallback_identity=fallback, lock=lock, flight_log=flight_log, on_new_pins=on_new_pins
    )
    recorder = None
    if args.record is not None:
        recorder = CassetteWriter(args.record, redact=args.redact, server=identity, fallback_server=fallback, policy_hash=policy.hash)

    def relay() -> int:
        key_path = None if args.ephemeral_key else signing_key_path(args, config.flight_log)
        return asyncio.run(run_stdio(settings, mediator, flight_log=flight_log, key_path=key_path, recorder=recorder))

    return logged_run(flight_log, relay, recorder.close if recorder is not None else None)


def _run_all(args: argparse.Namespace) -> int:
    """`airlock run --all --config C`: every configured upstream behind one session (`hub`)."""
    if args.config is None:
        raise ConfigError("--all serves every [upstreams.NAME] of a config file: add --config FILE")
    if args.url or args.url_env or [a for a in args.upstream_command if a != "--"] or args.upstream or args.name:
        raise ConfigError("--all takes its upstreams from --config; drop --url, --url-env, --upstream, --name and '-- CMD'")
    if args.record is not None:
        raise ConfigError("--record records one upstream's session; it cannot be combined with --all yet")
    config = load_config(args.config)
    if len(config.upstreams) < 1:
        raise ConfigError(f"{args.config}: --all needs at least one [upstreams.NAME]")
    policy, lock_path, lock = policy_and_lock(args, config)
    on_new_pins = tofu_saver(policy, lock, lock_path)
    flight_log = open_flight_log(args, config, policy.hash, extra={"upstreams": sorted(config.upstreams)})
    provenance = None  # one label state for the whole session, shared by every upstream's mediator
    upstreams: list[HubUpstream] = []
    for name in sorted(config.upstreams):
        args.upstream = name
        settings, _, _ = settings_from(args)
        identity = server_identity(name)
        if SEPARATOR in identity or identity.endswith("_"):
            raise ConfigError(f"[upstreams.{name}]: with --all, tools are named SERVER{SEPARATOR}TOOL: rename it without {SEPARATOR!r}")
        mediator = make_mediator(
            args, config, policy, identity=identity, lock=lock, flight_log=flight_log, on_new_pins=on_new_pins, provenance=provenance
        )
        provenance = mediator.provenance
        upstreams.append(HubUpstream(identity, settings, mediator))
    limit = upstreams[0].settings.max_message_bytes
    return logged_run(flight_log, lambda: asyncio.run(run_hub_stdio(upstreams, flight_log=flight_log, max_message_bytes=limit)))
