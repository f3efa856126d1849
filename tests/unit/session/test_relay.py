"""gateway/session/relay.py: correlation, mediation, malformed input, cancellation and upstream loss.

The relay is pure: it is driven line by line here and writes into two lists.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MESSAGE_TOO_LARGE,
    PARSE_ERROR,
    POLICY_DENIED,
    TOO_MANY_IN_FLIGHT,
    UPSTREAM_UNAVAILABLE,
)
from gateway.mediation.interface import Forward, Mediator, PassThrough, Verdict
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import ID_PROBE_BYTES, JsonObject, RequestId
from gateway.session.relay import Relay
from tests.unit.helpers import deny_rule, policy_mediator

# -- harness ------------------------------------------------------------------------------


@dataclass
class RecordingMediator(PassThrough):
    """Forwards everything, remembers what it was asked, and tags requests with a context."""

    inner: Mediator | None = None
    requests: list[tuple[str, JsonObject]] = field(default_factory=list)
    responses: list[tuple[str, Any, JsonObject]] = field(default_factory=list)

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        self.requests.append((method, json.loads(json.dumps(message))))
        if self.inner is not None:
            return self.inner.on_client_request(method, message)
        return Forward(context=("ctx", method))

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        self.responses.append((method, context, message))
        if self.inner is not None:
            return self.inner.on_upstream_response(method, context, message)
        return message

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        if self.inner is not None:
            self.inner.on_upstream_notification(method, message)


class ExplodingMediator(PassThrough):
    """A mediator with a bug: raises where it is asked to decide."""

    def __init__(self, *, on_request: bool, on_response: bool) -> None:
        self.on_request = on_request
        self.on_response = on_response

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        if self.on_request:
            raise RuntimeError("mediator bug")
        return Forward()

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject:
        if self.on_response:
            raise KeyError("mediator bug")
        return message

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        return None


@dataclass
class Wire:
    relay: Relay
    mediator: Any
    to_client: list[bytes]
    to_upstream: list[bytes]

    def client_got(self) -> list[Any]:
        return [jsonrpc.decode(line) for line in self.to_client]

    def upstream_got(self) -> list[Any]:
        return [jsonrpc.decode(line) for line in self.to_upstream]


def _wire(mediator: Any = None, *, max_in_flight: int = 64) -> Wire:
    mediator = RecordingMediator() if mediator is None else mediator
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    relay = Relay(mediator, to_client.append, to_upstream.append, max_in_flight=max_in_flight)
    return Wire(relay, mediator, to_client, to_upstream)


def _line(message: Any) -> bytes:
    return jsonrpc.encode(message)


def _request(request_id: RequestId, method: str = "tools/list", params: JsonObject | None = None) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def _result(request_id: RequestId, result: Any = None) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "result": {} if result is None else result}


def _notification(method: str, params: JsonObject | None = None) -> JsonObject:
    message: JsonObject = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def _cancel(request_id: Any) -> JsonObject:
    return _notification("notifications/cancelled", {"requestId": request_id, "reason": "user"})


def _error_of(reply: Any) -> tuple[Any, int]:
    assert type(reply) is dict
    assert set(reply) == {"jsonrpc", "id", "error"}
    assert reply["jsonrpc"] == "2.0"
    return reply["id"], reply["error"]["code"]


# -- forwarding and correlation -----------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(7, id="int"),
        pytest.param(0, id="zero"),
        pytest.param(-3, id="negative-int"),
        pytest.param("req-7", id="str"),
        pytest.param("7", id="digit-str"),
        pytest.param("ключ 🔑 \u2028", id="unicode-str"),
        pytest.param(2**70, id="very-large-int"),
        pytest.param(-(2**80), id="very-negative-int"),
    ],
)
def test_request_is_forwarded_with_its_id_verbatim(request_id: RequestId) -> None:
    wire = _wire()
    request = _request(request_id, "tools/call", {"name": "x", "arguments": {"a": [1, "b"]}, "_meta": {"progressToken": 3}})
    wire.relay.from_client(_line(request))
    (forwarded,) = wire.upstream_got()
    assert forwarded == request
    assert type(forwarded["id"]) is type(request_id)
    assert wire.to_client == []
    if type(request_id) is int:
        assert f'"id":{request_id},'.encode() in wire.to_upstream[0]

    wire.relay.from_upstream(_line(_result(request_id, {"content": []})))
    (answer,) = wire.client_got()
    assert answer == _result(request_id, {"content": []})
    assert type(answer["id"]) is type(request_id)


def test_request_for_an_unknown_method_is_forwarded_and_answered() -> None:
    wire = _wire()
    request = _request(1, "vendor/experimental", {"x": {"unknownField": True}})
    wire.relay.from_client(_line(request))
    assert wire.upstream_got() == [request]
    wire.relay.from_upstream(_line(_result(1, {"ok": True})))
    assert wire.client_got() == [_result(1, {"ok": True})]


@pytest.mark.parametrize(
    "notification",
    [
        pytest.param(_notification("notifications/initialized"), id="initialized"),
        pytest.param(_notification("notifications/progress", {"progressToken": "t", "progress": 1}), id="progress"),
        pytest.param(_notification("vendor/whatever", {"_meta": {"k": 1}}), id="unknown-notification"),
    ],
)
def test_client_notification_is_forwarded_unchanged(notification: JsonObject) -> None:
    wire = _wire()
    wire.relay.from_client(_line(notification))
    assert wire.upstream_got() == [notification]
    assert wire.to_client == []


def test_upstream_notification_is_forwarded_to_the_client() -> None:
    wire = _wire()
    notification = _notification("notifications/tools/list_changed")
    wire.relay.from_upstream(_line(notification))
    assert wire.client_got() == [notification]


def test_upstream_response_goes_through_the_mediator_with_the_request_context() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request("a", "tools/list")))
    wire.relay.from_upstream(_line(_result("a", {"tools": []})))
    assert wire.mediator.responses == [("tools/list", ("ctx", "tools/list"), _result("a", {"tools": []}))]
    assert wire.relay.pending_client_requests == 0


@pytest.mark.parametrize(
    ("opened", "response"),
    [
        pytest.param(None, _result(1), id="nothing-open"),
        pytest.param(1, _result(2), id="other-id"),
        pytest.param(1, _result("1"), id="string-twin-of-int-id"),
        pytest.param("1", _result(1), id="int-twin-of-string-id"),
    ],
)
def test_unsolicited_upstream_response_is_dropped_and_counted(opened: RequestId | None, response: JsonObject) -> None:
    wire = _wire()
    if opened is not None:
        wire.relay.from_client(_line(_request(opened)))
    wire.relay.from_upstream(_line(response))
    assert wire.to_client == []
    assert wire.relay.counters.unsolicited == 1
    assert wire.relay.pending_client_requests == (0 if opened is None else 1)


def test_upstream_response_is_relayed_once() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(1)))
    wire.relay.from_upstream(_line(_result(1)))
    wire.relay.from_upstream(_line(_result(1)))
    assert wire.client_got() == [_result(1)]
    assert wire.relay.counters.unsolicited == 1


def test_server_to_client_request_is_forwarded_and_its_answer_goes_back() -> None:
    wire = _wire()
    sampling = _request(0, "sampling/createMessage", {"messages": [], "maxTokens": 10})
    wire.relay.from_upstream(_line(sampling))
    assert wire.client_got() == [sampling]
    answer = _result(0, {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"})
    wire.relay.from_client(_line(answer))
    assert wire.upstream_got() == [answer]
    assert wire.mediator.requests == []


def test_server_to_client_error_answer_goes_back() -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request("s1", "elicitation/create", {})))
    answer = {"jsonrpc": "2.0", "id": "s1", "error": {"code": -1, "message": "declined"}}
    wire.relay.from_client(_line(answer))
    assert wire.upstream_got() == [answer]


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(_result(99), id="id-never-asked"),
        pytest.param(_result("0"), id="string-twin-of-asked-id"),
        pytest.param({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "m"}}, id="error-with-id-null"),
    ],
)
def test_client_response_to_an_id_the_upstream_never_asked_is_dropped(response: JsonObject) -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request(0, "roots/list")))
    wire.relay.from_client(_line(response))
    assert wire.to_upstream == []
    assert wire.relay.counters.unsolicited == 1


def test_client_response_to_a_server_request_is_forwarded_only_once() -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request(5, "ping")))
    wire.relay.from_client(_line(_result(5)))
    wire.relay.from_client(_line(_result(5)))
    assert wire.upstream_got() == [_result(5)]


def test_server_request_with_an_id_already_open_is_answered_to_the_upstream_with_an_error() -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request(5, "ping")))
    wire.relay.from_upstream(_line(_request(5, "roots/list")))
    assert wire.client_got() == [_request(5, "ping")]
    (reply,) = wire.upstream_got()
    assert _error_of(reply) == (5, INVALID_REQUEST)


# -- cancellation -------------------------------------------------------------------------


def test_client_cancellation_closes_the_open_request_and_is_forwarded() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(3, "tools/call", {"name": "slow"})))
    wire.relay.from_client(_line(_cancel(3)))
    assert wire.upstream_got()[1] == _cancel(3)
    assert wire.relay.pending_client_requests == 0


@pytest.mark.parametrize(
    ("opened", "cancelled"),
    [
        pytest.param(None, 3, id="nothing-open"),
        pytest.param(3, 4, id="other-id"),
        pytest.param(3, "3", id="string-twin"),
        pytest.param(3, None, id="null-request-id"),
        pytest.param(3, True, id="bool-request-id"),
    ],
)
def test_cancellation_of_an_id_that_is_not_open_is_not_forwarded(opened: RequestId | None, cancelled: Any) -> None:
    wire = _wire()
    if opened is not None:
        wire.relay.from_client(_line(_request(opened)))
    wire.relay.from_client(_line(_cancel(cancelled)))
    assert _cancel(cancelled) not in wire.upstream_got()
    assert wire.relay.pending_client_requests == (0 if opened is None else 1)


def test_cancellation_without_params_is_not_forwarded() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_notification("notifications/cancelled")))
    assert wire.to_upstream == []


def test_late_response_after_cancellation_is_dropped() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(3)))
    wire.relay.from_client(_line(_cancel(3)))
    wire.relay.from_upstream(_line(_result(3)))
    assert wire.to_client == []
    assert wire.relay.counters.unsolicited == 1


def test_upstream_cancellation_closes_its_request_to_the_client() -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request(8, "sampling/createMessage", {})))
    wire.relay.from_upstream(_line(_cancel(8)))
    wire.relay.from_upstream(_line(_cancel(8)))
    assert wire.client_got() == [_request(8, "sampling/createMessage", {}), _cancel(8)]
    wire.relay.from_client(_line(_result(8)))
    assert wire.to_upstream == []


# -- malformed client input ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "request_id", "code"),
    [
        pytest.param(b"{not json", None, PARSE_ERROR, id="broken-json"),
        pytest.param(b'{"jsonrpc":"2.0","method":"x","params":{', None, PARSE_ERROR, id="truncated-before-id"),
        pytest.param(b"NaN", None, PARSE_ERROR, id="nan"),
        pytest.param(b'{"jsonrpc":"2.0","method":"x","params":{"n":1e400},"id":1}', None, PARSE_ERROR, id="overflowing-number-before-id"),
        pytest.param(b'\xef\xbb\xbf{"jsonrpc":"2.0","id":1,"method":"x"}', None, PARSE_ERROR, id="bom"),
        pytest.param(b'[{"jsonrpc":"2.0","id":1,"method":"x"}', None, PARSE_ERROR, id="truncated-batch"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":tru}}', 1, PARSE_ERROR, id="bad-literal-after-id"),
        pytest.param(b'{"jsonrpc":"2.0","id":"q","method":"x","params":{"n":1e400}}', "q", PARSE_ERROR, id="overflowing-number-after-id"),
        pytest.param(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"n":NaN}}', 1, PARSE_ERROR, id="nan-after-id"),
        pytest.param(b'{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"\xff"}}', 41, PARSE_ERROR, id="int-id"),
        pytest.param(b'{"jsonrpc":"2.0","id":"r\xc3\xa9q","method":"x","params":{"a":"\xc3"}}', "réq", PARSE_ERROR, id="str-id"),
        pytest.param(b'{"params":{"a":"\xfe"},"id":2,"jsonrpc":"2.0","method":"x"}', 2, PARSE_ERROR, id="id-after-bad-bytes"),
        pytest.param(b"42", None, INVALID_REQUEST, id="number"),
        pytest.param(b'"tools/list"', None, INVALID_REQUEST, id="string"),
        pytest.param(b"null", None, INVALID_REQUEST, id="null"),
        pytest.param(b"true", None, INVALID_REQUEST, id="bool"),
        pytest.param(b"[]", None, INVALID_REQUEST, id="empty-array"),
        pytest.param(b'{"jsonrpc":"2.0","id":null,"method":"ping"}', None, INVALID_REQUEST, id="request-with-null-id"),
        pytest.param(b'{"jsonrpc":"2.0","result":{}}', None, INVALID_REQUEST, id="response-without-id"),
        pytest.param(_line({"jsonrpc": "1.0", "id": 6, "method": "ping"}), 6, INVALID_REQUEST, id="wrong-jsonrpc-version"),
        pytest.param(_line({"id": "six", "method": "ping"}), "six", INVALID_REQUEST, id="jsonrpc-missing"),
        pytest.param(_line({"jsonrpc": "2.0", "id": 6, "method": "x", "params": [1]}), 6, INVALID_REQUEST, id="params-array"),
        pytest.param(_line({"jsonrpc": "2.0", "id": 6, "method": ""}), 6, INVALID_REQUEST, id="empty-method"),
    ],
)
def test_malformed_client_input_is_answered_to_its_readable_id_and_never_forwarded(
    line: bytes, request_id: RequestId | None, code: int
) -> None:
    """Not JSON (or not UTF-8): parse error; JSON but no valid message: invalid request. The answer
    goes to the request's id where it can be read from the line, else to id null."""
    wire = _wire()
    wire.relay.from_client(line)
    (reply,) = wire.client_got()
    assert _error_of(reply) == (request_id, code)
    assert wire.to_upstream == []
    assert wire.relay.counters.malformed_from_client == 1


