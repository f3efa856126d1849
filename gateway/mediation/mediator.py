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

from gateway.errors import FlowDenied, InvalidParams, MethodNotFound, PolicyDenied
from gateway.evidence.flightlog import FlightLog
from gateway.labels.masks import ActionClass
from gateway.labels.provenance import Provenance
from gateway.mediation.inputs import Inputs, ServerRequest, log_request_id
from gateway.mediation.interface import Fetch, Forward, Refuse, Verdict
from gateway.mediation.labelling import Labelling
from gateway.mediation.listings import Listings
from gateway.mediation.results import Call, Read, Results
from gateway.mediation.sinks import SinkCheck
from gateway.policy.engine import CallRequest, CompiledPolicy, Decision, SessionState, ToolView, combine, decide
from gateway.policy.flows import CompiledFlows
from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import JsonObject
from gateway.protocol.methods import LIST_METHODS
from gateway.protocol.names import name_problem, server_identity
from gateway.screening.pins import Lock, ServerPins

log = structlog.get_logger("airlock.policy")

_CALL: Final = methods.TOOLS_CALL
_HANDSHAKES: Final = frozenset({methods.INITIALIZE, methods.DISCOVER})
_LIST_CHANGED: Final = methods.TOOLS_LIST_CHANGED
_SERVER_INFO_META: Final = methods.PROTOCOL_META + "serverInfo"

