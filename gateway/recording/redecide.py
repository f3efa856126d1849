"""The state machine of `airlock fork`: a session rebuilt from a verified flight log's entries,
in order, and each recorded call re-decided in it under another policy (see `fork` for what is
and is not modelled). What the log cannot supply is handed to the engine as values that raise
`Unknown` when read, so a decision that reads them is undecidable and one that does not is exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn, cast

from gateway.errors import GatewayError
from gateway.labels.masks import mask_of
from gateway.labels.provenance import CLEAN, Taint
from gateway.policy.engine import (
    CallRequest,
    CompiledPolicy,
    Decision,
    PinState,
    SessionState,
    ToolView,
    combine,
    decide,
    server_request_decision,
)
from gateway.policy.flows import CompiledFlows, ToolFacts, check_flows
from gateway.protocol import jsonrpc
from gateway.screening.descriptors import descriptor_hash
from gateway.screening.pins import Lock
from gateway.screening.scan import Finding

_EMPTY_ARGUMENTS_HASH: Final = hashlib.sha256(jsonrpc.encode({})).hexdigest()
_ALL_LABELS: Final = mask_of(["untrusted", "secret", "poisoned-suspect"])
_CLASSES: Final = ("read", "write", "exec", "egress")


class Unknown(Exception):
    """Raised when the engine reads something the log does not supply; `what` names it."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


# -- values that are not in the log -------------------------------------------------------------


class _Hole(Mapping[str, Any]):
    """An object the log does not hold (the arguments, the descriptor): passing it on is fine,
    any read of it makes the decision undecidable."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getitem__(self, key: str) -> NoReturn:
        raise Unknown(self._what)

    def __iter__(self) -> Iterator[str]:
        raise Unknown(self._what)

    def __len__(self) -> int:
        raise Unknown(self._what)


class _ArgumentsCheck:
    """A tool's input-schema check when the arguments are unknown."""

    def problem(self, value: Any) -> NoReturn:
        raise Unknown("arguments")

    def schema_problem(self) -> NoReturn:
        raise Unknown("arguments")


class _PartialView:
    """A `ToolView` with holes. `decide` reads a tool's pin, findings and hashes, and its
    descriptor and schema only on some paths; reading a hole raises `Unknown`."""

    def __init__(
        self,
        server: str,
        name: str,
        digest: str,
        pin: PinState | None,
        pinned_hash: str | None,
        findings: tuple[Finding, ...],
        full: ToolView | None,
        arguments_known: bool,
    ) -> None:
        self.server, self.name, self.hash = server, name, digest
        self.pinned_hash, self.findings = pinned_hash, findings
        self._pin, self._full, self._arguments_known = pin, full, arguments_known

    @property
    def pin(self) -> PinState:
        if self._pin is None:
            raise Unknown("pin")
        return self._pin

    def __getattr__(self, name: str) -> Any:  # descriptor, schema, schema_problem, properties, ...
        if self._full is None:
            if name == "descriptor":  # handed to `applies_to` for every rule, read only by some
                return _Hole("descriptor")
            raise Unknown("descriptor")
        value = getattr(self._full, name)
        return _ArgumentsCheck() if name == "schema" and value is not None and not self._arguments_known else value


class _Everyone(frozenset[str]):
    """A reader set that contains every recipient (`recipients <= readers` asks it first)."""

    def __ge__(self, other: Any) -> bool:
        return True


_READERS_SEE: Final = (_Everyone(),)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str
    rule: str | None

    def describe(self) -> str:
        return f"{self.outcome}({self.rule})" if self.rule else self.outcome


# -- the session, rebuilt -----------------------------------------------------------------------


@dataclass(slots=True)
class _Listed:
    digest: str
    pin: PinState | None  # None: unknown under the new policy
    pinned_hash: str | None
    findings: tuple[Finding, ...]


@dataclass(slots=True)
class _Server:
    tools: dict[str, _Listed] = field(default_factory=dict)
    listed: bool = False  # the first complete tools listing is in (later new items are not first sight)
    blocked: str | None = None
    blocked_unknown: bool = False  # a tool whose pin state is unknown may have changed: blocking unknown
    unsure: set[str] = field(default_factory=set)  # tools whose pins the log cannot tell (see `_pin_state`)
    ours: dict[str, str] = field(default_factory=dict)  # pins trust-on-first-use takes under the new policy
    theirs: dict[str, str] = field(default_factory=dict)  # pins it took in the original run


def _pin_state(server: _Server, name: str, digest: str, status: str, first_sight: bool, tofu: bool) -> PinState | None:
    """The tool's pin state under the new policy's `[pins] unpinned` (`tofu`: trust on first
    use), from the recorded status and the pins each run took on trust so far."""
    if name in server.unsure and not tofu:
        return None
    taken_then = status == "new-pinned" or (status in ("pinned", "changed") and name in server.theirs)
    if status == "new-pinned":
        server.theirs.setdefault(name, digest)
    if status == "new" or taken_then:
        if name in server.ours:
            return "pinned" if server.ours[name] == digest else "changed"
        if tofu:
            server.ours[name] = digest
            return "pinned"
        return "new"
    if status == "pinned" and not first_sight and name not in server.tools and not tofu:
        # Pinned by the lockfile, or taken on trust by a run without one: the log cannot tell.
        server.unsure.add(name)
        return None
    return "changed" if status == "changed" else "pinned"