def test_batch_is_answered_with_one_array_holding_an_error_per_request_id() -> None:
    wire = _wire()
    batch = [
        _request(1, "tools/list"),
        _notification("notifications/initialized"),
        _request("b", "tools/call", {"name": "x"}),
        _result(9),
        "junk",
        {"jsonrpc": "2.0", "id": None, "method": "ping"},
    ]
    wire.relay.from_client(_line(batch))
    assert len(wire.to_client) == 1
    (reply,) = wire.client_got()
    assert type(reply) is list
    assert [_error_of(member) for member in reply] == [(1, INVALID_REQUEST), ("b", INVALID_REQUEST)]
    assert wire.to_upstream == []
    assert wire.mediator.requests == []


def test_batch_of_notifications_only_is_answered_with_one_error_with_id_null() -> None:
    wire = _wire()
    wire.relay.from_client(_line([_notification("notifications/initialized")]))
    (reply,) = wire.client_got()
    assert type(reply) is list
    assert [_error_of(member) for member in reply] == [(None, INVALID_REQUEST)]
    assert wire.to_upstream == []


def test_duplicate_in_flight_id_is_invalid_request_and_not_forwarded() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(1, "tools/list")))
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "x"})))
    assert wire.upstream_got() == [_request(1, "tools/list")]
    (reply,) = wire.client_got()
    assert _error_of(reply) == (1, INVALID_REQUEST)
    assert wire.relay.pending_client_requests == 1


