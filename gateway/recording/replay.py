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

import argparse
import hashlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import __version__
from gateway.errors import EXIT_DIFFERENT, EXIT_OK, FLOW_DENIED, POLICY_DENIED, UPSTREAM_UNAVAILABLE, ConfigError, GatewayError
from gateway.evidence.entry import Decision as EntryDecision
from gateway.evidence.entry import Entry, TimestampSource, timestamp
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.labels import masks
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import load_policy
from gateway.protocol import jsonrpc
from gateway.recording.cassette import Cassette, read_cassette
from gateway.recording.mock_upstream import MockUpstream as _MockUpstream
from gateway.recording.mock_upstream import id_key as _id_key
from gateway.recording.mock_upstream import is_request as _is_request
from gateway.recording.mock_upstream import is_response as _is_response
from gateway.screening.pins import Lock
from gateway.session.relay import Relay

#: Public on purpose: replay logs must be reproducible by anyone, so they prove nothing.
REPLAY_KEY_SEED: Final = b"mcp-airlock replay key/1 (public: proves nothing)"
REPLAY_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)

_CALL: Final = "tools/call"
_DENY_CODES: Final = frozenset({POLICY_DENIED, FLOW_DENIED})
_FORWARDED: Final = frozenset({"allow", "shadow-deny"})

Decision = Literal["allow", "deny", "shadow-deny", "refused", "unknown"]
DifferenceKind = Literal["decision", "expectation", "drift", "unanswerable"]


class ExpectationsError(ConfigError):
    """The expectations file cannot be read or is malformed."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call. `rule`: the deciding rule (for a recorded outcome, known only
    for a denial); `code`: the JSON-RPC error code the client got, if any."""

    decision: Decision
    rule: str | None = None
    labels: tuple[str, ...] = ()
    code: int | None = None

    def wire(self) -> tuple[str, str | None]:
        """What a client could tell apart: forwarded, or refused by which rule."""
        if self.decision in _FORWARDED:
            return ("forwarded", None)
        if self.decision == "deny":
            return ("deny", self.rule)
        return (self.decision, str(self.code) if self.code is not None else None)

    def describe(self) -> str:
        return f"{self.decision}({self.rule})" if self.rule else self.decision


@dataclass(slots=True)
class CallRow:
    """One `tools/call` the client sent: where it is in the cassette, and both outcomes."""

    index: int
    seq: int
    request_id: Any
    tool: str
    recorded: Outcome
    live: Outcome = Outcome("unknown")
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    message: str
    call: int | None = None

    def describe(self) -> str:
        return f"{self.kind}: " + (f"call {self.call}: " if self.call is not None else "") + self.message


@dataclass(slots=True)
class ReplayReport:
    rows: list[CallRow]
    differences: list[Difference]
    drift: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENT if self.differences else EXIT_OK

    def table(self) -> str:
        """One line per call: index, cassette seq, tool, recorded and live outcome, labels."""
        head = ("#", "seq", "tool", "recorded", "replayed", "labels", "note")
        lines = [(str(r.index), str(r.seq), r.tool, r.recorded.describe(), r.live.describe(), ",".join(r.live.labels) or "-",
                  r.note or "") for r in self.rows]  # fmt: skip
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (head, *lines)]
        out.extend(d.describe() for d in self.differences)
        out.append(f"{len(self.rows)} call(s), {len(self.differences)} difference(s)")
        return "\n".join(out)


# -- pure helpers -------------------------------------------------------------------------------


def _tool_of(message: Mapping[str, Any]) -> str:
    params = message.get("params")
    name = params.get("name") if type(params) is dict else None
    return name if type(name) is str else "?"


