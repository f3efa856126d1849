"""The policy mediator: decides every `tools/call` with `policy.engine.decide` (and the flow
rules, joined by `combine`) and every server request with `server_request_decision`, writes the
flight log's call and result entries, and hands listings to `listings` and results to
`labelling`.

Write-ahead: a call's entry is appended inside `on_client_request`, before the relay forwards
anything; if the flight log refuses it, the exception makes the relay refuse the call.

Calls are decided on what the model was last shown (`listings.Listings.tools`). After
`notifications/tools/list_changed` the client's next listing is checked like the first.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.errors import FlowDenied, InvalidParams, PolicyDenied
from gateway.evidence.flightlog import FlightLog
from gateway.labels import masks
from gateway.labels.provenance import Provenance
from gateway.mediation.interface import Fetch, Forward, Refuse, Verdict
from gateway.mediation.labelling import Labelling
from gateway.mediation.listings import Listings
from gateway.policy.engine import CallRequest, CompiledPolicy, Decision, SessionState, ToolView, combine, decide, server_request_decision
from gateway.policy.flows import CompiledFlows, FlowVerdict, ToolFacts, argument_taints, check_flows
from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import JsonObject
from gateway.protocol.methods import LIST_METHODS
from gateway.protocol.names import name_problem, server_identity
from gateway.screening.neutralise import neutralise_line
from gateway.screening.pins import Lock, ServerPins

log = structlog.get_logger("airlock.policy")

_CALL: Final = methods.TOOLS_CALL
_READS: Final = frozenset({methods.RESOURCES_READ, methods.PROMPTS_GET, methods.TASKS_RESULT})
_HANDSHAKES: Final = frozenset({methods.INITIALIZE, methods.DISCOVER})
_LIST_CHANGED: Final = methods.TOOLS_LIST_CHANGED
_SERVER_INFO_META: Final = "io.modelcontextprotocol/serverInfo"
_SAFE_INT: Final = 2**53 - 1


def log_request_id(request_id: Any) -> Any:
    """JSON-RPC ids may be integers of any size; RFC 8785 only has exact integers up to 2**53.
    Larger ones are recorded as {"big_int": "<decimal>"}, so any id can be logged."""
    if type(request_id) is int and not -_SAFE_INT <= request_id <= _SAFE_INT:
        return {"big_int": str(request_id)}
    return request_id


@dataclass(slots=True)
class _Call:
    entry_hash: str | None
    tool: str
    descriptor_hash: str | None
    facts: ToolFacts | None = None
    suspect: bool = False
    own: frozenset[int] = frozenset()  # the arguments' fingerprints: what the result may echo


@dataclass(frozen=True, slots=True)
class _ServerRequest:
    """A sampling or elicitation request from the upstream: the client's answer is checked."""

    method: str
    entry_hash: str | None


@dataclass(frozen=True, slots=True)
class _Read:
    """A `resources/read`, `prompts/get` or `tasks/result`: its result is labelled like a
    tool's (for a task, like the result of the tool call that started it)."""

    method: str
    call: _Call | None = None


@dataclass(frozen=True, slots=True)
class _GatewayListing:
    """The gateway's own `tools/list` (see `Fetch`)."""


@dataclass(frozen=True, slots=True)
class _Listing:
    method: str