def test_an_id_can_be_reused_once_its_request_is_answered() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(1)))
    wire.relay.from_upstream(_line(_result(1)))
    wire.relay.from_client(_line(_request(1, "ping")))
    assert wire.upstream_got() == [_request(1), _request(1, "ping")]


def test_too_many_in_flight_is_refused_and_not_forwarded() -> None:
    wire = _wire(max_in_flight=2)
    for request_id in (1, 2, 3):
        wire.relay.from_client(_line(_request(request_id)))
    assert [m["id"] for m in wire.upstream_got()] == [1, 2]
    (reply,) = wire.client_got()
    assert _error_of(reply) == (3, TOO_MANY_IN_FLIGHT)


# -- oversized lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "request_id"),
    [
        pytest.param(b'{"jsonrpc":"2.0","id":77,"method":"tools/call","params":{"arguments":{"blob":"xxxx', 77, id="int-id"),
        pytest.param(b'{"id":"big","jsonrpc":"2.0","method":"tools/call","params":{"x":"', "big", id="str-id"),
        pytest.param(b'{"jsonrpc":"2.0","method":"tools/call","params":{"blob":"xxxx', None, id="id-not-in-prefix"),
    ],
)
def test_client_line_too_large_is_answered_with_message_too_large_to_its_id(prefix: bytes, request_id: RequestId | None) -> None:
    wire = _wire()
    wire.relay.client_line_too_large(prefix, 50_000_000)
    (reply,) = wire.client_got()
    assert _error_of(reply) == (request_id, MESSAGE_TOO_LARGE)
    assert reply["error"]["data"] == {"size": 50_000_000}
    assert wire.to_upstream == []


