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
from gateway.receipts import descriptor_hash

_CALL: Final = "tools/call"
_LIST: Final = "tools/list"


@dataclass(frozen=True, slots=True)
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
            return verdict if isinstance(verdict, Refuse) else Forward(_Recorded(verdict.context, None, None), verdict.message)
        forwarded = verdict.message if isinstance(verdict, Forward) and verdict.message is not None else message
        params = forwarded.get("params")
        params = params if type(params) is dict else {}
        tool = params.get("name") if type(params.get("name")) is str else None
        arguments = params.get("arguments")
        data: dict[str, Any] = {}
        if self._store_raw and arguments is not None:
            data["arguments"] = jsonrpc.encode(arguments).decode()
        if isinstance(verdict, Refuse):
            error = verdict.error
            rule = error.rule if isinstance(error, PolicyDenied) else f"gateway.{type(error).__name__}"
            reason = error.reason if isinstance(error, PolicyDenied) else error.message
            decision = "deny"
        else:
            rule, reason, decision = "default.allow", "no rule denies this call", "allow"
        call_hash = self._log.append(
            "call",
            server=self._server,
            tool=tool,
            request_id=log_request_id(message.get("id")),
            descriptor_hash=self._descriptors.get(tool) if tool is not None else None,
            args_hash=_hash(arguments) if arguments is not None else None,
            decision=decision,
            rule=rule,
            reason=reason,
            data=data,
        )
        if isinstance(verdict, Refuse):
            return verdict
        return Forward(_Recorded(verdict.context, call_hash, tool), verdict.message)

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        recorded: _Recorded = context
        out = self._inner.on_upstream_response(method, recorded.inner, message)
        if type(out) is bytes:
            out = jsonrpc.decode(out)
        assert type(out) is dict
        if method == _CALL:
            # Hash exactly the bytes the client will get, and hand those bytes to the relay.
            encoded = jsonrpc.encode(out)
            result = out.get("result")
            is_error = "error" in out or (type(result) is dict and result.get("isError") is True)
            data: dict[str, Any] = {"call": recorded.call_hash, "is_error": is_error}
            if self._store_raw:
                data["response"] = encoded.decode()
            self._log.append(
                "result",
                server=self._server,
                tool=recorded.tool,
                request_id=log_request_id(out.get("id")),
                descriptor_hash=self._descriptors.get(recorded.tool) if recorded.tool else None,
                result_hash=hashlib.sha256(encoded).hexdigest(),
                data=data,
            )
            return encoded
        elif method == _LIST:
            self._record_descriptors(out)
        return out

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
