"""Writes a flight-log entry for every decision and result, around another mediator.

Write-ahead: the `call` entry is appended (to the OS) inside `on_client_request`, before the
relay forwards anything. If the append fails (disk full), the exception makes the relay refuse
the call: no decision reaches the upstream unrecorded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from gateway import jsonrpc
from gateway.canonical import CanonicalizationError
from gateway.errors import PolicyDenied
from gateway.flightlog import FlightLog
from gateway.jsonrpc import JsonObject
from gateway.mediation.interface import Forward, Mediator, Refuse, Verdict
from gateway.receipts import Decision, descriptor_hash

_CALL: Final = "tools/call"
_LIST: Final = "tools/list"


@dataclass(slots=True)  # not frozen: built once per call, and frozen init costs 3x
class _Recorded:
    inner: Any
    call_hash: str | None
    tool: str | None


_SAFE_INT: Final = 2**53 - 1


def log_request_id(request_id: Any) -> Any:
    """JSON-RPC ids may be integers of any size; RFC 8785 only has exact integers up to 2**53.
    Larger ones are recorded as {"big_int": "<decimal>"}, so any id can be logged."""
    if type(request_id) is int and not -_SAFE_INT <= request_id <= _SAFE_INT:
        return {"big_int": str(request_id)}
    return request_id


def _hash(value: Any) -> str:
    return hashlib.sha256(jsonrpc.encode(value)).hexdigest()


def _descriptor_hash(tool: Any) -> str:
    try:
        return descriptor_hash(tool)
    except CanonicalizationError:
        # No RFC 8785 form (e.g. an integer beyond 2**53 in a schema): hash the bytes as seen.
        return "raw:" + _hash(tool)


class RecordingMediator:
    def __init__(self, inner: Mediator, log: FlightLog, *, server: str, store_raw: bool = False) -> None:
        self._inner = inner
        self._log = log
        self._server = server
        self._store_raw = store_raw
        self._descriptors: dict[str, str] = {}

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        verdict = self._inner.on_client_request(method, message)
        if method != _CALL:
            if method == _LIST and isinstance(verdict, Forward):
                return Forward(_Recorded(verdict.context, None, None), verdict.message)
            return verdict
        forwarded = verdict.message if isinstance(verdict, Forward) and verdict.message is not None else message
        params = forwarded.get("params")
        if type(params) is not dict:
            params = {}
        tool = params.get("name")
        if type(tool) is not str:
            tool = None
        arguments = params.get("arguments")
        args_hash = None
        data: dict[str, Any] = {}
        if arguments is not None:
            encoded = jsonrpc.encode(arguments)
            args_hash = hashlib.sha256(encoded).hexdigest()
            if self._store_raw:
                data["arguments"] = encoded.decode()
        if isinstance(verdict, Refuse):
            error = verdict.error
            if isinstance(error, PolicyDenied):
                rule, reason = error.rule, error.reason
            else:
                rule, reason = f"gateway.{type(error).__name__}", error.message
            decision: Decision = "deny"
        else:
            rule, reason, decision = "default.allow", "no rule denies this call", "allow"
        descriptor = self._descriptors.get(tool) if tool is not None else None
        call_hash = self._log.record(
            "call", self._server, tool, log_request_id(message.get("id")), descriptor, args_hash, None, decision, rule, reason, data
        )
        if isinstance(verdict, Refuse):
            return verdict
        return Forward(_Recorded(verdict.context, call_hash, tool), verdict.message)

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        if method != _CALL and method != _LIST:
            return self._inner.on_upstream_response(method, context, message)
        recorded: _Recorded = context
        out = self._inner.on_upstream_response(method, recorded.inner, message)
        if type(out) is bytes:
            out = jsonrpc.decode(out)
        assert type(out) is dict
        if method == _LIST:
            self._record_descriptors(out)
            return out
        # Hash exactly the bytes the client will get, and hand those bytes to the relay.
        encoded = jsonrpc.encode(out)
        result = out.get("result")
        data: dict[str, Any] = {
            "call": recorded.call_hash,
            "is_error": "error" in out or (type(result) is dict and result.get("isError") is True),
        }
        if self._store_raw:
            data["response"] = encoded.decode()
        tool = recorded.tool
        self._log.record(
            "result", self._server, tool, log_request_id(out.get("id")), self._descriptors.get(tool) if tool else None,
            None, hashlib.sha256(encoded).hexdigest(), None, None, None, data,
        )  # fmt: skip
        return encoded

    def _record_descriptors(self, message: JsonObject) -> None:
        result = message.get("result")
        tools = result.get("tools") if type(result) is dict else None
        if type(tools) is not list:
            return
        listed = []
        for tool in tools:
            name = tool.get("name") if type(tool) is dict else None
            digest = _descriptor_hash(tool)
            if type(name) is str:
                self._descriptors[name] = digest
            listed.append({"name": name, "hash": digest})
        page = result.get("nextCursor") if type(result) is dict else None
        self._log.append(
            "descriptor",
            server=self._server,
            descriptor_hash=_hash(sorted(t["hash"] for t in listed)),
            data={"tools": listed, "next_cursor": page if type(page) is str else None},
        )
