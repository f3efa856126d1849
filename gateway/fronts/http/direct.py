"""The fast path of `airlock serve`: a plain request on an open session, answered by the
gateway itself instead of through the SDK's per-request SSE machinery.

A streamable-HTTP server may answer a POSTed request with either one JSON body or an SSE
stream; clients must accept both. The SDK transport opens an SSE stream for every request (a
task group, memory streams, a pydantic round trip per message), which costs about half of
`airlock serve`'s CPU per call. Most calls get nothing but their response, so here the answer
is decided lazily: the request's line goes to the relay as it came, and

- if the first message for it is its response, that response is the body of a plain
  `application/json` answer;
- if a message related to it comes first (progress, logging, a sampling or elicitation
  request), the answer becomes an SSE stream carrying that message, the ones after it, and the
  response last.

Everything unusual takes the SDK path, which gives the standard answers and errors: `initialize`,
notifications and responses, batches, anything not a JSON-RPC request object, a request id still
open, an unknown `Mcp-Protocol-Version`, an `Accept` without both media types, `Last-Event-ID`,
and, on a resumable session, requests with a progress token (their SSE events carry ids a
client can resume from; fast-path streams carry none).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

import orjson
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from gateway.protocol import methods

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: What a fast-path answer receives: (the message line, whether it is the final response), or
#: None when the request will never be answered (the session ended, the client went away).
Delivery = tuple[bytes, bool] | None

_VERSIONS: Final = frozenset(v.encode() for v in HANDSHAKE_PROTOCOL_VERSIONS)


def _accepts(accept: bytes, json_only: bool) -> bool:
    types = {part.split(b";")[0].strip().lower() for part in accept.split(b",")}
    json_ok = b"application/json" in types or b"*/*" in types or b"application/*" in types
    sse_ok = json_only or b"text/event-stream" in types or b"*/*" in types or b"text/*" in types
    return json_ok and sse_ok


def candidate(
    body: bytes, headers: MutableMapping[bytes, bytes], *, json_only: bool, resumable: bool, open_ids: Callable[[Any], bool]
) -> tuple[Any, dict[str, Any]] | None:
    """(request id, message) when this POST can take the fast path, else None (pure)."""
    version = headers.get(b"mcp-protocol-version")
    if version is not None and version not in _VERSIONS:
        return None
    if b"last-event-id" in headers or not _accepts(headers.get(b"accept", b""), json_only):
        return None
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(message) is not dict or message.get("jsonrpc") != "2.0" or type(message.get("method")) is not str:
        return None
    request_id = message.get("id")
    if type(request_id) not in (int, str) or message["method"] == methods.INITIALIZE or open_ids(request_id):
        return None
    params = message.get("params", {})
    if type(params) is not dict:
        return None
    meta = params.get("_meta")
    if resumable and type(meta) is dict and "progressToken" in meta:
        return None
    return request_id, message


async def answer(queue: asyncio.Queue[Delivery], receive: Receive, send: Send, session_id: bytes) -> None:
    """Write what `queue` delivers for one request as its HTTP answer: JSON if the response
    comes first, else an SSE stream ending with the response. A client that disconnects ends
    the wait (the response, if it comes, is dropped)."""

    async def watch_disconnect() -> None:
        while (await receive()).get("type") != "http.disconnect":
            pass
        queue.put_nowait(None)

    watcher = asyncio.ensure_future(watch_disconnect())
    streaming = False
    try:
        while True:
            delivery = await queue.get()
            if delivery is None:
                if not streaming:
                    body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"no answer: cancelled, or the session ended"}}'
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 500,
                            "headers": [(b"content-type", b"application/json"), (b"mcp-session-id", session_id)],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                else:
                    await send({"type": "http.response.body", "body": b""})
                return
            line, final = delivery
            if final and not streaming:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"mcp-session-id", session_id)],
                    }
                )
                await send({"type": "http.response.body", "body": line})
                return
            if not streaming:
                streaming = True
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [
                            (b"content-type", b"text/event-stream"),
                            (b"cache-control", b"no-cache, no-transform"),
                            (b"mcp-session-id", session_id),
                        ],
                    }
                )
            await send({"type": "http.response.body", "body": b"event: message\ndata: " + line + b"\n\n", "more_body": not final})
            if final:
                return
    finally:
        watcher.cancel()
