"""The policy mediator: pins and scans every descriptor list, decides every `tools/call` with
`policy.engine.decide`, and writes the flight log's descriptor, call and result entries.

Write-ahead: a call's entry is appended inside `on_client_request`, before the relay forwards
anything; if the flight log refuses it, the exception makes the relay refuse the call.

Descriptors: every `tools/list` (and prompts, resources, templates, and the `instructions` of
`initialize`) is hashed item by item, compared with the pins (the lockfile's, else those of the
session's first listing: a rug pull within a session is caught even without a lockfile), and
scanned for poisoning. Tools the policy denies outright, changed tools, blocked unpinned tools
and flagged tools are removed from the list the model sees; arguments the policy fixes are
removed from the schema the model sees. After `notifications/tools/list_changed` the client's
next listing is checked like the first; calls are decided on what the model was last shown.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.errors import FlowDenied, InvalidParams, PolicyDenied
from gateway.evidence.flightlog import FlightLog
from gateway.labels import masks
from gateway.labels.provenance import Provenance, field_values
from gateway.mediation.interface import Fetch, Forward, Refuse, Verdict
from gateway.policy import schemacheck
from gateway.policy.engine import CallRequest, CompiledPolicy, Decision, SessionState, ToolView, combine, decide, server_request_decision
from gateway.policy.flows import CompiledFlows, FlowVerdict, ToolFacts, argument_taints, check_flows, reader_values
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import JsonObject
from gateway.protocol.names import name_problem, normalise
from gateway.screening import scan
from gateway.screening.descriptors import LIST_METHODS, descriptor_hash, item_key
from gateway.screening.pins import Lock, ServerPins
from gateway.screening.scan import Finding, neutralise_line, scan_text, scan_tool, scan_value

log = structlog.get_logger("airlock.policy")

_CALL: Final = "tools/call"
_READS: Final = frozenset({"resources/read", "prompts/get", "tasks/result"})
_NAMESPACE_BYTES: Final = masks.META_NAMESPACE.encode()
_HANDSHAKES: Final = frozenset({"initialize", "server/discover"})
_LIST_CHANGED: Final = "notifications/tools/list_changed"
_SERVER_INFO_META: Final = "io.modelcontextprotocol/serverInfo"
_SAFE_INT: Final = 2**53 - 1
#: Finding techniques that count in server instructions (text addressed to the model by design,
#: so phrasing heuristics do not apply there; hidden characters and escapes do).
_CHARACTER_TECHNIQUES: Final = frozenset({"invisible", "tag-characters", "bidi", "terminal-escape", "control"})


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
        self.identity = identity or fallback_identity
        self._lock = lock
        self._on_new_pins = on_new_pins
        self._log = flight_log
        self._store_raw = store_raw
        self._pins = ServerPins()
        self._pins_loaded = False
        self._tools: dict[str, ToolView] = {}
        self._views: dict[tuple[str, str], ToolView] = {}
        self._blocked_server: str | None = None
        self._listed: set[str] = set()  # kinds whose first complete listing was seen
        self._gateway_listed = False  # the gateway listed the tools itself (for a call of an unlisted tool)
        self._tasks: dict[str, _Call] = {}  # task id -> the call that started it
        self._flows = CompiledFlows.from_file(policy.source)
        #: When results were seen, as label sources name them (replay passes a fixed clock).
        self._clock = clock or _utc_now
        #: The session's label state. Shared by every mediator of one session (pass it in),
        #: never between sessions.
        self.provenance: Provenance = provenance if provenance is not None else self._flows.new_provenance()

    # -- pins -------------------------------------------------------------------------------

    def _server_pins(self) -> ServerPins:
        if not self._pins_loaded:
            self._pins_loaded = True
            if self._lock is not None:
                self._pins = self._lock.servers.get(self.identity, ServerPins())
                self._lock.servers[self.identity] = self._pins
        return self._pins

    def _other_servers(self) -> dict[str, str]:
        if self._lock is None:
            return {}
        return {normalise(name): server for server, pins in self._lock.servers.items() if server != self.identity
                for name in pins.names("tools")}  # fmt: skip

    def _session_state(self) -> SessionState:
        return SessionState(server_blocked=self._blocked_server)

    # -- client -> upstream -------------------------------------------------------------------

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        if method == _CALL:
            return self._call(message)
        if method in LIST_METHODS or method in _HANDSHAKES:
            return Forward(_Listing(method))
        if method in _READS:
            call = None
            if method == "tasks/result":
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
        view = self._tools.get(tool)
        if view is None and self._lock is not None:
            view = self._pinned_view(tool)
        if view is None and "tools" not in self._listed and not self._gateway_listed and name_problem(tool) is None:
            # The client calls a tool it did not list in this session (it may have listed
            # before, elsewhere): the gateway lists the tools itself, pins and scans them,
            # then decides the call. Only once: a tool still unknown after that is refused.
            return Fetch("tools/list", {}, _GatewayListing())
        decision = self._decide(tool, arguments, view)
        facts = None
        flow_data: dict[str, Any] = {}
        verdict = None
        if view is not None:
            facts = self._flows.facts(self.identity, tool, view.descriptor.get("annotations"), view.hash)
            if decision.forward:
                verdict, flow_data = self._check_flows(tool, facts, arguments)
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

    def _check_flows(self, tool: str, facts: ToolFacts, arguments: Mapping[str, Any]) -> tuple[FlowVerdict, dict[str, Any]]:
        """The flow verdict, and what the flight log records of it: the labels of every
        argument (those that carry any), the session's, and the exceptions used."""
        if not self._flows.flows:
            return _NO_FLOWS, {}
        provenance = self.provenance
        taints = argument_taints(provenance, arguments) if self._flows.precise else {}
        coarse = provenance.coarse()
        verdict = check_flows(self._flows, self.identity, tool, facts, arguments, taints, coarse, policy_shadow=self._policy.shadow)
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

    def _decide(self, tool: str, arguments: Mapping[str, Any], view: ToolView | None) -> Decision:
        return decide(CallRequest(self.identity, tool, arguments), view, self._session_state(), self._policy)

    def _pinned_view(self, tool: str) -> ToolView | None:
        """A tool the session has not listed but the lockfile pins: decided on its pinned form."""
        pin = self._server_pins().get("tools", tool)
        if pin is None or type(pin.descriptor) is not dict:
            return None
        return self._view(pin.descriptor, pin.hash, "pinned", None, ())

    def _view(self, descriptor: Mapping[str, Any], digest: str, pin: Any, pinned_hash: str | None,
              findings: tuple[Finding, ...]) -> ToolView:  # fmt: skip
        key = (digest, pin)
        view = self._views.get(key)
        if view is None or view.pinned_hash != pinned_hash or view.findings != findings:
            view = ToolView.build(self.identity, descriptor, digest, pin, pinned_hash=pinned_hash, findings=findings)
            if len(self._views) > 4096:
                self._views.clear()
            self._views[key] = view
        return view

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
        forged: list[str] = []
        params = _strip_forged(params, forged)
        texts = _content_texts(params, None)
        for key in ("systemPrompt", "message"):
            if type(params.get(key)) is str:
                texts.append(params[key])
        schema = params.get("requestedSchema")
        if schema is not None:
            texts.extend(_all_strings(schema))  # titles, descriptions, defaults, enums the user sees
        mask = masks.UNTRUSTED
        values = [(t, mask, False) for t in texts]
        pending: tuple[int, list[tuple[str, int, bool]], frozenset[str], list[str]] = (mask, values, frozenset(), forged)
        self._remember(method, hashlib.sha256(jsonrpc.encode(params)).hexdigest(), pending)
        meta = dict(params.get("_meta") or {}) if type(params.get("_meta")) is dict else {}
        meta = {k: v for k, v in meta.items() if not (type(k) is str and k.startswith(masks.META_NAMESPACE))}
        meta[masks.META_KEY] = masks.to_meta(mask, source={"server": self.identity, "tool": method})
        return Forward(_ServerRequest(method, entry_hash), {**message, "params": {**params, "_meta": meta}})

    def on_client_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        """The client's answer to a sampling or elicitation request goes to the upstream: the
        flow rules check it as the arguments of a call to `SERVER.METHOD` (class `egress`
        unless declared). A denial sends the upstream an error instead."""
        if type(context) is not _ServerRequest:
            return message
        result = message.get("result")
        arguments = {"result": result} if result is not None else {}
        facts = self._flows.facts(self.identity, method, None, None)
        verdict, flow_data = self._check_flows(method, facts, arguments)
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
                self._listing("tools", message)
            return message
        if type(context) is _Listing and type(message.get("result")) is dict:
            if method in _HANDSHAKES:
                return self._handshake(message)
            return self._listing(LIST_METHODS[method], message)
        return message

    def _label(self, tool: str, facts: ToolFacts | None, suspect: bool, message: JsonObject) -> tuple[JsonObject, Any]:
        """The message with the gateway's labels in the result's `_meta` (upstream-forged ones
        removed), and what to fingerprint once the result's hash is known."""
        mask = 0 if facts is not None and facts.trusted else masks.UNTRUSTED
        if facts is not None:
            mask |= facts.returns
        result = message.get("result")
        if "error" in message or type(result) is not dict:
            error = message.get("error")
            text = [(jsonrpc.encode(error).decode(), mask | masks.SUSPECT, False)] if error is not None else []
            return message, (mask | masks.SUSPECT, text, frozenset(), [])
        if result.get("isError") not in (None, False) or suspect:  # SDKs coerce 1 and "true" to True
            mask |= masks.SUSPECT
        forged: list[str] = []
        if _NAMESPACE_BYTES in jsonrpc.encode(result):  # the walk only when the namespace appears at all
            result = _strip_forged(result, forged)
        structured = result.get("structuredContent")
        values: list[tuple[str, int, bool]] = []
        matched: dict[str, int] = {}
        tracing = bool(self._flows.flows)  # without flow rules nothing is fingerprinted: only the labels are needed
        if structured is not None and (tracing or (facts is not None and facts.fields)):
            if facts is not None:
                values, matched = field_values(structured, facts.fields, mask, facts.trusted_fields)
            else:
                values, _ = field_values(structured, {}, mask)
        content_mask = mask
        for level in matched.values():
            content_mask |= level
        readers: frozenset[str] = frozenset()
        if tracing:
            values.extend((text, content_mask, False) for text in _content_texts(result, structured))
            readers = reader_values(structured, facts.readers) if facts is not None and facts.readers else frozenset()
        joined = content_mask
        meta = dict(result.get("_meta") or {}) if type(result.get("_meta")) is dict else {}
        meta[masks.META_KEY] = masks.to_meta(joined, fields=matched or None, source={"server": self.identity, "tool": tool})
        result = {**result, "_meta": meta}
        if forged:
            log.warning("upstream result carried labels in airlock's _meta namespace: removed", server=self.identity, tool=tool,
                        keys=forged)  # fmt: skip
        return {**message, "result": result}, (joined, values, readers, forged)

    def _remember(self, tool: str, result_hash: str, pending: Any, own: frozenset[int] = frozenset()) -> dict[str, Any]:
        mask, values, readers, forged = pending
        data: dict[str, Any] = {"labels": masks.names_of(mask)}
        if forged:
            data["forged_labels_removed"] = forged
        if not self._flows.flows:
            self.provenance.mask |= mask  # nothing consults sources or fingerprints
            return data
        stamp = self._clock()
        _, ok = self.provenance.add(self.identity, tool, result_hash, stamp, mask, values, readers, own)
        if not ok:
            log.warning("label provenance is full for this session: flow checks are coarse from now on", server=self.identity,
                        cap=self.provenance.cap)  # fmt: skip
            data["provenance"] = "saturated: flow checks are coarse from now on"
        return data

    def _read_result(self, read: _Read, message: JsonObject) -> bytes:
        call = read.call
        if call is not None:
            labelled, pending = self._label(call.tool, call.facts, call.suspect, message)
        else:  # an unknown task is suspect: its tool's declarations cannot be applied
            labelled, pending = self._label(read.method, None, read.method == "tasks/result", message)
        encoded = neutralise_line(jsonrpc.encode(labelled))
        self._remember(read.method, hashlib.sha256(encoded).hexdigest(), pending)
        return encoded

    def _result(self, call: _Call, message: JsonObject) -> bytes:
        result = message.get("result")
        task = result.get("task") if type(result) is dict else None
        if type(task) is dict and type(task.get("taskId")) is str:
            # A task-augmented call: the real result comes later through tasks/result.
            if len(self._tasks) >= 10_000:
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[task["taskId"]] = call
        message, pending = self._label(call.tool, call.facts, call.suspect, message)
        encoded = neutralise_line(jsonrpc.encode(message))  # hash exactly what the client gets
        result_hash = hashlib.sha256(encoded).hexdigest()
        label_data = self._remember(call.tool, result_hash, pending, call.own)
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
            self.identity = server_identity(info["name"])
            self._pins_loaded = False
        instructions = result.get("instructions")
        if type(instructions) is not str:
            return message
        digest = descriptor_hash(instructions)
        pins = self._server_pins()
        status, pinned_hash = self._pin_status(pins, "instructions", "instructions", instructions, digest)
        findings = tuple(f for f in scan_text(instructions, "instructions") if f.technique in _CHARACTER_TECHNIQUES)
        blocked = self._blocked(status, findings)
        self._record_descriptors("instructions", [_item("instructions", digest, status, pinned_hash, findings, not blocked)], None)
        self._listed.add("instructions")
        if self._on_new_pins is not None and status == "new-pinned":
            self._on_new_pins(self.identity, pins)
        if blocked is None:
            return message
        log.warning("server instructions withheld from the model", server=self.identity, why=blocked)
        return {**message, "result": {k: v for k, v in result.items() if k != "instructions"}}

    def _pin_status(self, pins: ServerPins, kind: str, key: str, descriptor: Any, digest: str) -> tuple[str, str | None]:
        """`pinned`, `changed`, `new`, or `new-pinned` (trust on first use took it)."""
        status = pins.status(kind, key, digest)
        pin = pins.get(kind, key)
        first_sight = self._lock is None and kind not in self._listed  # no lockfile: the first listing is the pin
        if status == "new" and (first_sight or self._policy.source.pins.unpinned == "trust-on-first-use"):
            pinned = pins.put(kind, key, descriptor)
            # new-pinned: the lockfile gains it. The pinned hash is returned as on every later
            # listing, so the cached view (keyed by it) is reused, not rebuilt.
            return ("new-pinned" if self._lock is not None else "pinned"), pinned.hash
        return status, pin.hash if pin is not None else None

    def _blocked(self, status: str, findings: tuple[Finding, ...]) -> str | None:
        """Why an item is withheld from the model, or None when it is shown."""
        settings = self._policy.source.pins
        if self._policy.shadow:
            return None
        if status == "changed":
            return "changed since it was pinned; review with 'airlock pin --diff', re-pin with 'airlock pin'"
        if status == "new" and settings.unpinned == "block":
            return "not pinned; review it and pin it with 'airlock pin'"
        if findings and settings.suspect == "block":
            return f"poisoned-suspect: {findings[0].reason} in {findings[0].path}"
        return None

    def _listing(self, kind: str, message: JsonObject) -> JsonObject:
        result: dict[str, Any] = message["result"]
        items = result.get(kind)
        if type(items) is not list:
            return message
        pins = self._server_pins()
        names: list[str] = [t["name"] for t in items if type(t) is dict and type(t.get("name")) is str] if kind == "tools" else []
        others = self._other_servers() if kind == "tools" else {}
        kept: list[Any] = []
        listed = []
        newly_pinned = False
        scans = _scan_memo((kind, tuple(names), tuple(sorted(others.items()))))
        for item in items:
            key = item_key(kind, item)
            digest = descriptor_hash(item)
            if key is None:
                listed.append(_item(None, digest, "invalid", None, (), False))
                continue  # an item without a name cannot be pinned or called: withheld
            status, pinned_hash = self._pin_status(pins, kind, key, item, digest)
            newly_pinned |= status == "new-pinned"
            findings = scans.get(digest)
            if findings is None:
                findings = tuple(scan_tool(item, siblings=names, other_servers=others) if kind == "tools" else scan_value(item))
                scans[digest] = findings
            blocked = self._blocked(status, findings)
            shown = blocked is None
            if kind == "tools":
                pin_state = "pinned" if status in ("pinned", "new-pinned") else status
                view = self._view(item, digest, pin_state, pinned_hash, findings)
                self._tools[key] = view
                if status == "changed" and self._policy.source.pins.changed == "block-server" and not self._policy.shadow:
                    self._blocked_server = (
                        f"a tool of server {self.identity!r} ({key!r}) changed since it was pinned and the policy "
                        "blocks the whole server; review with 'airlock pin --diff', re-pin with 'airlock pin'"
                    )
                if shown and self._policy.hides(self.identity, key, item):
                    shown, blocked = False, "denied by the policy"
                if shown:
                    item = _hide_arguments(item, self._policy.hidden_arguments(self.identity, key, item))
            if blocked is not None and blocked != "denied by the policy":
                log.warning(f"{kind[:-1] if kind.endswith('s') else kind} withheld from the model", server=self.identity, name=key,
                            why=blocked)  # fmt: skip
            listed.append(_item(key, digest, status, pinned_hash, findings, shown))
            if shown:
                kept.append(item)
        if self._blocked_server is not None and kind == "tools":
            kept = []
        cursor = result.get("nextCursor")
        if type(cursor) is not str:
            self._listed.add(kind)  # the first complete listing is in: later additions are new
        self._record_descriptors(kind, listed, cursor if type(cursor) is str else None)
        if newly_pinned and self._on_new_pins is not None:
            self._on_new_pins(self.identity, pins)
        if len(kept) == len(items) and all(a is b for a, b in zip(kept, items, strict=True)):
            return message
        return {**message, "result": {**result, kind: kept}}

    def _record_descriptors(self, kind: str, listed: list[dict[str, Any]], cursor: str | None) -> None:
        if self._log is None:
            return
        self._log.append(
            "descriptor",
            server=self.identity,
            descriptor_hash=hashlib.sha256(jsonrpc.encode(sorted(i["hash"] for i in listed))).hexdigest(),
            data={"list": kind, "items": listed, "next_cursor": cursor},
        )


