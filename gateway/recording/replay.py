"""Replay: run a cassette's client side through the real gateway against a mock upstream that
answers from the cassette, and compare every `tools/call` decision with the recorded one (or
with an expectations file).

The relay and the policy mediator are the live ones (`Relay`, `PolicyMediator`); only the
upstream is a stand-in. The cassette is walked in its recorded order: each `c2g` line is fed to
the relay; each `u2g` notification or server request is fed where it was recorded; each `u2g`
response is delivered where it was recorded, to the live request it matches. A live request
matches a recorded `g2u` request by method and params (`tools/call`: tool name and arguments;
ids are rewritten to the live id). A request the recording never sent (the gateway's own
listing, say) is answered by the last recorded response to the same method; a `tools/call` the
recording never forwarded (it was denied then, and the new policy allows it) cannot be answered:
it gets an error, and its row says `unanswerable`.

Deterministic: the flight log gets a fixed clock (one second per entry from 2026-01-01T00:00:00Z),
a fixed session id (from the cassette's digest), a key derived from a public seed and inline
signing, so two replays of one cassette under one policy write byte-identical logs. That key
proves nothing about who wrote the log: the genesis entry is marked `ephemeral` and `replay`.

What a recording cannot show: the rule of an allowed call, and whether a forwarded call was
`shadow-deny` rather than `allow` (only the flight log says so). Recorded outcomes are read from
the wire: forwarded (`allow`), refused with a rule (`deny`), refused otherwise (`refused`).
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import __version__
from gateway.errors import FLOW_DENIED, POLICY_DENIED, UPSTREAM_UNAVAILABLE, GatewayError
from gateway.evidence.entry import Decision as EntryDecision
from gateway.evidence.entry import Entry, TimestampSource, timestamp
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.protocol import jsonrpc, methods
from gateway.recording.cassette import Cassette
from gateway.recording.mock_upstream import MockUpstream as _MockUpstream
from gateway.recording.mock_upstream import id_key as _id_key
from gateway.recording.mock_upstream import is_response as _is_response
from gateway.recording.report import (
    CallRow,
    Difference,
    Outcome,
    ReplayReport,
    compare,
    labels_of,
    recorded_calls,
    wire_outcome,
)
from gateway.screening.pins import Lock
from gateway.session.wiring import wire_relay

#: Public on purpose: replay logs must be reproducible by anyone, so they prove nothing.
REPLAY_KEY_SEED: Final = b"mcp-airlock replay key/1 (public: proves nothing)"
REPLAY_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)

_CALL: Final = methods.TOOLS_CALL
_DENY_CODES: Final = frozenset({POLICY_DENIED, FLOW_DENIED})
_FORWARDED: Final = frozenset({"allow", "shadow-deny"})


def replay_signing_key() -> Ed25519PrivateKey:
    """The replay key: derived from a public seed, so anyone can reproduce a replay's log
    byte for byte. It proves nothing about who wrote that log."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(REPLAY_KEY_SEED).digest())


def fixed_clock(start: datetime = REPLAY_EPOCH) -> TimestampSource:
    """A clock that moves one second per reading, from `start`."""
    ticks = 0

    def now() -> str:
        nonlocal ticks
        moment = start + timedelta(seconds=ticks)
        ticks += 1
        return timestamp(moment)

    return now


# -- the decision tap -------------------------------------------------------------------------


class _Tap:
    """Sees every entry the flight log writes (its `on_entry`) and keeps what replay compares:
    each call's decision and rule, and descriptor listings' pin states. The entries written
    are exactly the live gateway's: the tap only reads them."""

    def __init__(self, *, lock_given: bool) -> None:
        self.decisions: dict[bytes, tuple[EntryDecision | None, str | None]] = {}
        #: A lockfile was given: a listed item it does not pin is drift.
        self.lock_given = lock_given
        self.drift: list[str] = []
        self.listed: dict[str, set[str]] = {}

    def __call__(self, entry: Entry) -> None:
        if entry.kind == "call" and entry.data.get("direction") is None:
            self.decisions[jsonrpc.encode(entry.request_id)] = (entry.decision, entry.rule)
        elif entry.kind == "descriptor":
            kind_listed = str(entry.data.get("list"))
            for item in entry.data.get("items") or ():
                name, pin = item.get("name"), item.get("pin")
                self.listed.setdefault(kind_listed, set()).add(str(name))
                if pin == "changed":
                    self.drift.append(
                        f"{entry.server} {kind_listed} {name}: changed since it was pinned "
                        f"(pinned {str(item.get('pinned_hash'))[:12]}, now {str(item.get('hash'))[:12]})"
                    )
                elif pin in ("new", "new-pinned") and self.lock_given:
                    self.drift.append(f"{entry.server} {kind_listed} {name}: not in the lockfile")


