"""gateway/fronts/http/multiplex.py: the requests of many stateless HTTP requests share one
upstream session without their ids (or progress tokens) ever meeting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.fronts.http.multiplex import REQUEST_PREFIX, TOKEN_PREFIX, Multiplexer, Route


def _call(request_id: Any, token: Any = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": "echo", "arguments": {}}
    if token is not None:
        params["_meta"] = {"progressToken": token, "io.modelcontextprotocol/protocolVersion": "2026-07-28"}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def _cancel(request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request_id}}


def test_two_channels_sending_the_same_id_get_different_gateway_ids_and_their_answers_back() -> None:
    ids = Multiplexer()
    a, b = ids.open_channel(), ids.open_channel()
    from_a, from_b = ids.inbound(a, _call(1)), ids.inbound(b, _call(1))
    assert from_a is not None and from_b is not None
    assert from_a["id"] != from_b["id"]
    assert str(from_a["id"]).startswith(REQUEST_PREFIX)
    assert ids.answered(from_b["id"]) == Route(b, 1)
    assert ids.answered(from_a["id"]) == Route(a, 1)
    assert ids.answered(from_a["id"]) is None  # answered once only
    assert ids.open_requests == 0


@pytest.mark.parametrize("request_id", [0, 7, -3, 2**70, "1", "abc", ""])
def test_the_client_id_comes_back_with_its_type(request_id: Any) -> None:
    ids = Multiplexer()
    channel = ids.open_channel()
    sent = ids.inbound(channel, _call(request_id))
    assert sent is not None
    route = ids.answered(sent["id"])
    assert route is not None and route.request_id == request_id and type(route.request_id) is type(request_id)


def test_the_message_given_is_not_changed() -> None:
    ids = Multiplexer()
    original = _call(5, token="p")
    ids.inbound(ids.open_channel(), original)
    assert original == _call(5, token="p")


def test_progress_tokens_are_replaced_and_given_back_and_the_rest_of_meta_kept() -> None:
    ids = Multiplexer()
    a, b = ids.open_channel(), ids.open_channel()
    from_a, from_b = ids.inbound(a, _call(1, token="same")), ids.inbound(b, _call(2, token="same"))
    assert from_a is not None and from_b is not None
    token_a, token_b = from_a["params"]["_meta"]["progressToken"], from_b["params"]["_meta"]["progressToken"]
    assert token_a != token_b and token_a.startswith(TOKEN_PREFIX)
    assert from_a["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] == "2026-07-28"
    assert ids.client_token(token_a) == "same" and ids.client_token(token_b) == "same"
    ids.answered(from_a["id"])
    assert ids.client_token(token_a) is None  # gone with its request
    assert ids.client_token("same") is None  # the client's own token means nothing on the way out


def test_a_message_about_an_open_request_is_routed_to_its_channel() -> None:
    ids = Multiplexer()
    channel = ids.open_channel()
    sent = ids.inbound(channel, _call("x"))
    assert sent is not None
    assert ids.related(sent["id"]) == Route(channel, "x")
    assert ids.related("x") is None and ids.related(None) is None


def test_a_cancellation_names_a_request_of_its_own_channel_or_is_dropped() -> None:
    ids = Multiplexer()
    a, b = ids.open_channel(), ids.open_channel()
    sent = ids.inbound(a, _call(1))
    assert sent is not None
    assert ids.inbound(a, _cancel(1)) == {**_cancel(sent["id"])}
    assert ids.inbound(b, _cancel(1)) is None  # b has no request 1
    assert ids.inbound(b, _cancel(sent["id"])) is None  # nor may it name a's by the gateway's id
    assert ids.inbound(a, _cancel("1")) is None  # "1" is not 1
    assert ids.inbound(a, {"jsonrpc": "2.0", "method": "notifications/cancelled"}) is None


def test_notifications_and_responses_to_server_requests_pass_as_they_are() -> None:
    ids = Multiplexer()
    channel = ids.open_channel()
    response = {"jsonrpc": "2.0", "id": 3, "result": {}}
    note = {"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}
    assert ids.inbound(channel, response) == response
    assert ids.inbound(channel, note) == note


def test_closing_a_channel_gives_its_open_requests_to_cancel_and_forgets_them() -> None:
    ids = Multiplexer()
    a, b = ids.open_channel(), ids.open_channel()
    open_a, done_a, open_b = ids.inbound(a, _call(1, token="t")), ids.inbound(a, _call(2)), ids.inbound(b, _call(1))
    assert open_a is not None and done_a is not None and open_b is not None
    ids.answered(done_a["id"])
    assert ids.close_channel(a) == [open_a["id"]]
    assert ids.answered(open_a["id"]) is None
    assert ids.client_token(open_a["params"]["_meta"]["progressToken"]) is None
    assert ids.inbound(a, _call(3)) is None  # a closed channel takes nothing
    assert ids.related(open_b["id"]) == Route(b, 1)


@given(st.lists(st.tuples(st.integers(0, 3), st.one_of(st.integers(-5, 5), st.text(max_size=3))), max_size=40))
def test_every_request_gets_a_gateway_id_no_other_request_has(requests: list[tuple[int, Any]]) -> None:
    ids = Multiplexer()
    channels = [ids.open_channel() for _ in range(4)]
    seen: dict[Any, Route] = {}
    for channel, request_id in requests:
        sent = ids.inbound(channels[channel], _call(request_id))
        assert sent is not None and sent["id"] not in seen
        seen[sent["id"]] = Route(channels[channel], request_id)
    for gateway_id, route in seen.items():
        assert ids.answered(gateway_id) == route