class PolicyMediator:
    def __init__(
        self,
        policy: CompiledPolicy,
        *,
        identity: str | None = None,
        fallback_identity: str = "upstream",
        lock: Lock | None = None,
        on_new_pins: Callable[[str, ServerPins], None] | None = None,
        flight_log: FlightLog | None = None,
        store_raw: bool = False,
        provenance: Provenance | None = None,
        clock: Callable[[], str] | None = None,
    ) -> None:
        """`identity`: the server's name in rules and pins (else learned from `initialize`, else
        `fallback_identity`). `lock`: the lockfile's pins (None: pin on first sight, for this
        session only). `on_new_pins`: called after trust-on-first-use pinned something."""
        self._policy = policy
        self._explicit_identity = identity
        self._identity = identity or fallback_identity
        self._lock = lock
        self._log = flight_log
        self._store_raw = store_raw
        self._gateway_listed = False  # the gateway listed the tools itself (for a call of an unlisted tool)
        self._tasks: dict[str, _Call] = {}  # task id -> the call that started it
        self._flows = CompiledFlows.from_file(policy.source)
        #: The session's label state. Shared by every mediator of one session (pass it in),
        #: never between sessions.
        self.provenance: Provenance = provenance if provenance is not None else self._flows.new_provenance()
        self._listings = Listings(policy, identity=self._identity, lock=lock, on_new_pins=on_new_pins, flight_log=flight_log)
        self._labelling = Labelling(self._identity, self._flows, self.provenance, clock or _utc_now)

    @property
    def identity(self) -> str:
        """The server's name in rules, pins, labels and the flight log."""
        return self._identity

    # -- client -> upstream -------------------------------------------------------------------

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        if method == _CALL:
            return self._call(message)
        if method in LIST_METHODS or method in _HANDSHAKES:
            return Forward(_Listing(method))
        if method in _READS:
            call = None
            if method == methods.TASKS_RESULT:
                params = message.get("params")
                task_id = params.get("taskId") if type(params) is dict else None
                call = self._tasks.get(task_id) if type(task_id) is str else None
            return Forward(_Read(method, call))
        return _FORWARD

    def _call(self, message: JsonObject) -> Verdict:
        params = message.get("params")
        if type(params) is not dict or type(params.get("name")) is not str:
            return Refuse(InvalidParams("tools/call needs params.name, a string naming the tool"))
        tool: str = params["name"]
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        elif type(arguments) is not dict:
            return Refuse(InvalidParams("tools/call params.arguments must be an object"))
        listings = self._listings
        view = listings.tools.get(tool)
        if view is None and self._lock is not None:
            view = listings.pinned_view(tool)
        if view is None and "tools" not in listings.listed and not self._gateway_listed and name_problem(tool) is None:
            # The client calls a tool it did not list in this session (it may have listed
            # before, elsewhere): the gateway lists the tools itself, pins and scans them,
            # then decides the call. Only once: a tool still unknown after that is refused.
            return Fetch(methods.TOOLS_LIST, {}, _GatewayListing())
        state = SessionState(server_blocked=listings.blocked_server)
        decision = decide(CallRequest(self.identity, tool, arguments), view, state, self._policy)
        facts = None
        flow_data: dict[str, Any] = {}
        verdict = None
        if view is not None:
            facts = self._flows.facts(self.identity, tool, view.descriptor.get("annotations"), view.hash)
            if decision.forward:
                verdict, flow_data = _check_flows(self._flows, self.provenance, self.identity, tool, facts, arguments, self._policy)
                decision = combine(decision, verdict)
        entry_hash = self._record_call(message, tool, arguments, view, decision, flow_data)
        if not decision.forward:
            if verdict is not None and verdict.outcome == "deny":
                return Refuse(FlowDenied(decision.rule, decision.reason, verdict.error_data()))
            return Refuse(PolicyDenied(decision.rule, decision.reason))
        forwarded = None
        if decision.inject:
            forwarded = {**message, "params": {**params, "arguments": {**arguments, **decision.inject}}}
        suspect = view is not None and bool(view.findings)
        own = self.provenance.prints_of(arguments) if self._flows.precise else frozenset()
        return Forward(_Call(entry_hash, tool, view.hash if view is not None else None, facts, suspect, own), forwarded)

    def _record_call(self, message: JsonObject, tool: str, arguments: Mapping[str, Any], view: ToolView | None,
                     decision: Decision, flow_data: dict[str, Any]) -> str | None:  # fmt: skip
        if self._log is None:
            return None
        encoded = jsonrpc.encode(arguments)
        data: dict[str, Any] = flow_data
        if self._store_raw:
            data["arguments"] = encoded.decode()
        return self._log.record(
            kind="call",
            server=self.identity,
            tool=tool,
            request_id=log_request_id(message.get("id")),
            descriptor_hash=view.hash if view is not None else None,
            args_hash=hashlib.sha256(encoded).hexdigest(),
            decision=decision.outcome,
            rule=decision.rule,
            reason=decision.reason,
            data=data,
        )

    # -- upstream -> client -------------------------------------------------------------------

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        if method == _LIST_CHANGED:
            # Calls stay decided on the descriptors the model was shown; the client's next
            # tools/list is checked against the pins like the first.
            log.info("the server says its tools changed; the next listing is re-checked", server=self.identity)

    def on_upstream_request(self, method: str, message: JsonObject) -> Verdict:
        """Sampling and elicitation: decided by `[server_requests]`; their text is labelled
        untrusted (in `params._meta` for the client, and in the session's provenance); the
        client's answer goes through the flow rules (`on_client_response`)."""
        decision = server_request_decision(method, self.identity, self._policy)
        if decision is None:
            return _FORWARD
        entry_hash = None
        if self._log is not None:
            entry_hash = self._log.record(
                kind="call",
                server=self.identity,
                tool=method,
                request_id=log_request_id(message.get("id")),
                args_hash=hashlib.sha256(jsonrpc.encode(message.get("params"))).hexdigest(),
                decision=decision.outcome,
                rule=decision.rule,
                reason=decision.reason,
                data={"direction": "server-to-client"},
            )
        if not decision.forward:
            return Refuse(PolicyDenied(decision.rule, decision.reason))
        params = message.get("params")
        if type(params) is not dict:
            return Forward(_ServerRequest(method, entry_hash))
        return Forward(_ServerRequest(method, entry_hash), self._labelling.server_request(method, message, params))

    def on_client_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        """The client's answer to a sampling or elicitation request goes to the upstream: the
        flow rules check it as the arguments of a call to `SERVER.METHOD` (class `egress`
        unless declared). A denial sends the upstream an error instead."""
        if type(context) is not _ServerRequest:
            return message
        result = message.get("result")
        arguments = {"result": result} if result is not None else {}
        facts = self._flows.facts(self.identity, method, None, None)
        verdict, flow_data = _check_flows(self._flows, self.provenance, self.identity, method, facts, arguments, self._policy)
        if self._log is not None:
            self._log.record(
                kind="result",
                server=self.identity,
                tool=method,
                request_id=log_request_id(message.get("id")),
                result_hash=hashlib.sha256(jsonrpc.encode(message)).hexdigest(),
                decision=verdict.outcome,
                rule=verdict.rule,
                reason=verdict.reason,
                data={"call": context.entry_hash, "direction": "client-to-server", **flow_data},
            )
        if verdict.outcome == "deny":
            raise FlowDenied(verdict.rule or "", verdict.reason or "", verdict.error_data())
        return message

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        if method == _CALL:
            return self._result(context, message)
        if type(context) is _Read:
            return self._read_result(context, message)
        if type(context) is _GatewayListing:
            self._gateway_listed = True
            if type(message.get("result")) is dict:
                self._listings.listing("tools", message)
            return message
        if type(context) is _Listing and type(message.get("result")) is dict:
            if method in _HANDSHAKES:
                return self._handshake(message)
            return self._listings.listing(LIST_METHODS[method], message)
        return message

    def _read_result(self, read: _Read, message: JsonObject) -> bytes:
        call = read.call
        if call is not None:
            labelled, pending = self._labelling.label(call.tool, call.facts, call.suspect, message)
        else:  # an unknown task is suspect: its tool's declarations cannot be applied
            labelled, pending = self._labelling.label(read.method, None, read.method == methods.TASKS_RESULT, message)
        encoded = neutralise_line(jsonrpc.encode(labelled))
        self._labelling.remember(read.method, hashlib.sha256(encoded).hexdigest(), pending)
        return encoded

    def _result(self, call: _Call, message: JsonObject) -> bytes:
        result = message.get("result")
        task = result.get("task") if type(result) is dict else None
        if type(task) is dict and type(task.get("taskId")) is str:
            # A task-augmented call: the real result comes later through tasks/result.
            if len(self._tasks) >= 10_000:
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[task["taskId"]] = call
        message, pending = self._labelling.label(call.tool, call.facts, call.suspect, message)
        encoded = neutralise_line(jsonrpc.encode(message))  # hash exactly what the client gets
        result_hash = hashlib.sha256(encoded).hexdigest()
        label_data = self._labelling.remember(call.tool, result_hash, pending, call.own)
        if self._log is not None:
            result = message.get("result")
            data: dict[str, Any] = {
                "call": call.entry_hash,
                "is_error": "error" in message or (type(result) is dict and result.get("isError") is True),
                **label_data,
            }
            if self._store_raw:
                data["response"] = encoded.decode()
            self._log.record(
                kind="result",
                server=self.identity,
                tool=call.tool,
                request_id=log_request_id(message.get("id")),
                descriptor_hash=call.descriptor_hash,
                result_hash=result_hash,
                data=data,
            )
        return encoded

    def _handshake(self, message: JsonObject) -> JsonObject:
        result: dict[str, Any] = message["result"]
        info = result.get("serverInfo")
        meta = result.get("_meta")
        if type(info) is not dict and type(meta) is dict:
            info = meta.get(_SERVER_INFO_META)  # 2026-07-28: server/discover carries it in _meta
        if self._explicit_identity is None and type(info) is dict and type(info.get("name")) is str:
            self._identity = server_identity(info["name"])
            self._listings.rename(self._identity)
            self._labelling.identity = self._identity
        return self._listings.instructions(message)


