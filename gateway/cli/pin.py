"""`airlock pin`: write, or with `--diff` compare, the descriptor lockfile."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.cli.options import env_pair, remote_options
from gateway.cli.upstreams import http_spec, upstream_spec
from gateway.config import GatewayConfig, load_config
from gateway.errors import EXIT_DIFFERENT, EXIT_OK
from gateway.logs import configure_logging
from gateway.protocol.names import server_identity
from gateway.screening.descriptors import item_key
from gateway.screening.pins import Lock, ServerPins, compare
from gateway.upstream import UpstreamSpec
from gateway.upstream.probe import list_server


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pin = commands.add_parser("pin", help="write (or with --diff, compare) the descriptor lockfile of the upstream(s)")
    pin.add_argument("--config", type=Path, help="gateway config file: pins every [upstreams.NAME] (or the one --upstream names)")
    pin.add_argument("--upstream", metavar="NAME", help="which [upstreams.NAME] of the config to pin")
    pin.add_argument("--name", help="the server's name in the lockfile (default: the config's name, else its own name)")
    pin.add_argument("--lock", type=Path, default=Path("airlock.lock"), help="the lockfile (default: ./airlock.lock)")
    pin.add_argument("--diff", action="store_true", help="show what changed, field by field, and write nothing (exit 4 on changes)")
    pin.add_argument("--env", action="append", default=[], type=env_pair, metavar="NAME=VALUE", help="set a variable for the upstream")
    pin.add_argument("--pass-env", action="append", default=[], metavar="NAME", help="pass this variable to the upstream")
    pin.add_argument("--cwd", help="working directory of the upstream")
    remote_options(pin)
    pin.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    pin.set_defaults(handler=cmd_pin)


def cmd_pin(args: argparse.Namespace) -> int:
    configure_logging("warning")
    config = load_config(args.config) if args.config else GatewayConfig()
    argv = [a for a in args.upstream_command if a != "--"] if args.upstream_command else []

    def target() -> tuple[UpstreamSpec, str | None]:
        remote = http_spec(args, config)
        return remote if remote is not None else upstream_spec(args, config)

    if argv or args.url or args.url_env or args.upstream or len(config.upstreams) <= 1:
        targets = [target()]
    else:
        targets = []
        for name in sorted(config.upstreams):
            args.upstream = name
            targets.append(target())
    old = Lock.load(args.lock) if args.lock.exists() else Lock()
    new = Lock.from_json(old.to_json(), str(args.lock))
    for spec, configured in targets:
        listing = asyncio.run(list_server(spec))
        given = args.name or configured or listing.server_name
        identity = server_identity(given) if given else None
        identity = identity or server_identity(Path(spec.display).name)
        pins = ServerPins()
        if listing.instructions is not None:
            pins.put("instructions", "instructions", listing.instructions)
        for kind, items in listing.items.items():
            for item in items:
                key = item_key(kind, item)
                if key is not None:
                    pins.put(kind, key, item)
        new.servers[identity] = pins
        counts = ", ".join(f"{len(v)} {k}" for k, v in pins.items.items())
        print(f"{identity}: {counts or 'nothing listed'}", file=sys.stderr)
    changes = compare(old, new)
    if args.diff:
        for change in changes:
            for line in change.describe():
                print(line)
        print(f"{len(changes)} change(s) against {args.lock}" if changes else f"no changes against {args.lock}", file=sys.stderr)
        return EXIT_DIFFERENT if changes else EXIT_OK
    new.save(args.lock)
    print(f"wrote {args.lock} ({len(changes)} change(s)); review it and commit it", file=sys.stderr)
    return EXIT_OK