_SCAN_CONTEXTS: Final = 64
_SCANS_PER_CONTEXT: Final = 4096
_scan_memos: dict[tuple[Any, ...], dict[str, tuple[Finding, ...]]] = {}


def _scan_memo(context: tuple[Any, ...]) -> dict[str, tuple[Finding, ...]]:
    """Scan findings by descriptor hash, for one listing context (the list kind, the names
    listed beside the item and other servers' tool names, which name checks depend on).
    The scan is a pure function of those and the descriptor, whose hash covers all of it, so
    an unchanged tool is scanned once per process, not on every listing of every session."""
    memo = _scan_memos.get(context)
    if memo is None or len(memo) > _SCANS_PER_CONTEXT:
        if len(_scan_memos) >= _SCAN_CONTEXTS:
            _scan_memos.clear()
        memo = _scan_memos[context] = {}
    return memo


def _strip_forged(result: dict[str, Any], forged: list[str]) -> dict[str, Any]:
    """The result without keys in airlock's `_meta` namespace, wherever a `_meta` object sits
    in it (the result's, content blocks', embedded resources', prompt messages'): only the
    gateway speaks there. The paths of removed keys go into `forged`."""

    def clean(value: Any, path: str) -> Any:
        if type(value) is dict:
            changed = False
            out = {}
            for key, member in value.items():
                where = f"{path}.{key}" if path else str(key)
                if key == "_meta" and type(member) is dict:
                    kept = {k: v for k, v in member.items() if not (type(k) is str and k.startswith(masks.META_NAMESPACE))}
                    if len(kept) != len(member):
                        forged.extend(f"{where}.{k}" for k in member if k not in kept)
                        member, changed = kept, True
                new = clean(member, where)
                changed |= new is not member
                out[key] = new
            return out if changed else value
        if type(value) is list:
            items = [clean(member, f"{path}[{index}]") for index, member in enumerate(value)]
            return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        return value

    cleaned: dict[str, Any] = clean(result, "")
    return cleaned