__all__ = ["PolicyMediator", "log_request_id"]


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
        self._flows = CompiledFlows.from_file(policy.source)
        #: The session's label state. Shared by every mediator of one session (pass it in),
        #: never between sessions.
        self.provenance: Provenance = provenance if provenance is not None else self._flows.new_provenance()
        self._listings = Listings(policy, identity=self._identity, lock=lock, on_new_pins=on_new_pins, flight_log=flight_log)
        self._labelling = Labelling(self._identity, self._flows, self.provenance, clock or _utc_now)
        self._inputs = Inputs(policy, lambda: self._identity, self._labelling, flight_log)
        self._results = Results(lambda: self._identity, self._flows, self._labelling, self._inputs, flight_log, store_raw=store_raw)
        self._sinks = SinkCheck(self._flows, self.provenance, policy, self._sink_classes)
        self._classes: tuple[int, tuple[ActionClass, ...]] = (-1, ())

    @property
    def identity(self) -> str:
        """The server's name in rules, pins, labels and the flight log."""
        return self._identity

    # -- client -> upstream -------------------------------------------------------------------

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        """Every message the client sends (requests, and notifications: no id) is decided here:
        a method the gateway does not class is refused; every other is a sink (`SinkCheck`)."""
        channel = methods.CLIENT_METHODS.get(method)
        if channel is None:
            if self._policy.source.unknown_methods == "mediate":
                channel = "read" if "id" in message else "notification"
            else:
                why = (f"the gateway does not know the method {method[:80]!r} and refuses what it cannot class (it could carry "
                       'anything); a policy with unknown_methods = "mediate" lets such methods through its flow rules')  # fmt: skip
                self._record_refusal(method, message, Decision("deny", "methods.unknown", why), {})
                return Refuse(MethodNotFound(why))
        if channel == "call":
            return self._call(message)
        params = message.get("params")
        refused = self._sink(method, message, params)
        if refused is not None:
            return refused
        if channel == "list" or channel == "handshake":
            return Forward(_Listing(method))
        if channel == "read":
            return Forward(self._results.read(method, params))
        return _FORWARD

    def _sink(self, method: str, message: JsonObject, params: Any) -> Refuse | None:
        """The flow check of a message that is not a tool call (see `sinks`): refused, with an
        entry naming the method and the member, when a flow rule denies it."""
        verdict, flow_data = self._sinks.check(self.identity, method, params, self._inputs.asked)
        if verdict.outcome == "allow":
            return None
        decision = Decision(verdict.outcome, verdict.rule or "", verdict.reason or "")
        self._record_refusal(method, message, decision, flow_data)
        if verdict.outcome != "deny":
            return None  # shadow: recorded, forwarded
        return Refuse(FlowDenied(decision.rule, decision.reason, {**verdict.error_data(), "method": method}))

    def _sink_classes(self) -> tuple[ActionClass, ...]:
        """The server as a sink: the class the policy declares, else every class among its
        listed tools, else (nothing listed yet) egress."""
        declared = self._flows.server_class(self.identity)
        if declared is not None:
            return (declared,)
        listings = self._listings
        if self._classes[0] != listings.changes:
            found = {self._flows.facts(self.identity, name, view.descriptor.get("annotations"), view.hash).action
                     for name, view in listings.tools.items()}  # fmt: skip
            self._classes = (listings.changes, tuple(sorted(found)) or ("egress",))
        return self._classes[1]

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
            return Fetch(methods.TOOLS_LIST, _envelope(params), _GatewayListing())
        state = SessionState(server_blocked=listings.blocked_server)
        decision = decide(CallRequest(self.identity, tool, arguments), view, state, self._policy)
        facts = None
        flow_data: dict[str, Any] = {}
        verdict = None
        if view is not None:
            facts = self._flows.facts(self.identity, tool, view.descriptor.get("annotations"), view.hash)
            if decision.forward:
                verdict, flow_data = self._sinks.check_call(self.identity, tool, facts, arguments)
                decision = combine(decision, verdict)
        if decision.forward:  # the call's other members (`_meta`, input responses) are data sent to the server
            members, member_data = self._sinks.check(self.identity, _CALL, params, self._inputs.asked)
            if members.outcome != "allow" and combine(decision, members) != decision:
                decision, verdict, flow_data = combine(decision, members), members, {**flow_data, **member_data}
        entry_hash = self._record_call(message, tool, arguments, view, decision, flow_data)
        if not decision.forward:
            if verdict is not None and verdict.outcome == "deny":
                return Refuse(FlowDenied(decision.rule, decision.reason, {**verdict.error_data(), "method": _CALL}))
            return Refuse(PolicyDenied(decision.rule, decision.reason))
        forwarded = None
        if decision.inject:
            forwarded = {**message, "params": {**params, "arguments": {**arguments, **decision.inject}}}
        suspect = view is not None and bool(view.findings)
        own = self.provenance.prints_of(arguments) if self._flows.precise else frozenset()
        return Forward(Call(entry_hash, tool, view.hash if view is not None else None, facts, suspect, own), forwarded)

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

    def _record_refusal(self, method: str, message: JsonObject, decision: Decision, data: dict[str, Any]) -> None:
        """The entry of a message that is not a tool call, refused (or shadow-refused)."""
        if self._log is not None:
            self._log.record(
                kind="call",
                server=self.identity,
                tool=method[:200],
                request_id=log_request_id(message.get("id")),
                args_hash=hashlib.sha256(jsonrpc.encode(message.get("params"))).hexdigest(),
                decision=decision.outcome,
                rule=decision.rule,
                reason=decision.reason,
                data={"channel": "request" if "id" in message else "notification", **data},
            )

    # -- upstream -> client -------------------------------------------------------------------

    def on_upstream_notification(self, method: str, message: JsonObject) -> JsonObject | None:
        """Every notification that carries content is a source: labelled (`Labelling.notification`)."""
        if method == _LIST_CHANGED:
            # Calls stay decided on the descriptors the model was shown; the client's next
            # tools/list is checked against the pins like the first.
            log.info("the server says its tools changed; the next listing is re-checked", server=self.identity)
        if method in methods.CONTENTLESS_NOTIFICATIONS:
            return None
        return self._labelling.notification(method, message)

    def on_upstream_request(self, method: str, message: JsonObject) -> Verdict:
        """Sampling, elicitation, roots (`inputs.Inputs.request`): decided, labelled, and the
        client's answer checked (`on_client_response`)."""
        return self._inputs.request(method, message)

    def on_client_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        """The client's answer to a request of the upstream goes to the upstream: the flow rules
        check it as the arguments of a call to `SERVER.METHOD` (class `egress` unless declared).
        A denial sends the upstream an error instead."""
        if type(context) is not ServerRequest:
            raise InvalidParams(f"the gateway let no request {method!r} through that this answers; withheld")
        members = {key: message[key] for key in ("result", "error") if message.get(key) is not None}
        verdict, flow_data = self._sinks.answer(self.identity, method, members)
        if self._log is not None and (context.entry_hash is not None or verdict.outcome != "allow"):
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
            return self._results.call_result(context, message)
        if type(context) is Read:
            return self._results.read_result(context, message)
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


def _envelope(params: dict[str, Any]) -> dict[str, Any]:
    """The params of the gateway's own request made for a client's: the protocol's `_meta` keys
    of the client's request (a 2026-07-28 upstream needs its per-request version and client
    info), nothing else of it."""
    meta = params.get("_meta")
    if type(meta) is not dict:
        return {}
    kept = {k: v for k, v in meta.items() if type(k) is str and k.startswith(methods.PROTOCOL_META)}
    return {"_meta": kept} if kept else {}


_NOW: list[Any] = [-1, ""]  # (the second, its text): a result's time is formatted once a second


def _utc_now() -> str:
    second = int(time.time())
    if second != _NOW[0]:
        _NOW[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))]
    return str(_NOW[1])


_FORWARD: Final = Forward()