def test_client_line_too_large_whose_id_is_cut_by_the_probe_window_is_not_answered_to_another_request() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(12, "tools/list")))
    head = b'{"jsonrpc":"2.0","method":"tools/call","params":{"pad":"'
    tail = b'"},"id":123456}'
    pad = b"p" * (ID_PROBE_BYTES - len(head) - len(b'"},"id":12'))
    line = head + pad + tail
    prefix = line[:ID_PROBE_BYTES]
    assert prefix.endswith(b'"id":12')
    wire.relay.client_line_too_large(prefix, len(line))
    (reply,) = wire.client_got()
    reply_id, code = _error_of(reply)
    assert code == MESSAGE_TOO_LARGE
    assert reply_id != 12, "the error for request 123456 must not be addressed to open request 12"


def test_upstream_line_too_large_for_an_open_request_answers_the_client_for_that_id() -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request("r9", "resources/read", {"uri": "file:///big"})))
    wire.relay.upstream_line_too_large(b'{"jsonrpc":"2.0","id":"r9","result":{"contents":[{"text":"aaaa', 99_000_000)
    (reply,) = wire.client_got()
    assert _error_of(reply) == ("r9", MESSAGE_TOO_LARGE)
    assert wire.relay.pending_client_requests == 0
    wire.relay.from_upstream(_line(_result("r9")))
    assert len(wire.to_client) == 1


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b'{"jsonrpc":"2.0","id":"other","result":{"x":"', id="id-not-open"),
        pytest.param(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"', id="no-id"),
        pytest.param(b"\xff\xfe garbage", id="garbage"),
    ],
)
def test_upstream_line_too_large_for_no_open_request_sends_nothing(prefix: bytes) -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request("r9")))
    wire.relay.upstream_line_too_large(prefix, 99_000_000)
    assert wire.to_client == []
    assert wire.relay.pending_client_requests == 1
    assert wire.relay.counters.malformed_from_upstream == 1


