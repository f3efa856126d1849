"""JSON-RPC 2.0 envelopes as the gateway sees them: decode, classify, encode. Pure, no I/O.

The gateway forwards *what it parsed*, re-encoded, never the raw bytes it received. A parser
differential (duplicate keys, where one parser keeps the first and another the last) could
otherwise show the gateway one tool name and the upstream another. Re-encoding keeps key
order and values; only insignificant whitespace changes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from gateway.errors import GatewayError, InvalidRequest, MessageTooLarge, ParseError

JsonObject = dict[str, Any]
RequestId = int | str

#: How much of an oversized or undecodable line is searched for its `id`.
ID_PROBE_BYTES: Final = 64 * 1024

# orjson turns integers of 2**64 and above into floats, silently changing the value. Any such
# literal has at least 19 digits in a row: lines with such a run take the exact parser.
_DIGIT_MAP: Final = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN: Final = b"0" * 19


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number {literal[:40]} overflows a double")
    return value


#: How deep arrays and objects may nest in a message, either way: far beyond what MCP messages
#: and JSON Schemas need, and within what orjson re-encodes (254), so every message the gateway
#: accepts it can also forward, hash and log.
MAX_DEPTH: Final = 128
#: For files that hold messages inside a few levels of their own (cassette lines, lockfiles).
FILE_DEPTH: Final = MAX_DEPTH + 8

_STRICT_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def decode(line: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse one JSON text, nested at most `max_depth` levels (a file that wraps messages, a
    cassette line or a lockfile, allows the few levels it adds: `FILE_DEPTH`).

    orjson is the fast path. It would turn integers beyond 64 bits into floats, so lines that
    may hold one take the standard library's exact parser, which then also refuses NaN,
    Infinity and overflowing numbers exactly as orjson does.

    Raises:
        ParseError: not UTF-8, or not JSON.
        MessageTooLarge: nested deeper than `max_depth`.
    """
    if _LONG_DIGIT_RUN in line.translate(_DIGIT_MAP):
        value = _decode_exact(line, "")
    else:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as fast_error:
            value = _decode_exact(line, str(fast_error))
    # Only a line with more brackets than the limit can nest past it: most lines skip the walk.
    if line.count(b"[") + line.count(b"{") > max_depth:
        check_depth(value, max_depth)
    return value


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raises MessageTooLarge if `value` nests arrays and objects deeper than `limit`.
    Iterative: any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise MessageTooLarge(
                f"message nested more than {limit} levels deep; the gateway accepts at most {limit}",
                data={"limit": limit},
            )
        children = node.values() if type(node) is dict else node if type(node) is list else ()
        stack.extend((child, depth + 1) for child in children if type(child) is dict or type(child) is list)


def _decode_exact(line: bytes, fast_error: str) -> Any:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"message is not valid UTF-8 (byte offset {exc.start})") from None
    try:
        return _STRICT_DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"message is not valid JSON: {fast_error or exc}") from None


def encode(message: Any) -> bytes:
    """Serialise a message for the wire (compact, key order kept, no trailing newline)."""
    try:
        return orjson.dumps(message)
    except (TypeError, orjson.JSONEncodeError):
        # Integers beyond 64 bits and lone surrogates: the standard library writes them as
        # valid JSON (surrogates escaped).
        return json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def encode_pretty(value: Any) -> bytes:
    """Stable, reviewable text for files people diff (lockfiles): sorted keys, two-space
    indent, UTF-8, a final newline. The same value always gives the same bytes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass") + b"\n"


def members(value: Any) -> JsonObject:
    """`value` if it is a JSON object, else an empty one (for reading optional members such as
    `params` or `_meta` without a type check at every step)."""
    return value if type(value) is dict else {}


def is_valid_id(value: object) -> bool:
    """MCP request ids are strings or integers; never null, booleans or fractions."""
    return (type(value) is int) or (type(value) is str)


Kind = Literal["request", "notification", "response"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the relay needs to know about one message."""

    kind: Kind
    message: JsonObject
    method: str | None
    id: RequestId | None


