"""Helpers shared by the unit tests: files written for a test, and policy mediators for tests that
drive the relay without a real upstream listing.

`PolicyMediator` refuses a `tools/call` for a tool it has neither seen in this session's
`tools/list` nor found pinned in the lockfile (rule `pins.unknown-tool`). Tests that are about
something else (the relay, the flight log, a deny rule) pin the tools they call, so that what
decides the call is the thing under test and not the missing listing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy
from gateway.screening.pins import Lock
from gateway.session.relay import Relay

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


class RelayedSession:
    """A real `Relay` and `PolicyMediator` (identity `identity`) whose upstream is the test: it
    has listed `tools`; `client` and `upstream` are what each side was sent, `entries` the
    flight log's entries (as JSON objects)."""

    def __init__(self, tmp_path: Path, policy: CompiledPolicy, *, identity: str, tools: list[dict[str, Any]]) -> None:
        self.entries: list[dict[str, Any]] = []
        self.log = FlightLog.open(LogSettings(path=tmp_path / "flight.jsonl"), generate_key(), policy_hash=None,
                                  inline_signing=True, on_entry=lambda e: self.entries.append(e.to_json()))  # fmt: skip
        self.log.start("test", ephemeral=True)
        self.mediator = PolicyMediator(policy, identity=identity, flight_log=self.log)
        self.client: list[dict[str, Any]] = []
        self.upstream: list[dict[str, Any]] = []
        self.relay = Relay(self.mediator, lambda b: self.client.append(orjson.loads(b)), lambda b: self.upstream.append(orjson.loads(b)))
        self._ids = itertools.count(100)
        self.exchange({"jsonrpc": "2.0", "id": "l", "method": "tools/list"}, {"tools": tools})
        self.client.clear()
        self.upstream.clear()

    def send(self, message: dict[str, Any]) -> None:
        self.relay.from_client(orjson.dumps(message))

    def reply(self, message: dict[str, Any]) -> None:
        self.relay.from_upstream(orjson.dumps(message))

    def exchange(self, request: dict[str, Any], result: Any) -> dict[str, Any]:
        """Send `request`; the upstream answers it with `result`; returns what the client got."""
        self.send(request)
        self.reply({"jsonrpc": "2.0", "id": self.upstream[-1]["id"], "result": result})
        return self.client[-1]

    def ask_client(self, method: str, params: dict[str, Any] | None) -> Any:
        """The upstream sends the client a request; returns the id the client sees."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": f"s{next(self._ids)}", "method": method}
        if params is not None:
            message["params"] = params
        self.reply(message)
        return self.client[-1]["id"]