# -- malformed upstream output ------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"Starting server on stdio...", id="log-line-on-stdout"),
        pytest.param(b"\xff\xfe", id="invalid-utf8"),
        pytest.param(b"[1,2]", id="array"),
        pytest.param(b'{"jsonrpc":"2.0","id":1}', id="response-without-result"),
        pytest.param(b'{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}', id="error-with-id-null"),
        pytest.param(b'{"id":1,"result":{}}', id="jsonrpc-missing"),
    ],
)
def test_upstream_garbage_line_relays_nothing_to_the_client(line: bytes) -> None:
    wire = _wire()
    wire.relay.from_client(_line(_request(1)))
    wire.relay.from_upstream(line)
    assert wire.to_client == []
    assert wire.relay.counters.malformed_from_upstream == 1
    assert wire.relay.pending_client_requests == 1


# -- upstream loss ------------------------------------------------------------------------


def test_upstream_lost_answers_every_open_request_and_refuses_later_ones() -> None:
    wire = _wire()
    for request_id in (1, "two", 3):
        wire.relay.from_client(_line(_request(request_id, "tools/call", {"name": "x"})))
    wire.relay.from_upstream(_line(_result(3)))
    wire.to_client.clear()
    forwarded_before = len(wire.to_upstream)

    answered = wire.relay.upstream_lost("upstream exited with status 1")
    assert answered == [1, "two"]
    assert [_error_of(reply) for reply in wire.client_got()] == [(1, UPSTREAM_UNAVAILABLE), ("two", UPSTREAM_UNAVAILABLE)]
    assert wire.relay.pending_client_requests == 0

    wire.to_client.clear()
    wire.relay.from_client(_line(_request(4, "ping")))
    (reply,) = wire.client_got()
    assert _error_of(reply) == (4, UPSTREAM_UNAVAILABLE)
    assert len(wire.to_upstream) == forwarded_before


def test_upstream_lost_forgets_the_upstreams_own_requests() -> None:
    wire = _wire()
    wire.relay.from_upstream(_line(_request(1, "roots/list")))
    wire.relay.upstream_lost("gone")
    wire.relay.from_client(_line(_result(1, {"roots": []})))
    assert wire.to_upstream == []


# -- fail closed --------------------------------------------------------------------------


def test_mediator_that_raises_on_a_request_means_not_forwarded_and_an_error() -> None:
    wire = _wire(ExplodingMediator(on_request=True, on_response=False))
    wire.relay.from_client(_line(_request(5, "tools/call", {"name": "anything"})))
    assert wire.to_upstream == []
    (reply,) = wire.client_got()
    assert _error_of(reply) == (5, INTERNAL_ERROR)
    assert wire.relay.pending_client_requests == 0


def test_mediator_that_raises_on_a_response_means_withheld_and_an_error() -> None:
    wire = _wire(ExplodingMediator(on_request=False, on_response=True))
    wire.relay.from_client(_line(_request(5, "tools/list")))
    wire.relay.from_upstream(_line(_result(5, {"tools": [{"name": "hidden"}]})))
    (reply,) = wire.client_got()
    assert _error_of(reply) == (5, INTERNAL_ERROR)
    assert b"hidden" not in b"".join(wire.to_client)
    assert wire.relay.pending_client_requests == 0


def test_refusal_from_the_mediator_is_sent_to_the_client_and_not_forwarded() -> None:
    # The lockfile pins the tool under the spelling the client calls it by, so what refuses the
    # call is the deny rule (matched after case folding), not a missing tools/list.
    mediator = policy_mediator(deny_rule("no-delete", "*.delete_file"), pinned=["DELETE_FILE"])
    wire = _wire(RecordingMediator(inner=mediator))
    wire.relay.from_client(_line(_request(2, "tools/call", {"name": "DELETE_FILE"})))
    assert wire.to_upstream == []
    (reply,) = wire.client_got()
    assert _error_of(reply) == (2, POLICY_DENIED)
    assert reply["error"]["data"]["rule"] == "no-delete"
    assert wire.relay.counters.refused == 1
    assert wire.relay.pending_client_requests == 0


def test_rewritten_request_from_the_mediator_is_what_is_forwarded() -> None:
    class Rewriter(PassThrough):
        def on_client_request(self, method: str, message: JsonObject) -> Verdict:
            return Forward(message={**message, "params": {"name": "safe"}})

        def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject:
            return message

        def on_upstream_notification(self, method: str, message: JsonObject) -> None:
            return None

    wire = _wire(Rewriter())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "risky"})))
    assert wire.upstream_got() == [_request(1, "tools/call", {"name": "safe"})]