def _content_texts(result: dict[str, Any], structured: Any) -> list[str]:
    """The texts of a result the model reads: every string of its content blocks (text,
    resource links' URIs, names, titles and descriptions, embedded resources' text, prompt
    messages, sampling content arrays) but base64 data and `_meta`. A text block that is just
    `structuredContent` as JSON (what MCP asks servers to add for old clients) is skipped: the
    fields carry it, labelled field by field."""
    out: list[str] = []

    def add(value: Any, key: str = "") -> None:
        kind = type(value)
        if kind is str:
            if key == "text" and structured is not None and _is_json_of(value, structured):
                return
            out.append(value)
        elif kind is dict:
            for member_key, member in value.items():
                if member_key not in _NOT_READ:
                    add(member, member_key)
        elif kind is list:
            for member in value:
                add(member, key)

    for key in ("content", "contents", "messages"):
        add(result.get(key))
    description = result.get("description")
    if type(description) is str:
        out.append(description)
    return out


def _all_strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is str:
            out.append(node)
        elif type(node) is dict:
            stack.extend(node.keys())
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return out


#: Members of content blocks that are not text the model reads as such.
_NOT_READ: Final = frozenset({"_meta", "data", "blob", "type", "mimeType", "annotations", "size"})


def _is_json_of(text: str, value: Any) -> bool:
    """The text is `value` as JSON, with no duplicate key (a parser keeps only one of them, and
    the model reads both)."""
    if not text or text[0] not in "{[":
        return False

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found = dict(pairs)
        if len(found) != len(pairs):
            raise ValueError("duplicate key")
        return found

    try:
        return bool(json.loads(text, object_pairs_hook=no_duplicates) == value)
    except (ValueError, RecursionError):
        return False


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def reset_memos() -> None:
    """Forget every memoised scan and schema check (as in a new process; for benchmarks)."""
    _scan_memos.clear()
    schemacheck.clear_cache()
    scan.clear_memo()