def _findings(raw: Any) -> tuple[Finding, ...]:
    out = []
    for item in raw if type(raw) is list else []:
        if type(item) is not dict:
            continue
        span = item.get("span") or [0, 0]
        out.append(
            Finding(
                str(item.get("technique")),
                str(item.get("path")),
                int(span[0]),
                int(span[1]),
                str(item.get("excerpt")),
                str(item.get("reason")),
            )
        )
    return tuple(out)


def apply_listing(server: _Server, identity: str, data: Mapping[str, Any], policy: CompiledPolicy) -> None:
    """Apply one `tools` descriptor entry, as `PolicyMediator._listing` did."""
    pins = policy.source.pins
    tofu = pins.unpinned == "trust-on-first-use"
    for item in data.get("items") or []:
        name, digest, status = item.get("name"), item.get("hash"), item.get("pin")
        if type(name) is not str or type(digest) is not str or status == "invalid":
            continue
        pin = _pin_state(server, name, digest, str(status), not server.listed, tofu)
        server.tools[name] = _Listed(digest, pin, item.get("pinned_hash"), _findings(item.get("findings")))
        blocks = pins.changed == "block-server" and not policy.shadow
        server.blocked_unknown |= blocks and pin is None and status == "changed"
        if pin == "changed" and blocks and server.blocked is None:
            server.blocked = (
                f"a tool of server {identity!r} ({name!r}) changed since it was pinned and the policy blocks the whole "
                "server; review with 'airlock pin --diff', re-pin with 'airlock pin'"
            )
    if type(data.get("next_cursor")) is not str:
        server.listed = True


# -- one call ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Labels:
    """The label state at a call: the session's labels between `low` and `high`; each
    argument's recorded (`arguments`), or unknown between clean and the session's (None)."""

    low: int
    high: int
    arguments: Mapping[str, int] | None


def _arguments(entry: Mapping[str, Any]) -> Mapping[str, Any] | None:
    stored = entry["data"].get("arguments")
    if type(stored) is str:
        encoded = stored.encode()
        if hashlib.sha256(encoded).hexdigest() != entry["args_hash"]:
            return None  # not what was decided: do not use it
        try:
            value = jsonrpc.decode(encoded)
        except GatewayError:
            return None
        return value if type(value) is dict else None
    return {} if entry["args_hash"] == _EMPTY_ARGUMENTS_HASH else None


