"""`airlock serve`: the upstream over streamable HTTP (and legacy SSE), one session per client.

Label state: a stateful session (`initialize`, then `Mcp-Session-Id`) has its own, as on stdio.
A stateless request (no `Mcp-Session-Id`, not `initialize`: every request of a 2026-07-28
client) belongs to its principal (the bearer token's id and, under mTLS, the client
certificate): all of one principal's stateless requests share one label state and one pooled
upstream (`gateway.fronts.http.pool`), so a secret read in one request cannot be sent out in
the next by simply not keeping a session. Two principals never share a pool or a label state.

The pool is a session for `--max-sessions` (it takes a place), `--session-idle-timeout` (closed
with its upstream, its flight log sealed) and making room at the cap; the next stateless
request of the principal starts a new pool (a new upstream, a new flight-log file) that
continues the principal's label state. That state lives as long as this `airlock serve`: a
principal cannot wash its taint away by waiting, by opening sessions until its pool is closed
to make room, or by killing its upstream. The conservative consequence: one conversation's
private read taints every other stateless conversation of the same principal; give separate
tokens to callers whose data must not mix, or use stateful sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.cli.compose import gateway_setup, make_mediator, open_flight_log, server_names
from gateway.cli.options import upstream_options
from gateway.errors import ConfigError
from gateway.fronts.http.auth import TOKENS_ENV, check_settings, load_tokens
from gateway.fronts.http.settings import DEFAULT_IDLE_TIMEOUT, ServeSettings, Token
from gateway.labels.provenance import Provenance
from gateway.recording.cassette import CassetteWriter
from gateway.screening.pins import Lock

if TYPE_CHECKING:
    from gateway.fronts.http.peer import Principal
    from gateway.fronts.http.session import SessionParts


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve a stdio MCP server over streamable HTTP: airlock serve [options] -- CMD [ARG...]",
        description="Expose CMD over streamable HTTP; every MCP session gets its own upstream process, label state and "
        "flight-log file; stateless (2026-07-28) requests share one per principal (bearer token, client certificate). "
        "Bearer tokens are required (loopback may opt out with --insecure-no-auth).",
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
    serve.add_argument(
        "--json-responses",
        action="store_true",
        help="answer POSTs with JSON, not SSE: faster, but no progress/sampling/logging during a call",
    )
    serve.add_argument(
        "--resume-events",
        type=int,
        default=1024,
        metavar="N",
        help="SSE events kept per session for clients resuming with Last-Event-ID (0: off; default 1024)",
    )
    serve.add_argument(
        "--session-idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        metavar="SECONDS",
        help=f"close a session (and its upstream) after this long without a request (0: never; default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    upstream_options(serve)
    serve.set_defaults(handler=cmd_serve)


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
    # The HTTP front (uvicorn, starlette, the SDK's server transports) loads only for `serve`.
    from gateway.fronts.http.app import serve
    from gateway.fronts.http.session import SessionParts

    settings, config, upstream_name, policy, lock_path, lock = gateway_setup(args)
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--listen {args.listen!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    serve_settings = ServeSettings(
        upstream=settings.upstream,
        host=host.strip("[]"),
        port=int(port),
        path=args.path,
        tokens=_tokens(args),
        allow_unauthenticated=args.insecure_no_auth,
        allowed_hosts=tuple(args.allow_host),
        allowed_origins=tuple(args.allow_origin),
        max_body_bytes=args.max_body_bytes,
        max_message_bytes=settings.max_message_bytes,
        max_sessions=args.max_sessions,
        rate=args.rate,
        burst=args.burst,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        json_responses=args.json_responses,
        sse_path=args.sse_path,
        resume_events=args.resume_events,
        session_idle_timeout=args.session_idle_timeout,
    )
    check_settings(serve_settings)
    identity, fallback = server_names(args.name or upstream_name, settings)
    log_dir = args.log or (Path(config.flight_log.path).expanduser() if config.flight_log.path else None)
    if log_dir is not None and not log_dir.is_dir():
        raise ConfigError(f"--log {log_dir}: airlock serve writes one file per session: give an existing directory")

    record_dir: Path | None = args.record
    if record_dir is not None and not record_dir.is_dir():
        raise ConfigError(f"--record {record_dir}: airlock serve records one cassette per session: give an existing directory")

    def make_session(session: str, principal: Principal, transport: str, *, label_state: object | None = None) -> SessionParts:
        # Each session: its own mediator (label state, pins of its first listing), log file and
        # cassette. The log's genesis names who opened it: the token id (never the token) and,
        # under mTLS, the client certificate's subject and fingerprint. A principal's stateless
        # pool started again continues the label state of the one before (`label_state`).
        if label_state is not None and not isinstance(label_state, Provenance):
            raise TypeError(f"label_state must be a Provenance, not {type(label_state).__name__}")
        session_lock = Lock.from_json(lock.to_json(), str(lock_path)) if lock is not None else None
        flight_log = (
            open_flight_log(args, config, policy.hash, extra=principal.describe(), session=session) if log_dir is not None else None
        )
        recorder = None
        if record_dir is not None:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            recorder = CassetteWriter(
                record_dir / f"airlock-{stamp}-{session}.cassette.jsonl",
                redact=args.redact,
                server=identity,
                fallback_server=fallback,
                policy_hash=policy.hash,
                session=session,
                transport=transport,
            )
        mediator = make_mediator(
            args,
            config,
            policy,
            identity=identity,
            fallback_identity=fallback,
            lock=session_lock,
            flight_log=flight_log,
            provenance=label_state,
        )
        return SessionParts(mediator, flight_log, recorder, label_state=mediator.provenance)

    return asyncio.run(serve(serve_settings, make_session))