def _open_log(cassette: Cassette, policy: CompiledPolicy, log_path: Path | None, tap: _Tap) -> FlightLog:
    key = replay_signing_key()
    session = cassette.digest[:32]
    clock = fixed_clock()
    if log_path is None:
        fd = os.open(os.devnull, os.O_WRONLY)
        flight_log = FlightLog(
            fd, Path(os.devnull), key, session=session, policy_hash=policy.hash, fsync="off", clock=clock, inline_signing=True, on_entry=tap
        )
    else:
        flight_log = FlightLog.open(
            LogSettings(log_path, fsync="off"),
            key,
            policy_hash=policy.hash,
            session=session,
            clock=clock,
            inline_signing=True,
            on_entry=tap,
        )
    flight_log.start(
        __version__, ephemeral=True, extra={"replay": {"cassette_sha256": cassette.digest, "recorded": cassette.header.recorded}}
    )
    return flight_log


# -- replay -------------------------------------------------------------------------------------


class _Session:
    """One replay: the live relay, the mock upstream, and the rows being filled in.

    The relay is wired as every front wires one (`wire_relay`), without what does not apply: the
    walk is synchronous and line by line, so there is no upstream process, framer or writer; and
    the flight log is not deferred (each entry is written as it is made), so there is no
    write-ahead to commit."""

    def __init__(self, cassette: Cassette, mediator: PolicyMediator, tap: _Tap) -> None:
        self.cassette = cassette
        self.tap = tap
        self.mock = _MockUpstream(cassette)
        self.rows = recorded_calls(cassette)
        self._by_seq = {row.seq: row for row in self.rows}
        self._open: dict[bytes, CallRow] = {}
        self.relay = wire_relay(mediator, self._to_client, self.mock.from_gateway).relay

    def run(self) -> None:
        relay, mock = self.relay, self.mock
        for position, entry in enumerate(self.cassette.entries):
            mock.cursor = position
            if entry.direction == "c2g":
                row = self._by_seq.get(entry.seq)
                if row is not None:
                    self._open[_id_key(row.request_id)] = row
                relay.from_client(entry.line)
            elif entry.direction == "u2g":
                if entry.message is not None and _is_response(entry.message):
                    mock.reached(position)
                else:
                    relay.from_upstream(entry.line)  # notifications, server requests, garbage: where recorded
            self._drain()
        relay.upstream_lost("the cassette ends before the upstream answered")
        for row in self._open.values():  # never answered, not even by the loss above
            row.note = row.note or "unanswered"

    def _drain(self) -> None:
        outbox = self.mock.outbox
        while outbox:
            self.relay.from_upstream(outbox.popleft())

    def _to_client(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line)
        except GatewayError:
            return
        if not _is_response(message):
            return
        key = _id_key(message["id"])
        row = self._open.pop(key, None)
        if row is None:
            return
        decided = self.tap.decisions.pop(key, None)
        wire = wire_outcome(message, forwarded=False)
        if decided is not None and decided[0] is not None:
            code = wire.code if decided[0] == "deny" else None
            row.live = Outcome(decided[0], decided[1], labels_of(message), code)
        else:
            row.live = wire
        if key in self.mock.unanswerable:
            self.mock.unanswerable.discard(key)
            row.note = "unanswerable: the cassette has no upstream response for it"
        elif wire.code == UPSTREAM_UNAVAILABLE and decided is not None and decided[0] in _FORWARDED:
            row.note = "unanswered: the recording ends before the upstream answered"


def replay(
    cassette: Cassette,
    policy: CompiledPolicy,
    lock: Lock | None = None,
    *,
    expect: list[dict[str, Any]] | None = None,
    log_path: Path | None = None,
) -> ReplayReport:
    """Replay `cassette` under `policy` (and `lock`, not modified) and compare.

    Differences: with `expect`, each call against the expectation in the same place (tool,
    decision, and rule when given); without, each call's outcome on the wire against the
    recorded one. Always: descriptors that no longer match the lock (changed, not pinned,
    pinned but no longer listed), and calls recorded as forwarded that the cassette cannot
    answer now (the gateway now forwards other arguments).

    Raises:
        LogOpenFailed: `log_path` exists or cannot be created.
    """
    header = cassette.header
    tap = _Tap(lock_given=lock is not None)
    flight_log = _open_log(cassette, policy, log_path, tap)
    session_lock = Lock.from_json(lock.to_json(), "lock") if lock is not None else None
    mediator = PolicyMediator(
        policy,
        identity=header.server,
        fallback_identity=header.fallback_server or "upstream",
        lock=session_lock,
        flight_log=flight_log,
        clock=fixed_clock(),
    )
    session = _Session(cassette, mediator, tap)
    try:
        session.run()
    finally:
        flight_log.close("replay finished")
    report = ReplayReport(session.rows, [], list(tap.drift), None if log_path is None else flight_log.path)
    if lock is not None:
        pinned = lock.servers.get(mediator.identity)
        listed = tap.listed.get("tools")
        if pinned is not None and listed is not None:
            for name in pinned.names("tools"):
                if name not in listed:
                    report.drift.append(f"{mediator.identity} tools {name}: pinned but no longer listed")
    report.differences.extend(Difference("drift", text) for text in report.drift)
    compare(report, expect)
    return report