class ForkState:
    def __init__(self, policy: CompiledPolicy, lock: Lock | None, same_policy: bool) -> None:
        self.policy = policy
        self.flows = CompiledFlows.from_file(policy.source)
        self.same = same_policy
        self.servers: dict[str, _Server] = {}
        self.descriptors: dict[tuple[str, str], Mapping[str, Any]] = {}
        for identity, pins in lock.servers.items() if lock is not None else ():
            for pin in pins.items.get("tools", {}).values():
                if type(pin.descriptor) is dict:
                    self.descriptors[(identity, descriptor_hash(pin.descriptor))] = pin.descriptor

    def server(self, identity: str) -> _Server:
        return self.servers.setdefault(identity, _Server())

    def view(self, identity: str, tool: str, digest: str | None, arguments_known: bool) -> ToolView | None:
        """The tool as the call was decided on it (None: not listed, not pinned)."""
        if digest is None:
            return None
        listed = self.server(identity).tools.get(tool)
        if listed is not None and listed.digest != digest:
            raise Unknown("the call names another descriptor than the tool's last listing")
        if listed is None:  # decided on the lockfile's pin (`PolicyMediator._pinned_view`)
            listed = _Listed(digest, "pinned", None, ())
        descriptor = self.descriptors.get((identity, digest))
        full = None
        if descriptor is not None:
            full = ToolView.build(
                identity, descriptor, digest, listed.pin or "pinned", pinned_hash=listed.pinned_hash, findings=listed.findings
            )
            if listed.pin is not None and arguments_known:
                return full
        partial = _PartialView(identity, tool, digest, listed.pin, listed.pinned_hash, listed.findings, full, arguments_known)
        return cast(ToolView, partial)  # duck-typed: every hole raises `Unknown` when `decide` reads it

    def call(self, entry: Mapping[str, Any], label_state: _Labels) -> Verdict:
        """The new policy's verdict on a recorded call. Raises `Unknown` when it depends on
        something the log does not hold."""
        identity, tool, data = entry["server"], entry["tool"], entry["data"]
        if data.get("direction") == "server-to-client":
            decided = server_request_decision(tool, identity, self.policy)
            if decided is None:
                raise Unknown(f"an unknown server request {tool!r}")
            return Verdict(decided.outcome, decided.rule)
        arguments = _arguments(entry)
        known = arguments is not None
        args: Mapping[str, Any] = arguments if arguments is not None else _Hole("arguments")
        view = self.view(identity, tool, entry["descriptor_hash"], known)
        server = self.server(identity)
        if server.blocked_unknown and server.blocked is None:
            raise Unknown("pin")
        state = SessionState(server_blocked=server.blocked)
        decision = decide(CallRequest(identity, tool, args), view, state, self.policy)
        if view is None or not decision.forward:
            return Verdict(decision.outcome, decision.rule)
        outcomes = {
            self._with_flows(identity, tool, decision, facts, args, taints, coarse)
            for facts in self._facts(identity, tool, entry, view)
            for coarse, taints in self._label_cases(label_state, args)
        }
        if len(outcomes) > 1 and self.same:
            # The recorded policy's own flow outcome is a fact of the run (class, labels, readers).
            outcomes &= {Verdict(entry["decision"], entry["rule"])}
        if len(outcomes) != 1:
            raise Unknown("labels")
        return outcomes.pop()

    def _with_flows(
        self,
        identity: str,
        tool: str,
        decision: Decision,
        facts: ToolFacts,
        args: Mapping[str, Any],
        taints: Mapping[str, Taint],
        coarse: Taint,
    ) -> Verdict:
        """The rules' decision combined with the flow verdict, by the live gateway's `combine`."""
        verdict = check_flows(self.flows, identity, tool, facts, args, taints, coarse, policy_shadow=self.policy.shadow)
        combined = combine(decision, verdict)
        return Verdict(combined.outcome, combined.rule)

    def _facts(self, identity: str, tool: str, entry: Mapping[str, Any], view: ToolView) -> list[ToolFacts]:
        """The tool's facts under the new policy: one, or one per action class when its class
        cannot be told (not declared, the descriptor unknown, another policy than the log's)."""
        try:
            annotations, known = view.descriptor.get("annotations"), True
        except Unknown:
            annotations, known = None, False
        facts = self.flows.facts(identity, tool, annotations, entry["descriptor_hash"])
        recorded = entry["data"].get("class")
        if facts.declared_class or known:
            return [facts]
        if self.same and recorded in _CLASSES:
            return [dataclasses.replace(facts, action=recorded)]
        return [dataclasses.replace(facts, action=c) for c in _CLASSES]

    def _label_cases(self, state: _Labels, args: Mapping[str, Any]) -> Iterator[tuple[Taint, dict[str, Taint]]]:
        """(coarse, per-argument) taints to try. Flow verdicts only grow stricter with more labels
        and fewer readers, so where the labels are bounded the two extremes (least: the lower
        bound, clean arguments; most: the upper bound on every argument) and readers seeing or
        not cover every case in between."""
        if not self.flows.flows:
            yield CLEAN, {}
            return
        exact = state.arguments is not None and state.low == state.high
        for session, most in {(state.low, False), (state.high, True)} if not exact else {(state.low, False)}:
            for see in (True, False):
                coarse = _taint(session, see)
                if not self.flows.precise:
                    yield coarse, {}
                elif exact:
                    assert state.arguments is not None
                    yield coarse, {name: _taint(mask, see) for name, mask in state.arguments.items()}
                else:
                    yield coarse, ({name: coarse for name in args} if most else {})


def _taint(mask: int, readers_see: bool) -> Taint:
    return Taint(mask, (), {}, _READERS_SEE if readers_see else ()) if mask else CLEAN


def label_states(entries: list[dict[str, Any]], precise_then: bool | None) -> dict[int, _Labels]:
    """The label state at each call entry (by seq): recorded where the original run flow-checked
    the call, else bounded by the nearest recorded states before and after it."""
    recorded: dict[int, tuple[int, Mapping[str, int] | None]] = {}
    for entry in entries:
        data = entry["data"]
        if entry["kind"] in ("call", "result") and "class" in data:
            session = mask_of(data.get("session_labels") or [])
            per = {k: mask_of(v) for k, v in (data.get("argument_labels") or {}).items()}
            recorded[entry["seq"]] = (session, per if precise_then else None)
    # The session's labels only grow: the last recorded state before a call and the first after
    # it bound the labels it had.
    highs: dict[int, int] = {}
    high = _ALL_LABELS
    for entry in reversed(entries):
        if entry["seq"] in recorded:
            high = recorded[entry["seq"]][0]
        highs[entry["seq"]] = high
    states: dict[int, _Labels] = {}
    low = 0
    for entry in entries:
        seq = entry["seq"]
        if seq in recorded:
            low = recorded[seq][0]
            states[seq] = _Labels(low, low, recorded[seq][1])
        elif entry["kind"] == "call":
            states[seq] = _Labels(low, highs[seq], None)
    return states
