"""The stand-in upstream of `replay`: it answers the live relay's upstream requests from a
cassette. A live request matches a recorded `g2u` request by method and params (`tools/call`:
tool name and arguments; ids are rewritten to the live id); a recorded response is delivered
when the walk reaches its place. A request the recording never sent is answered by the last
recorded response to the same method; a `tools/call` the recording never forwarded cannot be
answered: it gets an error, and is listed in `unanswerable`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from gateway.errors import GatewayError
from gateway.mediation.mediator import log_request_id
from gateway.protocol import jsonrpc, methods
from gateway.recording.cassette import Cassette, CassetteEntry

_CALL: Final = methods.TOOLS_CALL
#: The error a request gets when the cassette has no answer for it.
UNANSWERABLE_CODE: Final = -32603


def id_key(request_id: Any) -> bytes:
    """An id as a dict key that tells 1 from "1" (and big integers from each other)."""
    return jsonrpc.encode(log_request_id(request_id))


def is_request(message: Any) -> bool:
    return type(message) is dict and type(message.get("method")) is str and jsonrpc.is_valid_id(message.get("id"))


def is_response(message: Any) -> bool:
    return type(message) is dict and "method" not in message and "id" in message and ("result" in message or "error" in message)


def match_key(message: Mapping[str, Any]) -> bytes:
    """What identifies a request's answer: `tools/call` by tool and arguments, others by params."""
    method = message["method"]
    params = message.get("params")
    if method == _CALL and type(params) is dict:
        return orjson.dumps([method, params.get("name"), params.get("arguments") or {}], option=orjson.OPT_SORT_KEYS)
    try:
        return orjson.dumps([method, params], option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return jsonrpc.encode([method, repr(params)])


@dataclass(slots=True)
class _Exchange:
    """One request the recording sent upstream, and where its answer is in the cassette."""

    key: bytes
    method: str
    response: CassetteEntry | None = None
    position: int | None = None
    live_id: Any = None
    delivered: bool = False


class MockUpstream:
    """Answers the live relay's upstream requests from the cassette (see the module docstring)."""

    def __init__(self, cassette: Cassette) -> None:
        self.outbox: deque[bytes] = deque()
        self.unanswerable: set[bytes] = set()
        self.cursor = -1
        self._queues: dict[bytes, deque[_Exchange]] = {}
        self._last_by_method: dict[str, _Exchange] = {}
        self.at_position: dict[int, _Exchange] = {}
        open_requests: dict[bytes, _Exchange] = {}
        for position, entry in enumerate(cassette.entries):
            message = entry.message
            if entry.direction == "g2u" and is_request(message):
                exchange = _Exchange(match_key(message), message["method"])
                self._queues.setdefault(exchange.key, deque()).append(exchange)
                open_requests[id_key(message["id"])] = exchange
            elif entry.direction == "u2g" and is_response(message):
                answered = open_requests.pop(id_key(message["id"]), None)
                if answered is not None:
                    answered.response, answered.position = entry, position
                    self.at_position[position] = answered
                    self._last_by_method[answered.method] = answered

    def from_gateway(self, line: bytes) -> None:
        """A line the relay sent upstream: a request is matched; anything else needs no answer."""
        try:
            message = jsonrpc.decode(line)
        except GatewayError:
            return
        if not is_request(message):
            return
        queue = self._queues.get(match_key(message))
        exchange = queue.popleft() if queue else None
        if exchange is not None:
            exchange.live_id = message["id"]
            if exchange.position is not None and exchange.position <= self.cursor:
                self._deliver(exchange)
            return  # else: delivered when the walk reaches its recorded place (or never answered)
        fallback = self._last_by_method.get(message["method"])
        if message["method"] != _CALL and fallback is not None and fallback.response is not None:
            self.outbox.append(_with_id(fallback.response.message, message["id"]))
            return
        self.unanswerable.add(id_key(message["id"]))
        error = {"code": UNANSWERABLE_CODE, "message": "airlock replay: the cassette has no upstream response for this request"}
        self.outbox.append(jsonrpc.encode({"jsonrpc": "2.0", "id": message["id"], "error": error}))

    def reached(self, position: int) -> bool:
        """The walk is at a recorded response: queue it if a live request waits for it.
        Returns False when no live request does (the recording's request was not sent now)."""
        exchange = self.at_position.get(position)
        if exchange is None or exchange.live_id is None or exchange.delivered:
            return False
        self._deliver(exchange)
        return True

    def _deliver(self, exchange: _Exchange) -> None:
        assert exchange.response is not None
        exchange.delivered = True
        self.outbox.append(_with_id(exchange.response.message, exchange.live_id))


def _with_id(message: Any, request_id: Any) -> bytes:
    return jsonrpc.encode({**message, "id": request_id})