def test_tools_list_result_is_filtered_on_its_way_to_the_client() -> None:
    wire = _wire(policy_mediator(deny_rule("no-delete", "*.delete_file")))
    wire.relay.from_client(_line(_request(1, "tools/list")))
    tools = [
        {"name": "read_file"},
        {"name": "delete_file"},
        {"name": "ｄｅｌｅｔｅ＿ｆｉｌｅ"},
        {"name": "write_file", "_meta": {"m": 1}},
    ]
    wire.relay.from_upstream(_line(_result(1, {"tools": tools})))
    assert wire.client_got() == [_result(1, {"tools": [tools[0], tools[3]]})]


def test_tools_list_without_a_matching_deny_rule_is_relayed_unchanged() -> None:
    wire = _wire(policy_mediator(deny_rule("no-delete", "*.delete_file")))
    wire.relay.from_client(_line(_request(1, "tools/list")))
    tools = [{"name": "read_file"}, {"name": "write_file", "_meta": {"m": 1}}]
    wire.relay.from_upstream(_line(_result(1, {"tools": tools})))
    assert wire.client_got() == [_result(1, {"tools": tools})]


def test_a_tool_listed_through_the_relay_can_be_called_and_a_denied_one_cannot() -> None:
    wire = _wire(policy_mediator(deny_rule("no-delete", "*.delete_file")))
    wire.relay.from_client(_line(_request(1, "tools/list")))
    wire.relay.from_upstream(_line(_result(1, {"tools": [{"name": "read_file"}, {"name": "delete_file"}]})))
    wire.to_client.clear()
    wire.relay.from_client(_line(_request(2, "tools/call", {"name": "read_file", "arguments": {"path": "/a"}})))
    wire.relay.from_client(_line(_request(3, "tools/call", {"name": "delete_file", "arguments": {"path": "/a"}})))
    wire.relay.from_client(_line(_request(4, "tools/call", {"name": "never_listed"})))
    assert [m["id"] for m in wire.upstream_got() if m.get("method") == "tools/call"] == [2]
    replies = wire.client_got()
    assert [_error_of(reply) for reply in replies] == [(3, POLICY_DENIED), (4, POLICY_DENIED)]
    assert [reply["error"]["data"]["rule"] for reply in replies] == ["no-delete", "pins.unknown-tool"]


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        pytest.param("delete_file", "no-delete", id="exact"),
        pytest.param("DELETE_FILE", "no-delete", id="upper-case"),
        pytest.param("Delete_File", "no-delete", id="mixed-case"),
        pytest.param("ｄｅｌｅｔｅ_file", "gateway.tool-name", id="fullwidth"),
        pytest.param("delete_\ufb01le", "gateway.tool-name", id="fi-ligature"),
        pytest.param("delete\u200b_file", "gateway.tool-name", id="zero-width-space"),
        pytest.param("ｄｅｌｅｔｅ\uff3fｆｉｌｅ", "gateway.tool-name", id="all-fullwidth"),
    ],
)
def test_every_spelling_of_a_denied_tool_is_refused_with_the_rule_that_refused_it(name: str, rule: str) -> None:
    # Pinned under that very spelling: only the name check or the deny rule can refuse it.
    wire = _wire(policy_mediator(deny_rule("no-delete", "*.delete_file"), pinned=[name, "read_file"]))
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": name, "arguments": {}})))
    wire.relay.from_client(_line(_request(2, "tools/call", {"name": "read_file", "arguments": {}})))
    assert [m["id"] for m in wire.upstream_got()] == [2]
    (reply,) = wire.client_got()
    assert _error_of(reply) == (1, POLICY_DENIED)
    assert reply["error"]["data"]["rule"] == rule
    assert _normalised(name) == "delete_file" or rule == "gateway.tool-name"


# -- duplicate keys: the upstream sees exactly what the gateway decided on ---------------


def _denied_tool_mediator() -> Any:
    """Denies `denied_tool` by rule `no-denied`; `x` and `denied_tool` are pinned (callable unlisted)."""
    return policy_mediator(deny_rule("no-denied", "*.denied_tool"), pinned=["x", "denied_tool"])


