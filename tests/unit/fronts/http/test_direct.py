"""gateway/fronts/http/direct.py: which POSTs take `airlock serve`'s fast path (the rest take the
SDK's path, with its standard answers and errors)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.fronts.http.direct import candidate

BOTH = b"application/json, text/event-stream"
CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
PROGRESS = {**CALL, "params": {"name": "echo", "_meta": {"progressToken": "t"}}}
HEADERS = {b"accept": BOTH, b"mcp-protocol-version": b"2025-11-25"}


def _pick(message: Any, headers: dict[bytes, bytes] | None = None, *, json_only: bool = False, resumable: bool = False,
          open_ids: tuple[Any, ...] = ()) -> bool:  # fmt: skip
    body = message if type(message) is bytes else orjson.dumps(message)
    return candidate(body, headers if headers is not None else HEADERS, json_only=json_only, resumable=resumable,
                     open_ids=lambda i: i in open_ids) is not None  # fmt: skip


CASES = [
    # (name, message, headers, options, fast path?)
    ("a plain call", CALL, None, {}, True),
    ("a string id", {**CALL, "id": "abc"}, None, {}, True),
    ("no protocol header (SDK default)", CALL, {b"accept": BOTH}, {}, True),
    ("initialize", {**CALL, "method": "initialize"}, None, {}, False),
    ("a notification", {"jsonrpc": "2.0", "method": "notifications/initialized"}, None, {}, False),
    ("a response", {"jsonrpc": "2.0", "id": 1, "result": {}}, None, {}, False),
    ("a batch", [CALL], None, {}, False),
    ("not JSON", b"{nope", None, {}, False),
    ("wrong jsonrpc", {**CALL, "jsonrpc": "1.0"}, None, {}, False),
    ("method not a string", {**CALL, "method": 5}, None, {}, False),
    ("null id", {**CALL, "id": None}, None, {}, False),
    ("float id", {**CALL, "id": 1.5}, None, {}, False),
    ("boolean id", {**CALL, "id": True}, None, {}, False),
    ("params not an object", {**CALL, "params": [1]}, None, {}, False),
    ("an id still open", CALL, None, {"open_ids": (1,)}, False),
    ("unknown protocol version", CALL, {**HEADERS, b"mcp-protocol-version": b"1999-01-01"}, {}, False),
    ("Accept without SSE", CALL, {**HEADERS, b"accept": b"application/json"}, {}, False),
    ("Accept without SSE, JSON mode", CALL, {**HEADERS, b"accept": b"application/json"}, {"json_only": True}, True),
    ("Accept */*", CALL, {**HEADERS, b"accept": b"*/*"}, {}, True),
    ("no Accept", CALL, {b"mcp-protocol-version": b"2025-11-25"}, {}, False),
    ("Last-Event-ID", CALL, {**HEADERS, b"last-event-id": b"3"}, {}, False),
    ("progress token, resumable session", PROGRESS, None, {"resumable": True}, False),
    ("progress token, no resumability", PROGRESS, None, {}, True),
]


@pytest.mark.parametrize(("message", "headers", "options", "expected"), [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_only_plain_requests_take_the_fast_path(message: Any, headers: dict[bytes, bytes] | None, options: dict[str, Any],
                                                 expected: bool) -> None:  # fmt: skip
    assert _pick(message, headers, **options) is expected
