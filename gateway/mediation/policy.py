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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway import jsonrpc
from gateway.descriptors import LIST_METHODS, descriptor_hash, item_key
from gateway.errors import InvalidParams, PolicyDenied
from gateway.flightlog import FlightLog
from gateway.jsonrpc import JsonObject
from gateway.mediation.interface import Forward, Refuse, Verdict
from gateway.names import normalise
from gateway.pins import Lock, ServerPins
from gateway.policy.engine import CallRequest, CompiledPolicy, Decision, SessionState, ToolView, decide
from gateway.scan import Finding, neutralise_line, scan_text, scan_tool, scan_value

log = structlog.get_logger("airlock.policy")

_CALL: Final = "tools/call"
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
        decision = self._decide(tool, arguments, view)
        entry_hash = self._record_call(message, tool, arguments, view, decision)
        if not decision.forward:
            return Refuse(PolicyDenied(decision.rule, decision.reason))
        forwarded = None
        if decision.inject:
            forwarded = {**message, "params": {**params, "arguments": {**arguments, **decision.inject}}}
        return Forward(_Call(entry_hash, tool, view.hash if view is not None else None), forwarded)

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
                     decision: Decision) -> str | None:  # fmt: skip
        if self._log is None:
            return None
        encoded = jsonrpc.encode(arguments)
        data: dict[str, Any] = {}
        if self._store_raw:
            data["arguments"] = encoded.decode()
        return self._log.record(
            "call", self.identity, tool, log_request_id(message.get("id")), view.hash if view is not None else None,
            hashlib.sha256(encoded).hexdigest(), None, decision.outcome, decision.rule, decision.reason, data,
        )  # fmt: skip

    # -- upstream -> client -------------------------------------------------------------------

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        if method == _LIST_CHANGED:
            # Calls stay decided on the descriptors the model was shown; the client's next
            # tools/list is checked against the pins like the first.
            log.info("the server says its tools changed; the next listing is re-checked", server=self.identity)

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        if method == _CALL:
            return self._result(context, message)
        if type(context) is _Listing and type(message.get("result")) is dict:
            if method in _HANDSHAKES:
                return self._handshake(message)
            return self._listing(LIST_METHODS[method], message)
        return message

    def _result(self, call: _Call, message: JsonObject) -> bytes:
        encoded = neutralise_line(jsonrpc.encode(message))  # hash exactly what the client gets
        if self._log is not None:
            result = message.get("result")
            data: dict[str, Any] = {
                "call": call.entry_hash,
                "is_error": "error" in message or (type(result) is dict and result.get("isError") is True),
            }
            if self._store_raw:
                data["response"] = encoded.decode()
            self._log.record(
                "result", self.identity, call.tool, log_request_id(message.get("id")), call.descriptor_hash, None,
                hashlib.sha256(encoded).hexdigest(), None, None, None, data,
            )  # fmt: skip
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
        for item in items:
            key = item_key(kind, item)
            digest = descriptor_hash(item)
            if key is None:
                listed.append(_item(None, digest, "invalid", None, (), False))
                continue  # an item without a name cannot be pinned or called: withheld
            status, pinned_hash = self._pin_status(pins, kind, key, item, digest)
            newly_pinned |= status == "new-pinned"
            findings = tuple(scan_tool(item, siblings=names, other_servers=others) if kind == "tools" else scan_value(item))
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
