"""A request refused for a reused id (or a full in-flight table) must not reach the mediator:
the flight log would otherwise record an "allow" for a call that was never sent."""

from __future__ import annotations

from typing import Any

from gateway.errors import INVALID_REQUEST, TOO_MANY_IN_FLIGHT
from gateway.mediation.interface import Forward, Verdict
from gateway.protocol import jsonrpc
from gateway.session.relay import Relay


class CountingMediator:
    def __init__(self) -> None:
        self.decided: list[Any] = []

    def on_client_request(self, method: str, message: dict[str, Any]) -> Verdict:
        self.decided.append(message.get("id"))
        return Forward()

    def on_upstream_response(self, method: str, context: Any, message: dict[str, Any]) -> dict[str, Any]:
        return message


def _call(request_id: int) -> bytes:
    return jsonrpc.encode({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "t"}})


def test_a_reused_open_id_is_refused_before_the_mediator_decides() -> None:
    mediator, to_client, to_upstream = CountingMediator(), [], []
    relay = Relay(mediator, to_client.append, to_upstream.append)
    relay.from_client(_call(1))
    relay.from_client(_call(1))
    assert mediator.decided == [1]
    assert len(to_upstream) == 1
    assert jsonrpc.decode(to_client[0])["error"]["code"] == INVALID_REQUEST


def test_a_request_over_the_in_flight_limit_is_refused_before_the_mediator_decides() -> None:
    mediator, to_client, to_upstream = CountingMediator(), [], []
    relay = Relay(mediator, to_client.append, to_upstream.append, max_in_flight=1)
    relay.from_client(_call(1))
    relay.from_client(_call(2))
    assert mediator.decided == [1]
    assert jsonrpc.decode(to_client[0])["error"]["code"] == TOO_MANY_IN_FLIGHT
