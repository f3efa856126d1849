"""Descriptor listings, screened: every `tools/list` (and prompts, resources, templates, and
the `instructions` of `initialize`) is hashed item by item, compared with the pins (the
lockfile's, else those of the session's first listing: a rug pull within a session is caught
even without a lockfile), and scanned for poisoning. Tools the policy denies outright, changed
tools, blocked unpinned tools and flagged tools are removed from the list the model sees;
arguments the policy fixes are removed from the schema the model sees. Each listing is written
to the flight log as a `descriptor` entry.

Scan findings are memoised per process (`reset_memos` forgets them, for benchmarks).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Final

import structlog

from gateway.evidence.flightlog import FlightLog
from gateway.policy import schemacheck
from gateway.policy.engine import CompiledPolicy, ToolView
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import JsonObject
from gateway.protocol.names import normalise
from gateway.screening import scan
from gateway.screening.descriptors import descriptor_hash, item_key
from gateway.screening.pins import Lock, ServerPins
from gateway.screening.scan import Finding, scan_text, scan_tool, scan_value

log = structlog.get_logger("airlock.policy")

#: Finding techniques that count in server instructions (text addressed to the model by design,
#: so phrasing heuristics do not apply there; hidden characters and escapes do).
_CHARACTER_TECHNIQUES: Final = frozenset({"invisible", "tag-characters", "bidi", "terminal-escape", "control"})


class Listings:
    """One session's view of one server's listings: its pins, the tools as last shown to the
    model (`tools`, what calls are decided on), which kinds were listed completely (`listed`),
    and why the whole server is blocked, if it is (`blocked_server`)."""

    def __init__(
        self,
        policy: CompiledPolicy,
        *,
        identity: str,
        lock: Lock | None,
        on_new_pins: Callable[[str, ServerPins], None] | None,
        flight_log: FlightLog | None,
    ) -> None:
        self._policy = policy
        self.identity = identity
        self._lock = lock
        self._on_new_pins = on_new_pins
        self._log = flight_log
        self._pins = ServerPins()
        self._pins_loaded = False
        self.tools: dict[str, ToolView] = {}
        self._views: dict[tuple[str, str], ToolView] = {}
        self.blocked_server: str | None = None
        self.listed: set[str] = set()  # kinds whose first complete listing was seen
        self.changes = 0  # listings of tools seen: what is derived from `tools` is memoised on it

    def rename(self, identity: str) -> None:
        """The server's name changed (learned from `initialize`): its pins are looked up again."""
        self.identity = identity
        self._pins_loaded = False

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
        return {
            normalise(name): server
            for server, pins in self._lock.servers.items()
            if server != self.identity
            for name in pins.names("tools")
        }

    def pinned_view(self, tool: str) -> ToolView | None:
        """A tool the session has not listed but the lockfile pins: decided on its pinned form."""
        pin = self._server_pins().get("tools", tool)
        if pin is None or type(pin.descriptor) is not dict:
            return None
        return self._view(pin.descriptor, pin.hash, "pinned", None, ())

    def _view(
        self, descriptor: Mapping[str, Any], digest: str, pin: Any, pinned_hash: str | None, findings: tuple[Finding, ...]
    ) -> ToolView:
        key = (digest, pin)
        view = self._views.get(key)
        if view is None or view.pinned_hash != pinned_hash or view.findings != findings:
            view = ToolView.build(self.identity, descriptor, digest, pin, pinned_hash=pinned_hash, findings=findings)
            if len(self._views) > 4096:
                self._views.clear()
            self._views[key] = view
        return view

    def instructions(self, message: JsonObject) -> JsonObject:
        """An `initialize` (or `server/discover`) result, its `instructions` pinned and scanned
        like a listed item and withheld from the model when blocked."""
        result: dict[str, Any] = message["result"]
        instructions = result.get("instructions")
        if type(instructions) is not str:
            return message
        digest = descriptor_hash(instructions)
        pins = self._server_pins()
        status, pinned_hash = self._pin_status(pins, "instructions", "instructions", instructions, digest)
        findings = tuple(f for f in scan_text(instructions, "instructions") if f.technique in _CHARACTER_TECHNIQUES)
        blocked = self._blocked(status, findings)
        self._record_descriptors("instructions", [_item("instructions", digest, status, pinned_hash, findings, not blocked)], None)
        self.listed.add("instructions")
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
        first_sight = self._lock is None and kind not in self.listed  # no lockfile: the first listing is the pin
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

    def listing(self, kind: str, message: JsonObject) -> JsonObject:
        """A listing result of `kind` (`tools`, `prompts`, ...), screened: see the module doc."""
        result: dict[str, Any] = message["result"]
        items = result.get(kind)
        if type(items) is not list:
            return message
        pins = self._server_pins()
        self.changes += kind == "tools"
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
                self.tools[key] = view
                if status == "changed" and self._policy.source.pins.changed == "block-server" and not self._policy.shadow:
                    self.blocked_server = (
                        f"a tool of server {self.identity!r} ({key!r}) changed since it was pinned and the policy "
                        "blocks the whole server; review with 'airlock pin --diff', re-pin with 'airlock pin'"
                    )
                if shown and self._policy.hides(self.identity, key, item):
                    shown, blocked = False, "denied by the policy"
                if shown:
                    item = _hide_arguments(item, self._policy.hidden_arguments(self.identity, key, item))
            if blocked is not None and blocked != "denied by the policy":
                log.warning(
                    f"{kind[:-1] if kind.endswith('s') else kind} withheld from the model", server=self.identity, name=key, why=blocked
                )
            listed.append(_item(key, digest, status, pinned_hash, findings, shown))
            if shown:
                kept.append(item)
        if self.blocked_server is not None and kind == "tools":
            kept = []
        cursor = result.get("nextCursor")
        if type(cursor) is not str:
            self.listed.add(kind)  # the first complete listing is in: later additions are new
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


def reset_memos() -> None:
    """Forget every memoised scan and schema check (as in a new process; for benchmarks)."""
    _scan_memos.clear()
    schemacheck.clear_cache()
    scan.clear_memo()


def _item(key: str | None, digest: str, status: str, pinned_hash: str | None, findings: tuple[Finding, ...], shown: bool) -> dict[str, Any]:
    return {
        "name": key,
        "hash": digest,
        "pin": status,
        "pinned_hash": pinned_hash,
        "shown": shown,
        "findings": [f.to_json() for f in findings],
    }


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
