"""Composition shared by `run`, `run --all`, `serve`, `replay` and `fork`: the policy (with
`--deny`), the lockfile and its trust-on-first-use saver, the signing key, the flight log, and the
run wrapper that seals the log on a gateway error."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway import __version__
from gateway.cli.upstreams import settings_from
from gateway.config import FlightLogSection, GatewayConfig
from gateway.errors import ConfigError, GatewayError
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import (
    KEY_FILE_ENV,
    generate_key,
    key_id,
    load_private_key,
    public_from_text,
    public_text,
)
from gateway.fronts.stdio import RunSettings
from gateway.labels.provenance import Provenance
from gateway.logs import configure_logging
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import PolicyError, PolicyFile, Rule, load_policy
from gateway.protocol.names import server_identity
from gateway.screening.pins import Lock, ServerPins

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
        policy = PolicyFile.model_validate({**policy.model_dump(by_alias=True, exclude_unset=True), "rules": [*rules, *policy.rules]})
    return CompiledPolicy.from_file(policy)


def signing_key_path(args: argparse.Namespace, section: FlightLogSection) -> Path | None:
    from_env = os.environ.get(KEY_FILE_ENV)
    path = args.key or (Path(section.key) if section.key else None) or (Path(from_env) if from_env else None)
    return path.expanduser() if path is not None else None


def signing_key(args: argparse.Namespace, section: FlightLogSection) -> tuple[Ed25519PrivateKey, bool]:
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


def open_flight_log(
    args: argparse.Namespace, config: GatewayConfig, policy_hash: str, extra: dict[str, Any] | None = None, session: str | None = None
) -> FlightLog | None:
    section = config.flight_log
    path = args.log or (Path(section.path).expanduser() if section.path else None)
    if path is None:
        if args.key or args.ephemeral_key:
            raise ConfigError("--key/--ephemeral-key without a flight log: add --log FILE_OR_DIRECTORY")
        structlog.get_logger("airlock").warning("no flight log: decisions are not recorded (add --log DIR and --key KEY)")
        return None
    key, ephemeral = signing_key(args, section)
    settings = LogSettings(
        path=path,
        fsync=args.fsync or section.fsync,
        group_entries=section.group_entries,
        group_ms=section.group_ms,
        store_raw=args.store_raw or section.store_raw,
    )
    flight_log = FlightLog.open(settings, key, policy_hash=policy_hash, session=session)
    flight_log.start(__version__, ephemeral=ephemeral, extra=extra)
    structlog.get_logger("airlock").info("flight log opened", path=str(flight_log.path), key_id=flight_log.key_id)
    return flight_log


def gateway_setup(args: argparse.Namespace) -> tuple[RunSettings, GatewayConfig, str | None, CompiledPolicy, Path | None, Lock | None]:
    """What `run` and `serve` share: the upstream settings, logging, the policy and the lock."""
    settings, config, upstream_name = settings_from(args)
    return (settings, config, upstream_name, *policy_and_lock(args, config))


def named_policy_and_lock(policy: Path, lock: Path | None) -> tuple[CompiledPolicy, Lock | None]:
    """The policy file and lockfile a command names by path (`replay`, `fork`, `policy check`):
    the file as it is (no default policy, no `--deny`), and the lock's pins if one is named.

    Raises:
        PolicyError, LockError: unreadable or invalid.
    """
    return CompiledPolicy.from_file(load_policy(policy)), (Lock.load(lock) if lock is not None else None)


def policy_and_lock(args: argparse.Namespace, config: GatewayConfig) -> tuple[CompiledPolicy, Path | None, Lock | None]:
    """Logging configured; the policy, the lockfile's path and its pins (flags win over the config)."""
    configure_logging(args.log_level or config.gateway.log_level, args.log_format or config.gateway.log_format)
    section = config.gateway
    policy = load_run_policy(args.policy or (Path(section.policy).expanduser() if section.policy else None), [*section.deny, *args.deny])
    lock_path = args.lock or (Path(section.lock).expanduser() if section.lock else None)
    lock = Lock.load(lock_path) if lock_path is not None else None
    return policy, lock_path, lock


def tofu_saver(policy: CompiledPolicy, lock: Lock | None, lock_path: Path | None) -> Callable[[str, ServerPins], None] | None:
    """Under trust-on-first-use with a lockfile: what saves it when a session pins something new."""
    if lock is None or lock_path is None or policy.source.pins.unpinned != "trust-on-first-use":
        return None

    def on_new_pins(identity: str, pins: ServerPins) -> None:
        lock.save(lock_path)
        structlog.get_logger("airlock").warning("trust on first use: new descriptors pinned", server=identity, lock=str(lock_path))

    return on_new_pins


def logged_run(flight_log: FlightLog | None, body: Callable[[], int], cleanup: Callable[[], None] | None = None) -> int:
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


def read_public_key(text: str | None, *, flag: str | None = None) -> Ed25519PublicKey | None:
    """The public key `text` gives: `ed25519:BASE64` or PEM text, or a file holding one; None for None.

    Raises:
        ConfigError: the file cannot be read; with `flag`, also a key that does not parse (named
            after the flag). Without `flag`, a key that does not parse raises `public_from_text`'s error.
    """
    if text is None:
        return None
    candidate = Path(text)
    if not text.startswith("ed25519:") and candidate.exists():
        try:
            text = candidate.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read public key file {candidate}: {exc.strerror}") from None
    if flag is None:
        return public_from_text(text)
    try:
        return public_from_text(text)
    except GatewayError as error:
        raise ConfigError(f"{flag}: {error.message}") from None


def server_names(given: str | None, settings: RunSettings) -> tuple[str | None, str]:
    """The server identity that rules and pins use (from `--name` or the config's upstream name;
    None: the server's own name, learnt at `initialize`), and the one to fall back to (the
    upstream command's file name, or the display form of its URL)."""
    return (server_identity(given) if given else None), server_identity(Path(settings.upstream.display).name)


def make_mediator(
    args: argparse.Namespace,
    config: GatewayConfig,
    policy: CompiledPolicy,
    *,
    identity: str | None,
    fallback_identity: str = "upstream",
    lock: Lock | None,
    flight_log: FlightLog | None,
    on_new_pins: Callable[[str, ServerPins], None] | None = None,
    provenance: Provenance | None = None,
) -> PolicyMediator:
    """The policy mediator of one upstream in one session, as every front builds it."""
    return PolicyMediator(
        policy,
        identity=identity,
        fallback_identity=fallback_identity,
        lock=lock,
        on_new_pins=on_new_pins,
        flight_log=flight_log,
        store_raw=args.store_raw or config.flight_log.store_raw,
        provenance=provenance,
    )