def _item(key: str | None, digest: str, status: str, pinned_hash: str | None, findings: tuple[Finding, ...], shown: bool) -> dict[str, Any]:
    return {"name": key, "hash": digest, "pin": status, "pinned_hash": pinned_hash, "shown": shown,
            "findings": [f.to_json() for f in findings]}  # fmt: skip


def _hide_arguments(tool: dict[str, Any], hidden: frozenset[str]) -> dict[str, Any]:
    """The tool as the model sees it: arguments the gateway sets are not in its schema."""
    schema = tool.get("inputSchema")
    if not hidden or type(schema) is not dict:
        return tool
    properties = schema.get("properties")
    narrowed = dict(schema)
    if type(properties) is dict:
        narrowed["properties"] = {k: v for k, v in properties.items() if k not in hidden}
    required = schema.get("required")
    if type(required) is list:
        narrowed["required"] = [r for r in required if r not in hidden]
    return {**tool, "inputSchema": narrowed}


def server_identity(name: str) -> str:
    """A server's name as rules and pins use it: normalised, runs of characters other than
    a-z, 0-9, '_' and '-' made one '-' (so `server.tool` splits at the first dot)."""
    out = []
    for char in normalise(name):
        ok = char.isascii() and (char.isalnum() or char in "_-")
        if ok:
            out.append(char)
        elif not out or out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-") or "upstream"


_FORWARD: Final = Forward()
_NO_FLOWS: Final = FlowVerdict("allow")