def test_duplicate_name_keys_forward_only_the_name_the_gateway_decided_on() -> None:
    mediator = RecordingMediator(inner=_denied_tool_mediator())
    wire = _wire(mediator)
    wire.relay.from_client(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"denied_tool","name":"x"}}')
    (forwarded_line,) = wire.to_upstream
    assert forwarded_line.count(b'"name"') == 1
    assert b"denied_tool" not in forwarded_line
    ((method, seen),) = mediator.requests
    assert method == "tools/call"
    assert jsonrpc.decode(forwarded_line) == seen
    assert seen["params"] == {"name": "x"}


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"denied_tool"}}', "no-denied", id="denied-last"
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"\\uff44enied_tool"}}',
            "gateway.tool-name",
            id="denied-last-escaped",
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","id":12345678901234567890,"method":"tools/call","params":{"name":"x","name":"denied_tool"}}',
            "no-denied",
            id="denied-last-exact-parser-path",
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"params":{"name":"denied_tool"}}',
            "no-denied",
            id="duplicate-params",
        ),
        pytest.param(
            b'{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"denied_tool"}}',
            "no-denied",
            id="duplicate-method",
        ),
    ],
)
def test_duplicate_keys_that_end_on_a_denied_call_are_refused(line: bytes, rule: str) -> None:
    wire = _wire(_denied_tool_mediator())
    wire.relay.from_client(line)
    assert wire.to_upstream == []
    (reply,) = wire.client_got()
    assert _error_of(reply)[1] == POLICY_DENIED
    assert reply["error"]["data"]["rule"] == rule


def test_denied_tools_call_sent_as_a_notification_is_not_forwarded() -> None:
    wire = _wire(policy_mediator(deny_rule("no-secret", "*.secret_tool"), pinned=["secret_tool"]))
    wire.relay.from_client(b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"secret_tool","arguments":{}}}')
    assert wire.to_upstream == [], "a tools/call without an id bypassed the deny rule"
    assert wire.relay.counters.refused == 1
    assert wire.to_client == []  # a notification gets no answer, not even a refusal


def test_allowed_tools_call_sent_as_a_notification_is_forwarded() -> None:
    wire = _wire(policy_mediator(deny_rule("no-secret", "*.secret_tool"), pinned=["public_tool"]))
    notification = b'{"jsonrpc":"2.0","method":"tools/call","params":{"name":"public_tool","arguments":{}}}'
    wire.relay.from_client(notification)
    assert wire.upstream_got() == [jsonrpc.decode(notification)]


# -- property: a denied call never reaches the upstream -----------------------------------


def _normalised(name: str) -> str:
    return unicodedata.normalize("NFKC", name).casefold()


def _spellings(char: str) -> list[str]:
    forms = {char, char.upper(), chr(ord(char) + 0xFEE0), chr(ord(char.upper()) + 0xFEE0)}
    if char == "s":
        forms.add("ſ")  # LATIN SMALL LETTER LONG S: NFKC maps it to "s"
    return sorted(forms)


_secret_spelling = st.tuples(*(st.sampled_from(_spellings(c)) for c in "secret_tool")).map("".join)
_tool_name = st.one_of(
    _secret_spelling,
    st.sampled_from(["secret_tool", "public_tool", "secret_tools", "secret-tool", "secret\u200b_tool"]),
    st.text(max_size=12),
)
_ids = st.one_of(st.integers(-3, 3), st.sampled_from(["1", "a", "ｓ"]), st.integers(2**64, 2**64 + 2))


def _dumps(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))


@st.composite
def _client_line(draw: st.DrawFn) -> tuple[bytes, tuple[str, ...]]:
    """A line from the client, and the tool names it names (pinned, so that only the name
    check and the deny rule stand between a call and the upstream)."""
    kind = draw(
        st.sampled_from(["call", "call-duplicate-name", "call-notification", "batch", "cancel", "other-request", "response", "garbage"])
    )
    ascii_only = draw(st.booleans())
    name = draw(_tool_name)
    request_id = draw(_ids)
    call = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": name, "arguments": {}}}
    if kind == "call":
        return _dumps(call, ascii_only).encode("utf-8", "surrogatepass"), (name,)
    if kind == "call-duplicate-name":
        other = draw(_tool_name)
        text = (
            f'{{"jsonrpc":"2.0","id":{_dumps(request_id, True)},"method":"tools/call",'
            f'"params":{{"name":{_dumps(name, ascii_only)},"name":{_dumps(other, ascii_only)}}}}}'
        )
        return text.encode("utf-8", "surrogatepass"), (name, other)
    if kind == "call-notification":
        del call["id"]
        return _dumps(call, ascii_only).encode("utf-8", "surrogatepass"), (name,)
    if kind == "batch":
        return _dumps([call, {**call, "id": "b"}], ascii_only).encode("utf-8", "surrogatepass"), (name,)
    if kind == "cancel":
        return _dumps(_cancel(request_id), True).encode(), ()
    if kind == "other-request":
        return _dumps(_request(request_id, "prompts/get", {"name": name}), ascii_only).encode("utf-8", "surrogatepass"), (name,)
    if kind == "response":
        return _dumps(_result(request_id), True).encode(), ()
    return draw(st.binary(max_size=40)), ()


