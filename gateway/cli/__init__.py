"""The `airlock` command: argparse subcommands, each a small function over the library.

One top-level handler turns a `GatewayError` into a one-line message on stderr and the exit
code from the table in `gateway.errors`.

Imports: *.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import __version__
from gateway.config import FlightLogSection, GatewayConfig, load_config
from gateway.errors import EXIT_DIFFERENT, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, ConfigError, GatewayError
from gateway.evidence.entry import timestamp, utc_now
from gateway.evidence.flightlog import FSYNC_MODES, FlightLog, LogSettings
from gateway.evidence.reader import EntryFilter, read_entries, redact, redact_receipt, table_header, table_row
from gateway.evidence.receipt import extract_receipt, verify_receipt
from gateway.evidence.rotation import make_manifest
from gateway.evidence.signing import (
    KEY_FILE_ENV,
    generate_key,
    key_id,
    load_private_key,
    public_from_text,
    public_text,
    write_private_key,
)
from gateway.evidence.verify import VerificationError, verify_file
from gateway.fronts.http.app import TOKENS_ENV, ServeSettings, SessionParts, Token, check_settings, load_tokens, serve
from gateway.fronts.http.peer import Principal
from gateway.fronts.hub_stdio import HubUpstream, run_hub_stdio
from gateway.fronts.stdio import RunSettings, rotation_manifest_path, run_stdio
from gateway.install import add_install_parser
from gateway.logs import configure_logging
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.lint import lint
from gateway.policy.model import PolicyError, PolicyFile, Rule, load_policy, policy_schema
from gateway.protocol.names import server_identity
from gateway.recording.cassette import CassetteWriter
from gateway.recording.fork import add_fork_parser
from gateway.recording.replay import add_replay_parser
from gateway.screening.descriptors import item_key
from gateway.screening.pins import Lock, ServerPins, compare
from gateway.session.hub import SEPARATOR
from gateway.upstream.child import ChildSpec, child_environment
from gateway.upstream.http import HttpSpec
from gateway.upstream.probe import list_remote_server, list_server


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _remote_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a remote upstream (of `run`, `serve` and `pin`)."""
    parser.add_argument("--url", help="a remote upstream MCP server (instead of '-- CMD')")
    parser.add_argument("--url-env", metavar="VAR", help="as --url, the URL read from environment variable VAR (a URL holding a token)")
    parser.add_argument("--transport", choices=["streamable-http", "sse"], default="streamable-http", help="transport of --url")
    parser.add_argument("--header", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="HTTP header for --url")
    parser.add_argument("--header-env", action="append", default=[], type=_env_pair, metavar="NAME=VAR",
                        help="HTTP header for --url whose value is in environment variable VAR (never logged)")  # fmt: skip
    parser.add_argument("--bearer-env", metavar="VAR", help="send 'Authorization: Bearer $VAR' to --url (the token is never logged)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="--url: how long a request may wait for an answer (default 30)")


def _upstream_options(parser: argparse.ArgumentParser) -> None:
    """The options of `run` and `serve`: the upstream, the policy, logging and the flight log."""
    parser.add_argument("--config", type=Path, help="gateway config file (TOML)")
    parser.add_argument("--upstream", metavar="NAME", help="which [upstreams.NAME] of the config to run")
    parser.add_argument("--policy", type=Path, help="policy file (TOML; default: policies/default.toml)")
    parser.add_argument("--lock", type=Path, help="descriptor lockfile written by 'airlock pin' (default: pin on first sight, per session)")
    parser.add_argument("--name", help="the server's name in rules and pins (default: the config's upstream name, else its own name)")
    parser.add_argument("--deny", action="append", default=[], metavar="TOOL", help="refuse and hide this tool, before any rule")
    parser.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="set a variable for the upstream")
    parser.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of the gateway's environment to the upstream",
    )
    parser.add_argument("--cwd", help="working directory of the upstream")
    _remote_options(parser)
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
    parser.add_argument("--redact", action="append", default=[], metavar="PATH",
                        help="in the cassette, replace this field (e.g. params.arguments.password) by a stable placeholder")  # fmt: skip
    parser.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock", description="MCP Airlock: a security gateway for MCP servers.")
    parser.add_argument("--version", action="version", version=f"airlock {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="wrap a stdio MCP server: airlock run [options] -- CMD [ARG...]",
        description="Run CMD as the upstream MCP server and relay this process's stdio to it, mediated.",
    )
    run.add_argument("--all", action="store_true",
                     help="serve every [upstreams.NAME] of --config as one server (tools NAME__TOOL), with one label state")  # fmt: skip
    _upstream_options(run)
    run.set_defaults(handler=cmd_run)

    serve = commands.add_parser(
        "serve",
        help="serve a stdio MCP server over streamable HTTP: airlock serve [options] -- CMD [ARG...]",
        description="Expose CMD over streamable HTTP; every MCP session gets its own upstream process, label state and "
        "flight-log file. Bearer tokens are required (loopback may opt out with --insecure-no-auth).",
    )
    serve.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8080)")
    serve.add_argument("--path", default="/mcp", help="the MCP endpoint path (default /mcp)")
    serve.add_argument("--token-file", type=Path, help=f"bearer tokens, one ID:TOKEN per line (or ${TOKENS_ENV}: ID:TOKEN,...)")
    serve.add_argument("--insecure-no-auth", action="store_true", help="UNSAFE: no authentication (refused beyond loopback)")
    serve.add_argument("--allow-host", action="append", default=[], metavar="HOST[:PORT]", help="accepted Host header (repeatable)")
    serve.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN", help="accepted Origin header (repeatable)")
    serve.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body accepted")
    serve.add_argument("--max-sessions", type=int, default=100, help="most sessions open at once")
    serve.add_argument("--rate", type=float, default=0.0, metavar="PER_SECOND", help="per-token request rate limit (0: off)")
    serve.add_argument("--burst", type=int, default=20, help="per-token burst allowed above --rate")
    serve.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    serve.add_argument("--tls-client-ca", type=Path, help="require client certificates signed by this CA (mTLS)")
    serve.add_argument("--sse-path", metavar="PATH", help="also serve the legacy HTTP+SSE transport here (e.g. /sse; messages: /messages/)")
    serve.add_argument("--json-responses", action="store_true",
                       help="answer POSTs with JSON, not SSE: faster, but no progress/sampling/logging during a call")  # fmt: skip
    serve.add_argument("--resume-events", type=int, default=1024, metavar="N",
                       help="SSE events kept per session for clients resuming with Last-Event-ID (0: off; default 1024)")  # fmt: skip
    _upstream_options(serve)
    serve.set_defaults(handler=cmd_serve)

    keygen = commands.add_parser("keygen", help="make a signing key (--out K) or print a key's public half (--public K)")
    which = keygen.add_mutually_exclusive_group(required=True)
    which.add_argument("--out", type=Path, help="write a new private key here (mode 0600; never overwrites)")
    which.add_argument("--public", type=Path, metavar="K", help="print the public key of private key file K")
    keygen.set_defaults(handler=cmd_keygen)

    key_cmd = commands.add_parser("key", help="key management")
    key_commands = key_cmd.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    rotate = key_commands.add_parser("rotate", help="replace a key file with a new key, and write a hand-over manifest signed by both")
    rotate.add_argument("--key", type=Path, required=True, help="the current private key file (replaced in place)")
    rotate.set_defaults(handler=cmd_key_rotate)

    verify = commands.add_parser("verify", help="verify a flight log offline (exit 0 only for an intact, sealed log)")
    verify.add_argument("log", type=Path, help="a flight log (or, with --receipt, a receipt file)")
    verify.add_argument("--receipt", action="store_true", help="LOG is one receipt from 'airlock inspect --receipt'")
    verify.add_argument("--public-key", help="the expected signer: a file or text 'ed25519:BASE64' (or PEM)")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.set_defaults(handler=cmd_verify)

    inspect = commands.add_parser("inspect", help="print a flight log as a table or JSON lines")
    inspect.add_argument("log", type=Path)
    inspect.add_argument("--session")
    inspect.add_argument("--tool")
    inspect.add_argument("--decision", choices=["allow", "deny", "shadow-deny"])
    inspect.add_argument("--kind")
    inspect.add_argument("--json", action="store_true", help="one JSON entry per line")
    inspect.add_argument("--show-raw", action="store_true", help="also print stored raw arguments and results")
    inspect.add_argument("--receipt", type=int, metavar="SEQ", help="print entry SEQ as a standalone, verifiable receipt")
    inspect.set_defaults(handler=cmd_inspect)

    pin = commands.add_parser("pin", help="write (or with --diff, compare) the descriptor lockfile of the upstream(s)")
    pin.add_argument("--config", type=Path, help="gateway config file: pins every [upstreams.NAME] (or the one --upstream names)")
    pin.add_argument("--upstream", metavar="NAME", help="which [upstreams.NAME] of the config to pin")
    pin.add_argument("--name", help="the server's name in the lockfile (default: the config's name, else its own name)")
    pin.add_argument("--lock", type=Path, default=Path("airlock.lock"), help="the lockfile (default: ./airlock.lock)")
    pin.add_argument("--diff", action="store_true", help="show what changed, field by field, and write nothing (exit 4 on changes)")
    pin.add_argument("--env", action="append", default=[], type=_env_pair, metavar="NAME=VALUE", help="set a variable for the upstream")
    pin.add_argument("--pass-env", action="append", default=[], metavar="NAME", help="pass this variable to the upstream")
    pin.add_argument("--cwd", help="working directory of the upstream")
    _remote_options(pin)
    pin.add_argument("upstream_command", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    pin.set_defaults(handler=cmd_pin)

    policy = commands.add_parser("policy", help="check a policy file, or print its JSON Schema")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")
    check = policy_commands.add_parser("check", help="validate and lint a policy (exit 2 when invalid)")
    check.add_argument("policy", type=Path)
    check.add_argument("--lock", type=Path, help="also report rules naming tools no pinned server has")
    check.set_defaults(handler=cmd_policy_check)
    schema = policy_commands.add_parser("schema", help="print the policy file's JSON Schema (for editors)")
    schema.set_defaults(handler=cmd_policy_schema)

    add_install_parser(commands)
    add_replay_parser(commands)
    add_fork_parser(commands)

    demo = commands.add_parser("demo", help="run the gateway against a built-in demo server and show what it does")
    demo.set_defaults(handler=cmd_demo)
    return parser


def _upstream_spec(args: argparse.Namespace, config: GatewayConfig) -> tuple[ChildSpec, str | None]:
    """The upstream to start, and its configured name (None for a bare command line)."""
    argv = list(args.upstream_command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if argv:
        return ChildSpec(tuple(argv), child_environment(args.pass_env, dict(args.env)), args.cwd), None
    name = args.upstream
    upstream = config.upstream(name)
    if upstream is None:
        raise ConfigError("no upstream server given: use 'airlock run -- CMD [ARG...]' or name one in --config")
    if name is None:
        name = next(iter(config.upstreams))
    if upstream.command is None:
        raise ConfigError(f"[upstreams.{name}] is a remote server (url): this command needs a local one ('-- CMD' or a 'command')")
    env = {**upstream.env, **dict(args.env)}
    spec = ChildSpec((upstream.command, *upstream.args), child_environment([*upstream.pass_env, *args.pass_env], env),
                     args.cwd or upstream.cwd)  # fmt: skip
    return spec, name


def _given_url(args: argparse.Namespace) -> str | None:
    """The remote URL the command line names: `--url`, or the value of `--url-env`'s variable."""
    if not args.url_env:
        return args.url  # type: ignore[no-any-return]
    if args.url:
        raise ConfigError("give --url or --url-env, not both")
    url = os.environ.get(args.url_env)
    if not url:
        raise ConfigError(f"--url-env {args.url_env}: that environment variable is not set or empty")
    return url


def _http_spec(args: argparse.Namespace, config: GatewayConfig) -> tuple[HttpSpec, str | None] | None:
    """A remote upstream: `--url`, or a config upstream with `url`; headers from the config and
    --header, secret ones from the environment variables that `headers_env`/--header-env and
    `bearer_env`/--bearer-env name (values never logged). None: the upstream is a command."""
    name: str | None = None
    configured = None
    given = _given_url(args)
    if given is None:
        if args.upstream_command and [a for a in args.upstream_command if a != "--"]:
            return None
        configured = config.upstream(args.upstream) if config.upstreams else None
        if configured is None or configured.url is None:
            return None
        name = args.upstream or next(iter(config.upstreams))
    elif args.upstream_command and [a for a in args.upstream_command if a != "--"]:
        raise ConfigError("give either --url (a remote upstream) or '-- CMD' (a local one), not both")
    url = given or (configured.url if configured is not None else None)
    assert url is not None
    where = ("--url-env " + args.url_env if args.url_env else "--url") if given else f"[upstreams.{name}] url"
    if not url.startswith(("http://", "https://")):
        shown = url if "?" not in url and "@" not in url else url.split("//", 1)[0] + "//..."  # never echo a token
        raise ConfigError(f"{where} {shown!r}: give an http:// or https:// URL")
    headers = {**(configured.headers if configured is not None else {}), **dict(args.header)}
    from_env = {**(configured.headers_env if configured is not None else {}), **dict(args.header_env)}
    bearer = args.bearer_env or (configured.bearer_env if configured is not None else None)
    for header, variable in [*from_env.items(), *([("Authorization", bearer)] if bearer else [])]:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"the {header} header comes from environment variable {variable}, which is not set or empty")
        headers[header] = value if header != "Authorization" or variable != bearer else f"Bearer {value}"
    transport = args.transport if given or configured is None else configured.transport
    timeout = args.timeout if args.timeout is not None else (configured.timeout if configured is not None else 30.0)
    if not 0 < timeout <= 3600:
        raise ConfigError(f"--timeout {timeout}: give seconds between 0 and 3600")
    return HttpSpec(url, transport, headers, timeout=timeout), name


def _settings_from(args: argparse.Namespace) -> tuple[RunSettings, GatewayConfig, str | None]:
    config = load_config(args.config) if args.config else GatewayConfig()
    section = config.gateway
    remote = _http_spec(args, config)
    http = remote[0] if remote is not None else None
    if remote is not None:
        spec, name = ChildSpec((remote[0].display,), {}, None), remote[1]  # the display form: no query, no user part
    else:
        spec, name = _upstream_spec(args, config)
    settings = RunSettings(
        upstream=spec,
        upstream_http=http,
        max_message_bytes=_positive(args.max_message_bytes, section.max_message_bytes, "--max-message-bytes"),
        max_in_flight=_positive(args.max_in_flight, section.max_in_flight, "--max-in-flight"),
        shutdown_grace=section.shutdown_grace if args.shutdown_grace is None else max(0.0, args.shutdown_grace),
    )
    return settings, config, name


DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


def load_run_policy(path: Path | None, deny: Sequence[str] = ()) -> CompiledPolicy:
    """The policy `airlock run` enforces: the file (default: policies/default.toml), with one
    deny rule per --deny name in front of its rules.

    Raises:
        PolicyError: unreadable or invalid (the gateway then does not start: fail closed).
    """
    if path is None:
        if not DEFAULT_POLICY.is_file():
            raise PolicyError(f"no --policy given and the default policy {DEFAULT_POLICY} is missing; pass --policy FILE")
        path = DEFAULT_POLICY
    policy = load_policy(path)
    if deny:
        rules = [
            Rule(
                id=f"cli.deny.{index}",
                tools=[f"*.{name}"],
                action="deny",
                mode=None,
                reason=f"tool {name!r} is on the gateway's deny list (remove --deny {name} to allow it)",
            )
            for index, name in enumerate(deny, 1)
        ]
        policy = PolicyFile.model_validate({**policy.model_dump(by_alias=True, exclude_unset=True),
                                            "rules": [*rules, *policy.rules]})  # fmt: skip
    return CompiledPolicy.from_file(policy)


def _positive(flag: int | None, configured: int, name: str) -> int:
    if flag is None:
        return configured
    if flag < 1:
        raise ConfigError(f"{name} must be a positive integer, got {flag}")
    return flag


def _key_path(args: argparse.Namespace, section: FlightLogSection) -> Path | None:
    from_env = os.environ.get(KEY_FILE_ENV)
    path = args.key or (Path(section.key) if section.key else None) or (Path(from_env) if from_env else None)
    return path.expanduser() if path is not None else None


def _signing_key(args: argparse.Namespace, section: FlightLogSection) -> tuple[Ed25519PrivateKey, bool]:
    """The key named by --key, the config, or $AIRLOCK_KEY_FILE; or an ephemeral one if asked.

    Raises:
        ConfigError: no key anywhere (there is no built-in key).
    """
    if args.ephemeral_key:
        key = generate_key()
        structlog.get_logger("airlock").warning(
            "signing with an EPHEMERAL key: the log proves nothing to anyone who did not see this public key",
            public_key=public_text(key.public_key()),
            key_id=key_id(key.public_key()),
        )
        return key, True
    path = (
        args.key
        or (Path(section.key) if section.key else None)
        or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
    )
    if path is None:
        raise ConfigError(
            "a flight log needs a signing key and there is no built-in one: make one with "
            "'airlock keygen --out KEY' and pass --key KEY (or set [flight_log] key, or $AIRLOCK_KEY_FILE), "
            "or pass --ephemeral-key for a throwaway key"
        )
    return load_private_key(path), False


def _open_flight_log(args: argparse.Namespace, config: GatewayConfig, policy_hash: str,
                     extra: dict[str, Any] | None = None, session: str | None = None) -> FlightLog | None:  # fmt: skip
    section = config.flight_log
    path = args.log or (Path(section.path).expanduser() if section.path else None)
    if path is None:
        if args.key or args.ephemeral_key:
            raise ConfigError("--key/--ephemeral-key without a flight log: add --log FILE_OR_DIRECTORY")
        structlog.get_logger("airlock").warning("no flight log: decisions are not recorded (add --log DIR and --key KEY)")
        return None
    key, ephemeral = _signing_key(args, section)
    settings = LogSettings(path=path, fsync=args.fsync or section.fsync, group_entries=section.group_entries,
                           group_ms=section.group_ms, store_raw=args.store_raw or section.store_raw)  # fmt: skip
    flight_log = FlightLog.open(settings, key, policy_hash=policy_hash, session=session)
    flight_log.start(__version__, ephemeral=ephemeral, extra=extra)
    structlog.get_logger("airlock").info("flight log opened", path=str(flight_log.path), key_id=flight_log.key_id)
    return flight_log


def _gateway_setup(args: argparse.Namespace) -> tuple[RunSettings, GatewayConfig, str | None, CompiledPolicy, Path | None, Lock | None]:
    """What `run` and `serve` share: the upstream settings, logging, the policy and the lock."""
    settings, config, upstream_name = _settings_from(args)
    return (settings, config, upstream_name, *_policy_and_lock(args, config))


def _policy_and_lock(args: argparse.Namespace, config: GatewayConfig) -> tuple[CompiledPolicy, Path | None, Lock | None]:
    """Logging configured; the policy, the lockfile's path and its pins (flags win over the config)."""
    configure_logging(args.log_level or config.gateway.log_level, args.log_format or config.gateway.log_format)
    section = config.gateway
    policy = load_run_policy(args.policy or (Path(section.policy).expanduser() if section.policy else None), [*section.deny, *args.deny])
    lock_path = args.lock or (Path(section.lock).expanduser() if section.lock else None)
    lock = Lock.load(lock_path) if lock_path is not None else None
    return policy, lock_path, lock


def _tofu_saver(policy: CompiledPolicy, lock: Lock | None, lock_path: Path | None) -> Callable[[str, ServerPins], None] | None:
    """Under trust-on-first-use with a lockfile: what saves it when a session pins something new."""
    if lock is None or lock_path is None or policy.source.pins.unpinned != "trust-on-first-use":
        return None

    def on_new_pins(identity: str, pins: ServerPins) -> None:
        lock.save(lock_path)
        structlog.get_logger("airlock").warning("trust on first use: new descriptors pinned", server=identity, lock=str(lock_path))

    return on_new_pins


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
    policy, lock_path, lock = _policy_and_lock(args, config)
    on_new_pins = _tofu_saver(policy, lock, lock_path)
    flight_log = _open_flight_log(args, config, policy.hash, extra={"upstreams": sorted(config.upstreams)})
    provenance = None  # one label state for the whole session, shared by every upstream's mediator
    upstreams: list[HubUpstream] = []
    for name in sorted(config.upstreams):
        args.upstream = name
        settings, _, _ = _settings_from(args)
        identity = server_identity(name)
        if SEPARATOR in identity or identity.endswith("_"):
            raise ConfigError(f"[upstreams.{name}]: with --all, tools are named SERVER{SEPARATOR}TOOL: rename it without {SEPARATOR!r}")
        mediator = PolicyMediator(policy, identity=identity, lock=lock, on_new_pins=on_new_pins, flight_log=flight_log,
                                  store_raw=args.store_raw or config.flight_log.store_raw, provenance=provenance)  # fmt: skip
        provenance = mediator.provenance
        upstreams.append(HubUpstream(identity, settings, mediator))
    limit = upstreams[0].settings.max_message_bytes
    return _logged_run(flight_log, lambda: asyncio.run(run_hub_stdio(upstreams, flight_log=flight_log, max_message_bytes=limit)))


def _logged_run(flight_log: FlightLog | None, body: Callable[[], int], cleanup: Callable[[], None] | None = None) -> int:
    """Run the gateway: a gateway error seals the log with its message; any other end leaves an
    unsealed log unsealed (verify says so)."""
    try:
        return body()
    except GatewayError as error:
        if flight_log is not None:
            flight_log.close(f"gateway stopped: {error.message}")
        raise
    finally:
        if cleanup is not None:
            cleanup()
        if flight_log is not None:
            flight_log.abandon()  # no-op after a seal


def cmd_run(args: argparse.Namespace) -> int:
    if args.all:
        return _run_all(args)
    settings, config, upstream_name, policy, lock_path, lock = _gateway_setup(args)
    on_new_pins = _tofu_saver(policy, lock, lock_path)
    flight_log = _open_flight_log(args, config, policy.hash)
    given: str | None = args.name or upstream_name
    mediator = PolicyMediator(
        policy,
        identity=server_identity(given) if given else None,
        fallback_identity=server_identity(Path(settings.upstream.argv[0]).name),
        lock=lock,
        on_new_pins=on_new_pins,
        flight_log=flight_log,
        store_raw=args.store_raw or config.flight_log.store_raw,
    )
    recorder = None
    if args.record is not None:
        fallback = server_identity(Path(settings.upstream.argv[0]).name)
        recorder = CassetteWriter(args.record, redact=args.redact, server=server_identity(given) if given else None,
                                  fallback_server=fallback, policy_hash=policy.hash)  # fmt: skip

    def relay() -> int:
        key_path = None if args.ephemeral_key else _key_path(args, config.flight_log)
        return asyncio.run(run_stdio(settings, mediator, flight_log=flight_log, key_path=key_path, recorder=recorder))

    return _logged_run(flight_log, relay, recorder.close if recorder is not None else None)


def _tokens(args: argparse.Namespace) -> tuple[Token, ...]:
    if args.token_file is not None:
        return load_tokens(args.token_file)
    raw = os.environ.get(TOKENS_ENV)
    if not raw:
        return ()
    tokens = []
    for index, item in enumerate(raw.split(","), 1):
        token_id, sep, secret = item.strip().partition(":")
        if not sep:
            token_id, secret = f"t{index}", token_id
        if len(secret) < 16:
            raise ConfigError(f"${TOKENS_ENV}: token {index} is shorter than 16 characters")
        tokens.append(Token(token_id, secret.encode()))
    return tuple(tokens)


def cmd_serve(args: argparse.Namespace) -> int:
    settings, config, upstream_name, policy, lock_path, lock = _gateway_setup(args)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {args.listen!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    serve_settings = ServeSettings(
        upstream=settings.upstream, upstream_http=settings.upstream_http, host=host.strip("[]"), port=int(port), path=args.path,
        tokens=_tokens(args),
        allow_unauthenticated=args.insecure_no_auth, allowed_hosts=tuple(args.allow_host), allowed_origins=tuple(args.allow_origin),
        max_body_bytes=args.max_body_bytes, max_message_bytes=settings.max_message_bytes, max_sessions=args.max_sessions,
        rate=args.rate, burst=args.burst, tls_cert=args.tls_cert, tls_key=args.tls_key, tls_client_ca=args.tls_client_ca,
        json_responses=args.json_responses, sse_path=args.sse_path, resume_events=args.resume_events,
    )  # fmt: skip
    check_settings(serve_settings)
    given: str | None = args.name or upstream_name
    log_dir = args.log or (Path(config.flight_log.path).expanduser() if config.flight_log.path else None)
    if log_dir is not None and not log_dir.is_dir():
        raise ConfigError(f"--log {log_dir}: airlock serve writes one file per session: give an existing directory")

    record_dir: Path | None = args.record
    if record_dir is not None and not record_dir.is_dir():
        raise ConfigError(f"--record {record_dir}: airlock serve records one cassette per session: give an existing directory")
    fallback = server_identity(Path(settings.upstream.argv[0]).name)

    def make_session(session: str, principal: Principal, transport: str) -> SessionParts:
        # Each session: its own mediator (label state, pins of its first listing), log file and
        # cassette. The log's genesis names who opened it: the token id (never the token) and,
        # under mTLS, the client certificate's subject and fingerprint.
        session_lock = Lock.from_json(lock.to_json(), str(lock_path)) if lock is not None else None
        flight_log = (_open_flight_log(args, config, policy.hash, extra=principal.describe(), session=session)
                      if log_dir is not None else None)  # fmt: skip
        recorder = None
        if record_dir is not None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            recorder = CassetteWriter(record_dir / f"airlock-{stamp}-{session}.cassette.jsonl", redact=args.redact,
                                      server=server_identity(given) if given else None, fallback_server=fallback,
                                      policy_hash=policy.hash, session=session, transport=transport)  # fmt: skip
        mediator = PolicyMediator(
            policy,
            identity=server_identity(given) if given else None,
            fallback_identity=server_identity(Path(settings.upstream.argv[0]).name),
            lock=session_lock,
            flight_log=flight_log,
            store_raw=args.store_raw or config.flight_log.store_raw,
        )
        return SessionParts(mediator, flight_log, recorder)

    return asyncio.run(serve(serve_settings, make_session))


def cmd_pin(args: argparse.Namespace) -> int:
    configure_logging("warning")
    config = load_config(args.config) if args.config else GatewayConfig()
    argv = [a for a in args.upstream_command if a != "--"] if args.upstream_command else []

    def target() -> tuple[ChildSpec | HttpSpec, str | None]:
        remote = _http_spec(args, config)
        return remote if remote is not None else _upstream_spec(args, config)

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
        listing = asyncio.run(list_remote_server(spec) if isinstance(spec, HttpSpec) else list_server(spec))
        given = args.name or configured or listing.server_name
        identity = server_identity(given) if given else None
        identity = identity or server_identity(Path(spec.display if isinstance(spec, HttpSpec) else spec.argv[0]).name)
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


def cmd_policy_check(args: argparse.Namespace) -> int:
    policy = CompiledPolicy.from_file(load_policy(args.policy))
    lock = Lock.load(args.lock) if args.lock else None
    findings = lint(policy, lock)
    for finding in findings:
        print(f"{args.policy}: warning: {finding.kind}: {finding.message}")
    print(f"{args.policy}: valid, {len(policy.rules)} rule(s), policy hash {policy.hash}, {len(findings)} warning(s)")
    return EXIT_OK


def cmd_policy_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(orjson.dumps(policy_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.public is not None:
        public = load_private_key(args.public).public_key()
        print(public_text(public))
        return EXIT_OK
    key = generate_key()
    write_private_key(args.out, key)
    print(f"wrote {args.out} (mode 0600); key id {key_id(key.public_key())}", file=sys.stderr)
    print(public_text(key.public_key()))
    return EXIT_OK


def cmd_key_rotate(args: argparse.Namespace) -> int:
    old = load_private_key(args.key)
    new = generate_key()
    manifest = make_manifest(old, new, timestamp(utc_now()))
    manifest_path = rotation_manifest_path(args.key)
    staged = args.key.with_name(args.key.name + ".next")
    write_private_key(staged, new)
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, manifest_path)
    os.replace(staged, args.key)
    print(f"rotated {args.key}: {manifest['old_key_id']} -> {manifest['new_key_id']}; manifest {manifest_path}", file=sys.stderr)
    print("running gateways switch on SIGHUP (kill -HUP PID); new runs use the new key", file=sys.stderr)
    print(public_text(new.public_key()))
    return EXIT_OK


def _pinned_key(text: str | None) -> Ed25519PublicKey | None:
    if text is None:
        return None
    candidate = Path(text)
    if not text.startswith("ed25519:") and candidate.exists():
        try:
            text = candidate.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read public key file {candidate}: {exc.strerror}") from None
    return public_from_text(text)


def cmd_verify(args: argparse.Namespace) -> int:
    pinned = _pinned_key(args.public_key)
    if args.receipt:
        return _verify_receipt_file(args.log, pinned, args.json)
    try:
        report = verify_file(args.log, pinned)
    except VerificationError as error:
        if args.json:
            detail = error.report.to_json() if error.report else {}
            print(orjson.dumps({"ok": False, "error": error.kind, "exit_code": error.exit_code, "line": error.line,
                                "message": error.message, **detail}).decode())  # fmt: skip
        else:
            print(f"airlock verify: {error.kind}: {error.message}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(orjson.dumps({"ok": True, "error": None, "exit_code": 0, **report.to_json()}).decode())
    else:
        pin = "pinned key" if report.key_pinned else "key from the log's genesis entry (pass --public-key to pin it)"
        print(f"OK: {report.entries} entries, sealed, every entry signed; signer {report.key_id} ({pin})")
        if report.ephemeral:
            print("warning: the log was signed with an ephemeral key", file=sys.stderr)
        print("decisions: " + (", ".join(f"{k} {v}" for k, v in sorted(report.decisions.items())) or "none"))
    return EXIT_OK


def _verify_receipt_file(path: Path, pinned: Ed25519PublicKey | None, as_json: bool) -> int:
    try:
        receipt = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read receipt {path}: {exc}") from None
    try:
        entry = verify_receipt(receipt, pinned)
    except VerificationError as error:
        if as_json:
            print(orjson.dumps({"ok": False, "error": error.kind, "exit_code": error.exit_code, "message": error.message}).decode())
        else:
            print(f"airlock verify: {error.kind}: {error.message}", file=sys.stderr)
        return error.exit_code
    summary = {"ok": True, "seq": entry["seq"], "kind": entry["kind"], "tool": entry["tool"], "decision": entry["decision"]}
    print(orjson.dumps(summary).decode() if as_json else f"OK: receipt for entry {entry['seq']} ({entry['kind']}) verifies on its own")
    return EXIT_OK


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.receipt is not None:
        try:
            data = args.log.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.log}: {exc.strerror}") from None
        receipt = extract_receipt(data.splitlines(), args.receipt)
        print(orjson.dumps(redact_receipt(receipt, args.show_raw), option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    wanted = EntryFilter(session=args.session, tool=args.tool, decision=args.decision, kind=args.kind)
    try:
        stream = open(args.log, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot read {args.log}: {exc.strerror}") from None
    with stream:
        if not args.json:
            print(table_header())
        for number, entry in read_entries(stream):
            if entry is None:
                print(f"line {number}: not a JSON object (run 'airlock verify')", file=sys.stderr)
                continue
            if not wanted.accepts(entry):
                continue
            shown = redact(entry, args.show_raw)
            print(orjson.dumps(shown).decode() if args.json else table_row(shown))
    return EXIT_OK


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
    except BrokenPipeError:
        # The reader went away (e.g. `airlock inspect LOG | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception:
        structlog.get_logger("airlock").exception("internal error; please report it with the traceback above")
        return EXIT_INTERNAL