def _labels_of(message: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels the gateway told the client: the result's `_meta`, or a flow refusal's data."""
    result = message.get("result")
    if type(result) is dict:
        meta = result.get("_meta")
        told = meta.get(masks.META_KEY) if type(meta) is dict else None
        if type(told) is dict:
            names = []
            if told.get("integrity") == "untrusted":
                names.append("untrusted")
            if told.get("confidentiality") in ("private", "secret"):
                names.append(str(told["confidentiality"]))
            flags = told.get("flags")
            names.extend(str(f) for f in flags if type(f) is str) if type(flags) is list else None
            return tuple(names)
    error = message.get("error")
    data = error.get("data") if type(error) is dict else None
    if type(data) is dict and type(data.get("labels")) is list:
        return tuple(str(n) for n in data["labels"])
    return ()


def _wire_outcome(response: Mapping[str, Any] | None, forwarded: bool) -> Outcome:
    if forwarded:
        return Outcome("allow", None, _labels_of(response) if response is not None else ())
    if response is None:
        return Outcome("unknown")
    error = response.get("error")
    if type(error) is dict:
        code = error.get("code") if type(error.get("code")) is int else None
        data = error.get("data")
        rule = data.get("rule") if type(data) is dict else None
        if code in _DENY_CODES and type(rule) is str:
            return Outcome("deny", rule, _labels_of(response), code)
        return Outcome("refused", None, (), code)
    return Outcome("unknown")


def recorded_calls(cassette: Cassette) -> list[CallRow]:
    """Every `tools/call` request the client sent, with its outcome as the recording shows it
    (forwarded upstream: `allow`; refused with a rule: `deny`; refused otherwise: `refused`)."""
    rows: list[CallRow] = []
    open_calls: dict[bytes, tuple[CallRow, list[bool]]] = {}
    responses: dict[int, tuple[Mapping[str, Any] | None, bool]] = {}
    for entry in cassette.entries:
        message = entry.message
        if entry.direction == "c2g" and _is_request(message) and message["method"] == _CALL:
            row = CallRow(len(rows) + 1, entry.seq, message["id"], _tool_of(message), Outcome("unknown"))
            rows.append(row)
            open_calls[_id_key(message["id"])] = (row, [False])
            responses[row.index] = (None, False)
        elif entry.direction == "g2u" and _is_request(message) and message["method"] == _CALL:
            found = open_calls.get(_id_key(message["id"]))
            if found is not None:
                found[1][0] = True
                responses[found[0].index] = (None, True)
        elif entry.direction == "g2c" and _is_response(message):
            opened = open_calls.pop(_id_key(message["id"]), None)
            if opened is not None:
                responses[opened[0].index] = (message, opened[1][0])
    for row in rows:
        response, forwarded = responses[row.index]
        row.recorded = _wire_outcome(response, forwarded)
    return rows


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


def load_expectations(path: Path) -> list[dict[str, Any]]:
    """`{"calls": [{"tool": T, "decision": D, "rule": R?}, ...]}`, compared in call order.

    Raises:
        ExpectationsError: unreadable, not JSON, or not of that shape.
    """
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ExpectationsError(f"{path}: cannot read the expectations file: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ExpectationsError(f"{path}: not JSON: {exc}") from None
    calls = raw.get("calls") if type(raw) is dict else None
    if type(calls) is not list:
        raise ExpectationsError(f'{path}: expected {{"calls": [{{"tool": ..., "decision": ..., "rule": ...}}, ...]}}')
    for index, call in enumerate(calls, 1):
        if type(call) is not dict or type(call.get("tool")) is not str or call.get("decision") not in (*_FORWARDED, "deny", "refused"):
            raise ExpectationsError(f"{path}: calls[{index - 1}]: needs \"tool\" (a string) and \"decision\" "
                                    "(allow, deny, shadow-deny or refused)")  # fmt: skip
        if set(call) - {"tool", "decision", "rule"}:
            raise ExpectationsError(
                f"{path}: calls[{index - 1}]: unknown key(s) {', '.join(sorted(set(call) - {'tool', 'decision', 'rule'}))}"
            )
    return calls


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
                    self.drift.append(f"{entry.server} {kind_listed} {name}: changed since it was pinned "
                                      f"(pinned {str(item.get('pinned_hash'))[:12]}, now {str(item.get('hash'))[:12]})")  # fmt: skip
                elif pin in ("new", "new-pinned") and self.lock_given:
                    self.drift.append(f"{entry.server} {kind_listed} {name}: not in the lockfile")


def _open_log(cassette: Cassette, policy: CompiledPolicy, log_path: Path | None, tap: _Tap) -> FlightLog:
    key = replay_signing_key()
    session = cassette.digest[:32]
    clock = fixed_clock()
    if log_path is None:
        fd = os.open(os.devnull, os.O_WRONLY)
        flight_log = FlightLog(fd, Path(os.devnull), key, session=session, policy_hash=policy.hash, fsync="off", clock=clock,
                               inline_signing=True, on_entry=tap)  # fmt: skip
    else:
        flight_log = FlightLog.open(LogSettings(log_path, fsync="off"), key, policy_hash=policy.hash, session=session, clock=clock,
                                    inline_signing=True, on_entry=tap)  # fmt: skip
    flight_log.start(
        __version__, ephemeral=True, extra={"replay": {"cassette_sha256": cassette.digest, "recorded": cassette.header.recorded}}
    )
    return flight_log


# -- replay -------------------------------------------------------------------------------------


class _Session:
    """One replay: the live relay, the mock upstream, and the rows being filled in."""

    def __init__(self, cassette: Cassette, mediator: PolicyMediator, tap: _Tap) -> None:
        self.cassette = cassette
        self.tap = tap
        self.mock = _MockUpstream(cassette)
        self.rows = recorded_calls(cassette)
        self._by_seq = {row.seq: row for row in self.rows}
        self._open: dict[bytes, CallRow] = {}
        self.relay = Relay(mediator, self._to_client, self.mock.from_gateway)

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
        wire = _wire_outcome(message, forwarded=False)
        if decided is not None and decided[0] is not None:
            code = wire.code if decided[0] == "deny" else None
            row.live = Outcome(decided[0], decided[1], _labels_of(message), code)
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
    mediator = PolicyMediator(policy, identity=header.server, fallback_identity=header.fallback_server or "upstream",
                              lock=session_lock, flight_log=flight_log, clock=fixed_clock())  # fmt: skip
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
    _compare(report, expect)
    return report


def _compare(report: ReplayReport, expect: list[dict[str, Any]] | None) -> None:
    differences = report.differences
    for row in report.rows:
        if row.note and row.note.startswith("unanswerable") and row.recorded.decision == "allow":
            differences.append(Difference("unanswerable", f"{row.tool}: recorded as forwarded, but the cassette cannot answer it "
                                          "now (the gateway forwards different arguments)", row.index))  # fmt: skip
    if expect is None:
        for row in report.rows:
            if row.live.wire() != row.recorded.wire():
                differences.append(Difference("decision", f"{row.tool}: recorded {row.recorded.describe()}, "
                                              f"now {row.live.describe()}", row.index))  # fmt: skip
        return
    for index, (row, wanted) in enumerate(zip(report.rows, expect, strict=False), 1):
        got = row.live
        if wanted["tool"] != row.tool or wanted["decision"] != got.decision or ("rule" in wanted and wanted["rule"] != got.rule):
            shown = wanted["decision"] + (f"({wanted['rule']})" if wanted.get("rule") else "")
            differences.append(Difference("expectation", f"expected {wanted['tool']} {shown}, got {row.tool} {got.describe()}", index))
    if len(expect) != len(report.rows):
        differences.append(Difference("expectation", f"expected {len(expect)} call(s), the cassette has {len(report.rows)}"))


# -- command line -------------------------------------------------------------------------------


def add_replay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`airlock replay CASSETTE --policy P [--lock L] [--expect E] [--log F]`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay a recorded session under a policy and report every decision (exit 4 on differences)",
        description="Run a cassette's client side through the gateway against a mock upstream that answers from the "
        "cassette. Exit 0: same decisions; 4: differences (decisions, expectations, descriptors vs the lock); 2: bad input.",
    )
    parser.add_argument("cassette", type=Path, help="a cassette written by 'airlock run --record'")
    parser.add_argument("--policy", type=Path, required=True, help="the policy to replay under (TOML)")
    parser.add_argument("--lock", type=Path, help="descriptor lockfile: report descriptors that no longer match it")
    parser.add_argument("--expect", type=Path, help='expected decisions, JSON {"calls": [{"tool", "decision", "rule"?}, ...]}')
    parser.add_argument("--log", type=Path, help="write the replay's flight log here (a new file, or a directory)")
    parser.set_defaults(handler=cmd_replay)
    return parser


def cmd_replay(args: argparse.Namespace, out: Callable[[str], None] | None = None) -> int:
    """Returns 0 (no differences) or 4 (differences); bad input raises a ConfigError (exit 2)."""
    from gateway.logs import configure_logging

    configure_logging("warning")
    policy = CompiledPolicy.from_file(load_policy(args.policy))
    lock = Lock.load(args.lock) if args.lock is not None else None
    expect = load_expectations(args.expect) if args.expect is not None else None
    cassette = read_cassette(args.cassette)
    report = replay(cassette, policy, lock, expect=expect, log_path=args.log)
    (out or _print)(report.table())
    if report.log_path is not None:
        print(f"replay flight log: {report.log_path}", file=sys.stderr)
    return report.exit_code


def _print(text: str) -> None:
    print(text)