@settings(max_examples=300, deadline=None)
@given(st.lists(_client_line(), min_size=1, max_size=12), st.lists(_ids, max_size=4))
def test_a_denied_tool_never_reaches_the_upstream_whatever_the_client_sends(
    lines: list[tuple[bytes, tuple[str, ...]]], answered: list[RequestId]
) -> None:
    # Every name the client uses is pinned: a call is stopped by the name check or the deny
    # rule, never merely because the session has not listed the tool.
    names = {name for _, named in lines for name in named} | {"secret_tool", "public_tool"}
    mediator = RecordingMediator(inner=policy_mediator(deny_rule("no-secret", "*.secret_tool"), pinned=sorted(names)))
    wire = _wire(mediator, max_in_flight=8)
    for index, (line, _) in enumerate(lines):
        wire.relay.from_client(line)
        if index < len(answered):
            wire.relay.from_upstream(_line(_result(answered[index])))
    seen = [message for _, message in mediator.requests]
    for forwarded in wire.upstream_got():
        assert type(forwarded) is dict
        if forwarded.get("method") != "tools/call":
            continue
        params = forwarded.get("params")
        assert type(params) is dict
        name = params.get("name")
        assert type(name) is str
        assert _normalised(name) != "secret_tool", forwarded
        if "id" in forwarded:
            assert forwarded in seen, "forwarded a request the mediator never saw"
    for reply in wire.client_got():
        if type(reply) is dict and type(reply.get("error")) is dict and reply["error"]["code"] == POLICY_DENIED:
            assert reply["error"]["data"]["rule"] in {"no-secret", "gateway.tool-name"}, reply


# -- the gateway's own tools/list, for a call of a tool the client never listed ---------------------


def _tool(name: str) -> JsonObject:
    return {"name": name, "inputSchema": {"type": "object"}}


def test_a_call_of_an_unlisted_tool_waits_for_the_gateways_own_listing_then_is_decided() -> None:
    wire = _wire(policy_mediator())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "echo", "arguments": {}})))
    wire.relay.from_client(_line(_request(2, "tools/call", {"name": "echo", "arguments": {}})))
    (fetch,) = wire.upstream_got()  # one listing for both held calls, nothing else yet
    assert fetch["method"] == "tools/list" and str(fetch["id"]).startswith("airlock-fetch-")
    assert wire.to_client == []
    wire.relay.from_upstream(_line(_result(fetch["id"], {"tools": [_tool("echo")]})))
    calls = wire.upstream_got()[1:]
    assert [(c["id"], c["params"]["name"]) for c in calls] == [(1, "echo"), (2, "echo")]
    assert wire.to_client == []  # the client never sees the gateway's own listing
    wire.relay.from_upstream(_line(_result(1, {"content": []})))
    assert [m["id"] for m in wire.client_got()] == [1]


def test_a_tool_still_unknown_after_the_gateways_listing_is_refused_and_not_listed_twice() -> None:
    wire = _wire(policy_mediator())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "ghost", "arguments": {}})))
    (fetch,) = wire.upstream_got()
    wire.relay.from_upstream(_line(_result(fetch["id"], {"tools": [_tool("echo")]})))
    (reply,) = wire.client_got()
    assert _error_of(reply) == (1, POLICY_DENIED) and reply["error"]["data"]["rule"] == "pins.unknown-tool"
    wire.relay.from_client(_line(_request(2, "tools/call", {"name": "ghost2", "arguments": {}})))
    assert len(wire.upstream_got()) == 1  # no second listing
    assert _error_of(wire.client_got()[-1]) == (2, POLICY_DENIED)


def test_held_calls_get_an_error_when_the_upstream_dies_before_the_listing_is_answered() -> None:
    wire = _wire(policy_mediator())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "echo", "arguments": {}})))
    answered = wire.relay.upstream_lost("gone")
    assert 1 in answered
    assert _error_of(wire.client_got()[-1])[0] == 1


def test_a_listing_error_from_the_upstream_refuses_the_held_call() -> None:
    wire = _wire(policy_mediator())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "echo", "arguments": {}})))
    (fetch,) = wire.upstream_got()
    wire.relay.from_upstream(_line({"jsonrpc": "2.0", "id": fetch["id"], "error": {"code": -32601, "message": "no tools"}}))
    (reply,) = wire.client_got()
    assert _error_of(reply) == (1, POLICY_DENIED)


def test_a_held_call_the_client_cancels_is_never_forwarded() -> None:
    wire = _wire(policy_mediator())
    wire.relay.from_client(_line(_request(1, "tools/call", {"name": "echo", "arguments": {}})))
    (fetch,) = wire.upstream_got()
    wire.relay.from_client(_line(_cancel(1)))
    wire.relay.from_upstream(_line(_result(fetch["id"], {"tools": [_tool("echo")]})))
    assert [m.get("method") for m in wire.upstream_got()] == ["tools/list", "notifications/cancelled"]
    assert wire.to_client == []
