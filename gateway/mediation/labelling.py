"""Result labelling: the gateway's labels stamped into a result's `_meta` (labels an upstream
forged in airlock's namespace removed first), and the hand-off of what the result contains to
the session's provenance once the result's hash is known (`PendingLabels`). Server requests
(sampling, elicitation) are labelled untrusted the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.labels import masks
from gateway.labels.provenance import Provenance, field_values
from gateway.policy.flows import CompiledFlows, ToolFacts, reader_values
from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import JsonObject

log = structlog.get_logger("airlock.policy")

_NAMESPACE_BYTES: Final = masks.META_NAMESPACE.encode()


@dataclass(frozen=True, slots=True)
class PendingLabels:
    """What a labelled message hands to the provenance once its hash is known: its labels
    (`mask`), its texts with their own labels (`values`: text, labels, is a structured field),
    who may already read it (`readers`) and the forged label keys removed from it (`forged`)."""

    mask: int
    values: list[tuple[str, int, bool]]
    readers: frozenset[str] = frozenset()
    forged: tuple[str, ...] = ()


class Labelling:
    """Labels one session's results from one server (`identity`), into its `provenance`."""

    def __init__(self, identity: str, flows: CompiledFlows, provenance: Provenance, clock: Callable[[], str]) -> None:
        self.identity = identity
        self._flows = flows
        self.provenance = provenance
        #: When results were seen, as label sources name them (replay passes a fixed clock).
        self._clock = clock

    def label(self, tool: str, facts: ToolFacts | None, suspect: bool, message: JsonObject) -> tuple[JsonObject, PendingLabels]:
        """The message with the gateway's labels in the result's `_meta` (upstream-forged ones
        removed), and what to fingerprint once the result's hash is known."""
        mask = 0 if facts is not None and facts.trusted else masks.UNTRUSTED
        if facts is not None:
            mask |= facts.returns
        result = message.get("result")
        if "error" in message or type(result) is not dict:
            error = message.get("error")
            text = [(jsonrpc.encode(error).decode(), mask | masks.SUSPECT, False)] if error is not None else []
            return message, PendingLabels(mask | masks.SUSPECT, text)
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
            log.warning(
                "upstream result carried labels in airlock's _meta namespace: removed", server=self.identity, tool=tool, keys=forged
            )
        return {**message, "result": result}, PendingLabels(joined, values, readers, tuple(forged))

    def remember(self, tool: str, result_hash: str, pending: PendingLabels, own: frozenset[int] = frozenset()) -> dict[str, Any]:
        """Hand `pending` to the provenance as the result `result_hash` of `tool` (`own`: its
        call's argument fingerprints). Returns what the flight log records of its labels."""
        mask = pending.mask
        data: dict[str, Any] = {"labels": masks.names_of(mask)}
        if pending.forged:
            data["forged_labels_removed"] = list(pending.forged)
        if not self._flows.flows:
            self.provenance.mask |= mask  # nothing consults sources or fingerprints
            return data
        stamp = self._clock()
        _, ok = self.provenance.add(self.identity, tool, result_hash, stamp, mask, pending.values, pending.readers, own)
        if not ok:
            log.warning(
                "label provenance is full for this session: flow checks are coarse from now on",
                server=self.identity,
                cap=self.provenance.cap,
            )
            data["provenance"] = "saturated: flow checks are coarse from now on"
        return data

    def server_request(self, method: str, message: JsonObject, params: dict[str, Any]) -> JsonObject:
        """A sampling or elicitation request from the server, its text labelled untrusted (in
        `params._meta` for the client, and in the session's provenance)."""
        forged: list[str] = []
        params = _strip_forged(params, forged)
        if method not in (methods.SAMPLING, methods.ELICITATION):  # a request the policy lets through unknown: all of it
            texts = _all_strings({k: v for k, v in params.items() if k != "_meta"})
        else:
            texts = _content_texts(params, None)
        for key in ("systemPrompt", "message"):
            if type(params.get(key)) is str:
                texts.append(params[key])
        schema = params.get("requestedSchema")
        if schema is not None:
            texts.extend(_all_strings(schema))  # titles, descriptions, defaults, enums the user sees
        mask = masks.UNTRUSTED | self._flows.source_facts(self.identity).returns  # untrusted whatever the policy says
        return self._stamped(method, message, params, mask, texts, forged)

    def notification(self, method: str, message: JsonObject) -> JsonObject:
        """A notification that carries content (a log message, a progress message, a resource
        update, a method the gateway does not know): labelled by the server's declaration
        (untrusted unless declared trusted), in `params._meta` and in the provenance."""
        params = message.get("params")
        if type(params) is not dict:
            return message
        forged: list[str] = []
        params = _strip_forged(params, forged)
        texts = _all_strings({k: v for k, v in params.items() if k != "_meta"})
        facts = self._flows.source_facts(self.identity)
        mask = (0 if facts.trusted else masks.UNTRUSTED) | facts.returns
        return self._stamped(method, message, params, mask, texts, forged)

    def _stamped(
        self, method: str, message: JsonObject, params: dict[str, Any], mask: int, texts: list[str], forged: list[str]
    ) -> JsonObject:
        """`message` with `params` labelled `mask` in its `_meta`; its `texts` remembered."""
        pending = PendingLabels(mask, [(t, mask, False) for t in texts], frozenset(), tuple(forged))
        self.remember(method, hashlib.sha256(jsonrpc.encode(params)).hexdigest(), pending)
        meta = dict(params.get("_meta") or {}) if type(params.get("_meta")) is dict else {}
        meta = {k: v for k, v in meta.items() if not (type(k) is str and k.startswith(masks.META_NAMESPACE))}
        meta[masks.META_KEY] = masks.to_meta(mask, source={"server": self.identity, "tool": method})
        if forged:
            log.warning("upstream message carried labels in airlock's _meta namespace: removed", server=self.identity, method=method)
        return {**message, "params": {**params, "_meta": meta}}


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
    messages, sampling content arrays, completion values) but base64 data and `_meta`. A text block that is just
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

    for key in ("content", "contents", "messages", "completion"):
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
