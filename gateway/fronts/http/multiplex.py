"""Many HTTP requests onto one upstream session: the ids of a stateless pool (pure).

Each stateless HTTP request is a channel of its principal's pool. Clients choose their request
ids and progress tokens freely, so two requests of one principal may both send `"id": 1`: on
the way in, every request gets an id of the gateway's own (`airlock-stateless-N`) and every
progress token one too (`airlock-progress-N`); on the way out, the response, and every message
related to it, goes to the channel of the request and carries the id and token that channel
sent. The relay, the mediator and the flight log see only the gateway's ids, which never
collide.

A cancellation names a request of its own channel, or is dropped: a client cannot cancel
another channel's request by guessing the gateway's id. Responses to server requests pass as
they are (their ids are the upstream's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import RequestId

REQUEST_PREFIX: Final = "airlock-stateless-"
TOKEN_PREFIX: Final = "airlock-progress-"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message for a gateway id goes: the channel, and the id that channel sent."""

    channel: int
    request_id: RequestId


@dataclass(slots=True)
class _Open:
    route: Route
    token: str | None = None  # the gateway's progress token for it


@dataclass(slots=True)
class Multiplexer:
    """The gateway ids of one pool's open requests, and of their progress tokens."""

    _count: int = 0
    _channels: int = 0
    _open: dict[str, _Open] = field(default_factory=dict)  # gateway id -> its request
    _tokens: dict[str, tuple[str, RequestId]] = field(default_factory=dict)  # gateway token -> (gateway id, client token)
    _by_channel: dict[int, dict[str, RequestId]] = field(default_factory=dict)  # channel -> its open gateway ids -> client ids

    def open_channel(self) -> int:
        """A new channel (one HTTP request)."""
        self._channels += 1
        self._by_channel[self._channels] = {}
        return self._channels

    def inbound(self, channel: int, message: dict[str, Any]) -> dict[str, Any] | None:
        """`message` from `channel` as the pool's session gets it, or None: dropped (a
        cancellation of no request of this channel). The input is not changed."""
        own = self._by_channel.get(channel)
        if own is None:
            return None
        method = message.get("method")
        params = message.get("params")
        if method == methods.CANCELLED and "id" not in message:
            requested = jsonrpc.members(params).get("requestId")
            named = [g for g, c in own.items() if c == requested and type(c) is type(requested)]  # 1 and "1" are two ids
            target = named[-1] if named else None
            if target is None:
                return None
            return {**message, "params": {**jsonrpc.members(params), "requestId": target}}
        request_id = message.get("id")
        if type(method) is not str or not jsonrpc.is_valid_id(request_id):
            return message  # a notification, or a response to a server request
        assert type(request_id) is int or type(request_id) is str
        self._count += 1
        gateway_id = f"{REQUEST_PREFIX}{self._count}"
        opened = _Open(Route(channel, request_id))
        own[gateway_id] = request_id
        self._open[gateway_id] = opened
        rewritten = {**message, "id": gateway_id}
        meta = params.get("_meta") if type(params) is dict else None
        token = meta.get("progressToken") if type(meta) is dict else None
        if type(params) is dict and type(meta) is dict and (type(token) is int or type(token) is str):
            opened.token = f"{TOKEN_PREFIX}{self._count}"
            self._tokens[opened.token] = (gateway_id, token)
            rewritten["params"] = {**params, "_meta": {**meta, "progressToken": opened.token}}
        return rewritten

    def answered(self, gateway_id: Any) -> Route | None:
        """The route of the response to `gateway_id` (which is then closed), or None."""
        opened = self._open.pop(gateway_id, None) if type(gateway_id) is str else None
        if opened is None:
            return None
        self._forget(gateway_id, opened)
        return opened.route

    def related(self, gateway_id: Any) -> Route | None:
        """The route of a message about the open request `gateway_id`, or None."""
        opened = self._open.get(gateway_id) if type(gateway_id) is str else None
        return opened.route if opened is not None else None

    def client_token(self, token: Any) -> RequestId | None:
        """The progress token the client sent, for the gateway's `token`; None if unknown."""
        found = self._tokens.get(token) if type(token) is str else None
        return found[1] if found is not None else None

    def close_channel(self, channel: int) -> list[str]:
        """Forget `channel`; the gateway ids of its requests still open (no one waits for their
        answers any more: the caller cancels them upstream)."""
        own = self._by_channel.pop(channel, {})
        left = []
        for gateway_id in own:
            opened = self._open.pop(gateway_id, None)
            if opened is not None:
                left.append(gateway_id)
                if opened.token is not None:
                    self._tokens.pop(opened.token, None)
        return left

    def _forget(self, gateway_id: str, opened: _Open) -> None:
        if opened.token is not None:
            self._tokens.pop(opened.token, None)
        own = self._by_channel.get(opened.route.channel)
        if own is not None:
            own.pop(gateway_id, None)

    @property
    def open_requests(self) -> int:
        return len(self._open)