def classify(message: Any) -> Envelope:
    """Sort a decoded message into request, notification or response.

    Raises:
        InvalidRequest: not an object, wrong `jsonrpc` member, bad id or method, or an
            object that is none of the three kinds. `data.id` carries the id when one is known.
    """
    if type(message) is not dict:
        if type(message) is list:
            raise InvalidRequest("JSON-RPC batches are not supported: MCP sends one message per line")
        raise InvalidRequest(f"a JSON-RPC message must be an object, got {type(message).__name__}")
    raw_id = message.get("id")
    known_id = raw_id if is_valid_id(raw_id) else None
    if message.get("jsonrpc") != "2.0":
        raise _invalid('the "jsonrpc" member must be "2.0"', known_id)
    method = message.get("method")
    has_id = "id" in message
    if method is not None:
        if type(method) is not str or not method:
            raise _invalid('"method" must be a non-empty string', known_id)
        params = message.get("params")
        if params is not None and type(params) is not dict:
            raise _invalid('"params" must be an object', known_id)
        if not has_id:
            return Envelope("notification", message, method, None)
        if known_id is None:
            raise _invalid('a request "id" must be a string or an integer', None)
        return Envelope("request", message, method, known_id)
    if ("result" in message) == ("error" in message):
        raise _invalid('a message needs "method", or exactly one of "result" and "error"', known_id)
    if known_id is None:
        # A response to a request whose id the peer could not read carries id null.
        if raw_id is None and "error" in message:
            return Envelope("response", message, None, None)
        raise _invalid('a response "id" must be a string or an integer', None)
    return Envelope("response", message, None, known_id)


def _invalid(why: str, known_id: RequestId | None) -> InvalidRequest:
    return InvalidRequest(why, data=None if known_id is None else {"id": known_id})


def error_response(request_id: RequestId | None, error: GatewayError) -> bytes:
    """A complete JSON-RPC error response line (without newline)."""
    return encode({"jsonrpc": "2.0", "id": request_id, "error": error.to_error_object()})


def batch_error_response(batch: list[Any], error: GatewayError) -> bytes:
    """The answer to a batch the gateway refuses whole, as JSON-RPC 2.0 answers a batch: an array
    with one `error` per member that is a request with a valid id (so no caller waits forever),
    or a single one with id null when none is."""
    ids = [m["id"] for m in batch if type(m) is dict and "method" in m and is_valid_id(m.get("id"))]
    replies = [{"jsonrpc": "2.0", "id": i, "error": error.to_error_object()} for i in ids]
    return encode(replies or [{"jsonrpc": "2.0", "id": None, "error": error.to_error_object()}])


def probe_id(prefix: bytes) -> RequestId | None:
    """Find the top-level `id` of a message from its first bytes, if it can be read there.

    Used for lines that are too large or not UTF-8, so that the error can still be addressed
    to the request. Only members that decode completely, before the prefix runs out, count;
    an `id` nested inside `params` is never mistaken for the top-level one.
    """
    # surrogateescape keeps invalid bytes distinguishable: an id that contains one is not
    # the id the client meant, so it is not used.
    text = prefix[:ID_PROBE_BYTES].decode("utf-8", errors="surrogateescape")
    decoder = _STRICT_DECODER
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "{":
        return None
    pos += 1
    found: RequestId | None = None
    while True:
        pos = _skip_ws(text, pos)
        try:
            key, pos = decoder.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if pos >= len(text) or text[pos] != ":":
                return found
            value, pos = decoder.raw_decode(text, _skip_ws(text, pos + 1))
        except (ValueError, RecursionError):
            return found
        pos = _skip_ws(text, pos)
        # A member counts only once the next delimiter is seen: `"id":12` at the very end of
        # the prefix may be the start of `"id":123`.
        if pos >= len(text) or text[pos] not in ",}":
            return found
        if key == "id" and is_valid_id(value) and not (type(value) is str and _has_surrogate(value)):
            found = value
        if text[pos] == "}":
            return found
        pos += 1


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos
