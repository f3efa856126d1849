"""Helpers shared by the unit tests: files written for a test, and policy mediators for tests that
drive the relay without a real upstream listing.

`PolicyMediator` refuses a `tools/call` for a tool it has neither seen in this session's
`tools/list` nor found pinned in the lockfile (rule `pins.unknown-tool`). Tests that are about
something else (the relay, the flight log, a deny rule) pin the tools they call, so that what
decides the call is the thing under test and not the missing listing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.evidence.flightlog import FlightLog
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy
from gateway.screening.pins import Lock

SERVER = "srv"


def write_file(path: Path, text: str | bytes) -> Path:
    """`path`, holding `text` (UTF-8) or exactly the bytes given."""
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


#: An input schema that declares no `properties`: any arguments fit it.
ANY_ARGUMENTS: dict[str, Any] = {"type": "object"}


def compiled(raw: dict[str, Any]) -> CompiledPolicy:
    """A policy from its TOML-equivalent dict (`version` defaults to 1)."""
    return CompiledPolicy.from_file(parse_policy({"version": 1, **raw}, "test"))


def allow_all() -> CompiledPolicy:
    return compiled({"default": "allow"})


def deny_rule(rule_id: str, *tools: str) -> CompiledPolicy:
    """Allows everything except the `tools` (server-qualified globs), which rule `rule_id` denies."""
    return compiled({"default": "allow", "rules": [{"id": rule_id, "tools": list(tools), "action": "deny"}]})


def pinned_lock(names: Iterable[str], *, server: str = SERVER, input_schema: dict[str, Any] | None = None) -> Lock:
    """A lockfile pinning a tool of each name on `server` (schema: any arguments)."""
    lock = Lock()
    pins = lock.server(server)
    for name in names:
        pins.put("tools", name, {"name": name, "inputSchema": dict(input_schema if input_schema is not None else ANY_ARGUMENTS)})
    return lock


def policy_mediator(
    policy: CompiledPolicy | None = None,
    *,
    pinned: Iterable[str] | None = None,
    server: str = SERVER,
    flight_log: FlightLog | None = None,
) -> PolicyMediator:
    """A `PolicyMediator` for `server` (default policy: allow everything).

    `pinned`: a lockfile pins the tools so named, so they can be called without a `tools/list`
    first (and, the default `[pins] unpinned = "block"` applying, a listed tool it does not pin is
    withheld). None: no lockfile; the session pins what it is first shown and only listed tools
    can be called."""
    return PolicyMediator(
        policy if policy is not None else allow_all(),
        identity=server,
        lock=pinned_lock(pinned, server=server) if pinned is not None else None,
        flight_log=flight_log,
    )
