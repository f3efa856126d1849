"""A message nested past `jsonrpc.MAX_DEPTH`, either way, is answered under its id and never
decided: before, a request about 1,000 levels deep was decided (and logged as allowed), then
raised `RecursionError` when the relay encoded it, was never answered, kept its id in flight for
the rest of the session, and took the next request of the same read down with it."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import MESSAGE_TOO_LARGE, PARSE_ERROR
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.protocol import jsonrpc
from gateway.protocol.framing import LineFramer
from gateway.recording.cassette import CassetteHeader, entry_line, header_line, parse_cassette
from gateway.session.hub import Hub
from gateway.session.relay import Relay
from tests.unit.helpers import policy_mediator


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _call(request_id: int, argument: Any) -> bytes:
    message = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "t", "arguments": {"a": argument}}}
    # json.dumps cannot write 100,000 levels either: build the text around the nesting.
    if isinstance(argument, str) and argument.startswith("["):
        return jsonrpc.encode({**message, "params": {"name": "t", "arguments": {"a": 0}}}).replace(b'"a":0', b'"a":' + argument.encode())
    return jsonrpc.encode(message)


def _deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("depth", "code"),
    [
        pytest.param(jsonrpc.MAX_DEPTH - 3, None, id="just-under-the-limit-is-forwarded"),
        pytest.param(jsonrpc.MAX_DEPTH, MESSAGE_TOO_LARGE, id="just-over-the-limit"),
        pytest.param(1_000, MESSAGE_TOO_LARGE, id="1000-levels"),
        pytest.param(100_000, PARSE_ERROR, id="100000-levels"),
    ],
)
def test_a_deep_request_is_answered_under_its_id_and_the_rest_of_the_read_goes_on(tmp_path: Any, depth: int, code: int | None) -> None:
    log = FlightLog.open(LogSettings(path=tmp_path / "log.jsonl"), generate_key(), policy_hash="ab" * 32, inline_signing=True)
    log.start("test", ephemeral=True)
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    relay = Relay(policy_mediator(pinned=["t"], flight_log=log), to_client.append, to_upstream.append)
    framer = LineFramer(relay.from_client, relay.client_line_too_large, 16 * 1024 * 1024)
    framer.feed(_call(1, _deep_text(depth)) + b"\n" + _call(2, "shallow") + b"\n")  # one read, two requests
    answers = {message["id"]: message for message in map(jsonrpc.decode, to_client)}
    forwarded = [jsonrpc.decode(line)["id"] for line in to_upstream]
    if code is None:
        assert forwarded == [1, 2]
        assert answers == {}
    else:
        assert answers[1]["error"]["code"] == code
        assert forwarded == [2]  # the next request of the same read is relayed as usual
        assert relay.pending_client_requests == 1  # only request 2's id: request 1's was never claimed
        log.close("test")
        decided = [e["request_id"] for e in map(jsonrpc.decode, (tmp_path / "log.jsonl").read_bytes().splitlines()) if e["kind"] == "call"]
        assert decided == [2]  # the deep request was never decided, so never logged as allowed


@pytest.mark.parametrize("depth", [jsonrpc.MAX_DEPTH, 1_000])
def test_a_deep_response_from_the_upstream_answers_its_request_with_an_error(depth: int) -> None:
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    relay = Relay(policy_mediator(pinned=["t"]), to_client.append, to_upstream.append)
    relay.from_client(_call(7, "x"))
    response = b'{"jsonrpc":"2.0","id":7,"result":{"structuredContent":{"a":' + _deep_text(depth).encode() + b"}}}"
    relay.from_upstream(response)
    (answer,) = map(jsonrpc.decode, to_client)
    assert (answer["id"], answer["error"]["code"]) == (7, MESSAGE_TOO_LARGE)
    assert relay.pending_client_requests == 0


def test_check_depth_measures_any_depth_without_recursion() -> None:
    jsonrpc.check_depth(_nested(jsonrpc.MAX_DEPTH))
    with pytest.raises(jsonrpc.MessageTooLarge):
        jsonrpc.check_depth(_nested(200_000))


def test_through_the_hub_a_deep_request_is_answered_under_its_id_and_not_routed() -> None:
    to_client: list[bytes] = []
    sent: list[bytes] = []
    hub = Hub(["a"], to_client.append, [sent.append])
    hub.from_client(_call(3, _deep_text(jsonrpc.MAX_DEPTH)))
    (answer,) = map(jsonrpc.decode, to_client)
    assert (answer["id"], answer["error"]["code"]) == (3, MESSAGE_TOO_LARGE)
    assert sent == []


def test_a_message_at_the_limit_is_recorded_in_a_cassette_that_reads_back() -> None:
    deepest = _call(4, _deep_text(jsonrpc.MAX_DEPTH - 3))  # the deepest request the relay forwards
    data = header_line(CassetteHeader("2026-01-01T00:00:00.000000Z", "srv", None, ())) + entry_line(1, "c2g", deepest)
    (entry,) = parse_cassette(data, "test").entries
    assert entry.message == jsonrpc.decode(deepest)