def _check_flows(
    flows: CompiledFlows,
    provenance: Provenance,
    server: str,
    tool: str,
    facts: ToolFacts,
    arguments: Mapping[str, Any],
    policy: CompiledPolicy,
) -> tuple[FlowVerdict, dict[str, Any]]:
    """The flow verdict on a call of `server.tool`, and what the flight log records of it: the
    labels of every argument (those that carry any), the session's, and the exceptions used."""
    if not flows.flows:
        return _NO_FLOWS, {}
    taints = argument_taints(provenance, arguments) if flows.precise else {}
    coarse = provenance.coarse()
    verdict = check_flows(flows, server, tool, facts, arguments, taints, coarse, policy_shadow=policy.shadow)
    data: dict[str, Any] = {"class": facts.action}
    carried = {name: masks.names_of(t.mask) for name, t in taints.items() if t.mask}
    if carried:
        data["argument_labels"] = carried
    if provenance.mask:
        data["session_labels"] = masks.names_of(provenance.mask)
    if provenance.saturated:
        data["provenance"] = "saturated: checked coarsely"
    if verdict.exceptions:
        data["exceptions"] = list(verdict.exceptions)
    if verdict.outcome != "allow":
        data["flow"] = verdict.error_data()
    return verdict, data


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_FORWARD: Final = Forward()
_NO_FLOWS: Final = FlowVerdict("allow")
