"""gateway/protocol/jsonrpc.py: decode, encode, classify, probe_id, error_response."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import INVALID_REQUEST, PARSE_ERROR, InvalidRequest, ParseError, PolicyDenied
from gateway.protocol import jsonrpc

# A run of 19+ digits sends a line down the exact (standard library) path; these rows are
# repeated with such a run so that both parsers are held to the same rules.
_LONG_RUN = b"12345678901234567890123"


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells True from 1 and 1.0 from 1."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# -- decode -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param(b"18446744073709551615", 2**64 - 1, id="2**64-1-fast-path"),
        pytest.param(b"18446744073709551616", 2**64, id="2**64"),
        pytest.param(b"-9223372036854775809", -(2**63) - 1, id="below-int64"),
        pytest.param(str(10**40).encode(), 10**40, id="10**40"),
        pytest.param(b'{"jsonrpc":"2.0","id":' + str(2**100).encode() + b',"method":"ping"}', None, id="id-2**100-in-request"),
        pytest.param(b"[1.5," + str(2**70).encode() + b"]", [1.5, 2**70], id="big-int-beside-float"),
    ],
)
def test_decode_keeps_integers_beyond_64_bits_exact(line: bytes, expected: Any) -> None:
    decoded = jsonrpc.decode(line)
    if expected is None:
        assert decoded["id"] == 2**100
        assert type(decoded["id"]) is int
    else:
        assert _same(decoded, expected)


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"NaN", id="nan"),
        pytest.param(b"Infinity", id="infinity"),
        pytest.param(b"-Infinity", id="minus-infinity"),
        pytest.param(b"1e400", id="overflowing-exponent"),
        pytest.param(b"-1e400", id="negative-overflowing-exponent"),
        pytest.param(b"[NaN," + _LONG_RUN + b"]", id="nan-exact-path"),
        pytest.param(b"[Infinity," + _LONG_RUN + b"]", id="infinity-exact-path"),
        pytest.param(b"[1e400," + _LONG_RUN + b"]", id="overflow-exact-path"),
        pytest.param(b'{"a":"\xff"}', id="invalid-utf8"),
        pytest.param(b'{"a":"\xc3"}', id="truncated-utf8-sequence"),
        pytest.param(b'{"a":"\xed\xa0\x80"}', id="utf8-encoded-surrogate"),
        pytest.param(b'{"a":"\xff","n":' + _LONG_RUN + b"}", id="invalid-utf8-exact-path"),
        pytest.param(b"\xef\xbb\xbf{}", id="utf8-bom"),
        pytest.param(b"\xef\xbb\xbf[" + _LONG_RUN + b"]", id="utf8-bom-exact-path"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"a":1', id="truncated-object"),
        pytest.param(b'{"a":1} x', id="trailing-garbage"),
        pytest.param(b"{'a':1}", id="single-quotes"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nesting-too-deep"),
        pytest.param(b"[" + b"9" * 5000 + b"]", id="integer-with-too-many-digits"),
    ],
)
def test_decode_rejects_what_is_not_strict_utf8_json(line: bytes) -> None:
    with pytest.raises(ParseError) as caught:
        jsonrpc.decode(line)
    assert caught.value.code == PARSE_ERROR


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, id="request"),
        pytest.param({"b": 1, "a": 2, "c": {"z": [], "y": {}}}, id="key-order-kept"),
        pytest.param({"id": 2**64, "neg": -(2**80)}, id="big-integers"),
        pytest.param({"s": 'ключ 🔑 \u0000 \u2028 "quoted" \\'}, id="unicode-and-escapes"),
        pytest.param({"s": "\ud800 lone surrogate"}, id="lone-surrogate"),
        pytest.param([True, False, None, 0, -1, 1.5, ""], id="scalars"),
    ],
)
def test_encode_round_trips_through_decode(message: Any) -> None:
    assert _same(jsonrpc.decode(jsonrpc.encode(message)), message)


def test_encode_is_compact_and_keeps_key_order() -> None:
    assert jsonrpc.encode({"z": 1, "a": [1, 2], "m": {"k": "v"}}) == b'{"z":1,"a":[1,2],"m":{"k":"v"}}'


def test_decode_keeps_the_last_of_duplicate_keys_on_both_paths() -> None:
    assert jsonrpc.decode(b'{"a":1,"a":2}') == {"a": 2}
    assert jsonrpc.decode(b'{"a":1,"a":2,"n":' + _LONG_RUN + b"}") == {"a": 2, "n": int(_LONG_RUN)}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_json_values)
def test_decode_of_encode_is_the_identity_for_any_json_value(message: Any) -> None:
    assert _same(jsonrpc.decode(jsonrpc.encode(message)), message)


# -- classify -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind", "method", "request_id"),
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "request", "tools/list", 1, id="request-int-id"),
        pytest.param({"jsonrpc": "2.0", "id": 0, "method": "ping"}, "request", "ping", 0, id="request-id-zero"),
        pytest.param({"jsonrpc": "2.0", "id": -7, "method": "ping"}, "request", "ping", -7, id="request-negative-id"),
        pytest.param({"jsonrpc": "2.0", "id": "a-1", "method": "ping"}, "request", "ping", "a-1", id="request-str-id"),
        pytest.param({"jsonrpc": "2.0", "id": "", "method": "ping"}, "request", "ping", "", id="request-empty-str-id"),
        pytest.param({"jsonrpc": "2.0", "id": 2**70, "method": "ping"}, "request", "ping", 2**70, id="request-big-id"),
        pytest.param(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x"}}, "request", "tools/call", 1, id="request-params"
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            "notification",
            "notifications/initialized",
            None,
            id="notification",
        ),
        pytest.param(
            {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}},
            "notification",
            "notifications/progress",
            None,
            id="notification-params",
        ),
        pytest.param({"jsonrpc": "2.0", "id": 1, "result": {}}, "response", None, 1, id="result-response"),
        pytest.param({"jsonrpc": "2.0", "id": "x", "result": None}, "response", None, "x", id="null-result-response"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "error": {"code": -1, "message": "m"}}, "response", None, 1, id="error-response"),
        pytest.param(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "m"}},
            "response",
            None,
            None,
            id="error-response-id-null",
        ),
    ],
)
def test_classify_sorts_valid_messages_by_kind(message: Any, kind: str, method: str | None, request_id: Any) -> None:
    envelope = jsonrpc.classify(message)
    assert envelope.kind == kind
    assert envelope.method == method
    assert _same(envelope.id, request_id)
    assert envelope.message is message


@pytest.mark.parametrize(
    ("message", "data_id"),
    [
        pytest.param([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], None, id="batch-list"),
        pytest.param([], None, id="empty-batch"),
        pytest.param("ping", None, id="string"),
        pytest.param(42, None, id="number"),
        pytest.param(None, None, id="null"),
        pytest.param({"id": 1, "method": "ping"}, 1, id="jsonrpc-missing"),
        pytest.param({"jsonrpc": "1.0", "id": 1, "method": "ping"}, 1, id="jsonrpc-1.0"),
        pytest.param({"jsonrpc": 2.0, "id": "s", "method": "ping"}, "s", id="jsonrpc-number"),
        pytest.param({"jsonrpc": "2.0", "id": True, "method": "ping"}, None, id="bool-id"),
        pytest.param({"jsonrpc": "2.0", "id": 1.0, "method": "ping"}, None, id="float-id"),
        pytest.param({"jsonrpc": "2.0", "id": None, "method": "ping"}, None, id="null-id-request"),
        pytest.param({"jsonrpc": "2.0", "id": {"k": 1}, "method": "ping"}, None, id="object-id"),
        pytest.param({"jsonrpc": "2.0", "id": [1], "method": "ping"}, None, id="array-id"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": ""}, 1, id="empty-method"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": 5}, 1, id="non-string-method"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "x", "params": [1, 2]}, 1, id="params-array"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "x", "params": "p"}, 1, id="params-string"),
        pytest.param({"jsonrpc": "2.0", "method": "x", "params": 3}, None, id="notification-params-number"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "m"}}, 1, id="result-and-error"),
        pytest.param({"jsonrpc": "2.0", "id": 1}, 1, id="neither-method-result-nor-error"),
        pytest.param({"jsonrpc": "2.0", "id": None, "result": {}}, None, id="result-response-id-null"),
        pytest.param({"jsonrpc": "2.0", "result": {}}, None, id="result-response-no-id"),
        pytest.param({"jsonrpc": "2.0", "id": False, "error": {"code": 1, "message": "m"}}, None, id="error-response-bool-id"),
        pytest.param({"jsonrpc": "2.0", "id": 1.5, "result": {}}, None, id="response-float-id"),
    ],
)
def test_classify_rejects_what_is_not_an_acceptable_jsonrpc_message(message: Any, data_id: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        jsonrpc.classify(message)
    assert caught.value.code == INVALID_REQUEST
    if data_id is None:
        assert caught.value.data is None
    else:
        assert caught.value.data == {"id": data_id}


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        pytest.param(1, True, id="int"),
        pytest.param(2**80, True, id="big-int"),
        pytest.param("1", True, id="str"),
        pytest.param(True, False, id="bool"),
        pytest.param(1.0, False, id="float"),
        pytest.param(None, False, id="null"),
        pytest.param({}, False, id="object"),
    ],
)
def test_is_valid_id_accepts_only_integers_and_strings(value: Any, valid: bool) -> None:
    assert jsonrpc.is_valid_id(value) is valid


def test_error_response_is_a_complete_jsonrpc_error_line() -> None:
    line = jsonrpc.error_response("r-1", PolicyDenied("cli.deny[x]", "no"))
    assert b"\n" not in line
    message = jsonrpc.decode(line)
    assert message["jsonrpc"] == "2.0"
    assert message["id"] == "r-1"
    assert message["error"]["code"] == PolicyDenied.code
    assert message["error"]["data"] == {"rule": "cli.deny[x]", "reason": "no"}
    assert jsonrpc.classify(message).kind == "response"


def test_error_response_with_unknown_id_carries_id_null() -> None:
    message = jsonrpc.decode(jsonrpc.error_response(None, ParseError("bad")))
    assert message["id"] is None
    assert message["error"]["code"] == PARSE_ERROR


# -- probe_id -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        pytest.param(b'{"id":7,"jsonrpc":"2.0","method":"x","params":{"a":"' + b"x" * 100, 7, id="id-at-start-then-truncated"),
        pytest.param(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":"xxxx', 7, id="id-in-middle"),
        pytest.param(b'{"jsonrpc":"2.0","method":"ping","id":7}', 7, id="id-last-in-complete-object"),
        pytest.param(b' \r\n\t{ "id" : 7 , "method":"x"', 7, id="whitespace-around-tokens"),
        pytest.param(b'{"id":"abc-1","method":', "abc-1", id="string-id"),
        pytest.param(b'{"id":"\\u043a\\u043b\\u044e\\u0447","method":"x"', "ключ", id="escaped-unicode-string-id"),
        pytest.param(b'{"id":' + str(2**70).encode() + b',"method":"x"', 2**70, id="big-int-id"),
        pytest.param(b'{"jsonrpc":"2.0","method":"x","params":{"id":99,"x":"yyy', None, id="nested-id-in-params-not-taken"),
        pytest.param(b'{"jsonrpc":"2.0","params":{"id":99},"id":5,"method":"x"', 5, id="nested-id-skipped-top-level-id-found"),
        pytest.param(
            b'{"jsonrpc":"2.0","method":"x","params":{"q":"say \\",\\"id\\":5,\\"', None, id="id-inside-truncated-member-not-guessed"
        ),
        pytest.param(b'{"jsonrpc":"2.0","params":{"q":"' + b"z" * 50, None, id="truncated-member-before-any-id"),
        pytest.param(b'[{"jsonrpc":"2.0","id":1,"method":"x"}]', None, id="array-prefix"),
        pytest.param(b'"id"', None, id="string-prefix"),
        pytest.param(b"", None, id="empty-prefix"),
        pytest.param(b'garbage {"id":1}', None, id="garbage-before-object"),
        pytest.param(b'{"jsonrpc":"2.0","id":11,"method":"x","params":{"a":"\xff\xfe', 11, id="invalid-utf8-after-id"),
        pytest.param(b'{"params":{"a":"\xff"},"id":11,"method":"x"', 11, id="invalid-utf8-before-id"),
        pytest.param(b'{"id":null,"method":"x"', None, id="null-id"),
        pytest.param(b'{"id":true,"method":"x"', None, id="bool-id"),
        pytest.param(b'{"id":1.5,"method":"x"', None, id="float-id"),
        pytest.param(b'{"id":1,"id":2,"method":"x"', 2, id="duplicate-id-last-wins-like-decode"),
        pytest.param(b'{"jsonrpc":"2.0","method":"x","id":12', None, id="integer-id-cut-by-prefix-end-not-guessed"),
    ],
)
def test_probe_id_finds_only_a_complete_top_level_id(prefix: bytes, expected: Any) -> None:
    assert _same(jsonrpc.probe_id(prefix), expected)


def test_probe_id_looks_no_further_than_the_probe_window() -> None:
    pad = b"p" * jsonrpc.ID_PROBE_BYTES
    assert jsonrpc.probe_id(b'{"pad":"' + pad + b'","id":3}') is None
    assert jsonrpc.probe_id(b'{"id":3,"pad":"' + pad + b'"}') == 3
