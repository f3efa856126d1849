"""gateway/evidence/canonical.py: RFC 8785 canonical JSON, its orjson fast path, and the signed bytes."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.evidence.canonical import (
    BATCH_DOMAIN,
    ENTRY_DOMAIN,
    ROTATION_DOMAIN,
    CanonicalizationError,
    EntryTemplate,
    canonical_json,
    signing_bytes,
)
from gateway.evidence.entry import MEMBERS

# Bound before any test patches the module attribute: the oracle is always the real thing.
_reference = rfc8785.dumps

_SAFE_INT = 2**53 - 1

# Characters where JSON encoders usually disagree: control characters (escaped as \u00XX, or as
# \b \t \n \f \r), DEL and the line separators (never escaped by RFC 8785), the escapes themselves,
# and characters whose UTF-16 order differs from their code point order (U+E000.. vs non-BMP).
_AWKWARD_CHARS = [
    "\x00",
    "\x08",
    "\x0b",
    "\x1f",
    "\x7f",
    "\x80",
    "\u2028",
    "\u2029",
    "\ue000",
    "\ufb33",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "\\",
    '"',
    "/",
]
# Surrogates are left out, so every generated string has a canonical form (they have their own row below).
_chars = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(_AWKWARD_CHARS))
_text = st.text(_chars, max_size=10)
_ascii_text = st.text(st.characters(max_codepoint=0x7F), max_size=10)
_safe_ints = st.one_of(st.integers(-_SAFE_INT, _SAFE_INT), st.sampled_from([0, 1, -1, _SAFE_INT, -_SAFE_INT, 2**31, 2**32, -(2**32)]))
_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1.0, -1.0, 0.0, -0.0, 1e21, 1e20, 1e-7, 1e-6, 0.000001, 5e-324, 1e23, 2.0**53, 2.0**64, 1.7976931348623157e308]),
)

_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _safe_ints, _floats, _text),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(_text, children, max_size=5)),
    max_leaves=25,
)
# What the fast path promises to take: ASCII keys, and only strings, safe integers, booleans, null.
_fast_values = st.recursive(
    st.one_of(st.none(), st.booleans(), _safe_ints, _text),
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(_ascii_text, children, max_size=5)),
    max_leaves=25,
)


class ReferenceCalled(Exception):
    """Raised by a stand-in for rfc8785.dumps; canonical_json does not catch it."""


def _refuse_reference(value: Any) -> bytes:
    raise ReferenceCalled


def _from_bits(bits: int) -> float:
    value: float = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    return value


@settings(max_examples=300, deadline=None)
@given(_json_values)
@example({"\ue000": 1, "\U0001f600": 2})
@example({"\U0001f600": [1.0, -0.0], "\ue000": {"\x7f": "\u2028", "é": 5e-324}, "a": 1e21})
@example(["\x00\x1f\x7f\u2028\u2029\U0010ffff", 1e-7, 0.000001, _SAFE_INT, -_SAFE_INT])
def test_canonical_json_equals_rfc8785_for_any_json_value(value: Any) -> None:
    assert canonical_json(value) == _reference(value)


@settings(max_examples=300, deadline=None)
@given(_fast_values)
@example({"b": 1, "a": [True, None, "\U0001f600"], "": _SAFE_INT, "A": -_SAFE_INT})
def test_the_fast_path_serves_ascii_keyed_scalar_values_without_the_reference_and_agrees_with_it(value: Any) -> None:
    expected = _reference(value)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rfc8785, "dumps", _refuse_reference)
        assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.0, id="float"),
        pytest.param({"a": [0.5]}, id="nested-float"),
        pytest.param({"é": 1}, id="non-ascii-key"),
        pytest.param({"\U0001f600": 1, "\ue000": 2}, id="non-bmp-key"),
        pytest.param(2**53, id="integer-2**53"),
        pytest.param([-(2**53)], id="integer-minus-2**53"),
        pytest.param({1: "a"}, id="non-string-key"),
        pytest.param((1, 2), id="tuple"),
    ],
)
def test_values_outside_the_fast_path_go_to_the_reference_implementation(value: Any) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rfc8785, "dumps", _refuse_reference)
        with pytest.raises(ReferenceCalled):
            canonical_json(value)


@pytest.mark.parametrize("depth", [1, 63, 64, 65, 66, 100])
def test_nesting_around_the_fast_path_depth_limit_still_equals_rfc8785(depth: int) -> None:
    value: Any = {"k": "v", "n": 1}
    for level in range(depth):
        value = [value, level] if level % 2 else {"x": value, "y": None}
    assert canonical_json(value) == _reference(value)


def _nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _cycle() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param(float("inf"), id="plus-infinity"),
        pytest.param(float("-inf"), id="minus-infinity"),
        pytest.param({"a": [1, {"b": float("nan")}]}, id="nested-nan"),
        pytest.param([float("inf")], id="nested-plus-infinity"),
        pytest.param({"a": float("-inf")}, id="nested-minus-infinity"),
        pytest.param(2**53, id="integer-2**53"),
        pytest.param(-(2**53), id="integer-minus-2**53"),
        pytest.param({"a": [2**64]}, id="nested-large-integer"),
        pytest.param("\ud800", id="lone-high-surrogate"),
        pytest.param("a\udfffb", id="lone-low-surrogate"),
        pytest.param({"k": ["\ud83d"]}, id="nested-lone-surrogate"),
        pytest.param({"\ud800": 1}, id="lone-surrogate-key"),
        pytest.param({1: "a"}, id="integer-key"),
        pytest.param({None: "a"}, id="null-key"),
        pytest.param({"a": {("t",): 1}}, id="nested-tuple-key"),
        pytest.param(object(), id="object"),
        pytest.param({"a": object()}, id="nested-object"),
        pytest.param(b"bytes", id="bytes"),
        pytest.param(_nested_list(10_000), id="nested-too-deeply"),
        pytest.param(_cycle(), id="cycle"),
    ],
)
def test_values_without_a_canonical_form_raise_canonicalization_error(value: Any) -> None:
    with pytest.raises(CanonicalizationError) as caught:
        canonical_json(value)
    assert isinstance(caught.value, GatewayError)


# RFC 8785 Appendix B: IEEE 754 bit patterns and their canonical number forms.
@pytest.mark.parametrize(
    ("bits", "expected"),
    [
        pytest.param(0x0000000000000000, b"0", id="zero"),
        pytest.param(0x8000000000000000, b"0", id="minus-zero"),
        pytest.param(0x0000000000000001, b"5e-324", id="min-subnormal"),
        pytest.param(0x8000000000000001, b"-5e-324", id="minus-min-subnormal"),
        pytest.param(0x7FEFFFFFFFFFFFFF, b"1.7976931348623157e+308", id="max-double"),
        pytest.param(0xFFEFFFFFFFFFFFFF, b"-1.7976931348623157e+308", id="minus-max-double"),
        pytest.param(0x4340000000000000, b"9007199254740992", id="float-2**53"),
        pytest.param(0xC340000000000000, b"-9007199254740992", id="float-minus-2**53"),
        pytest.param(0x4430000000000000, b"295147905179352830000", id="float-2**68"),
        pytest.param(0x44B52D02C7E14AF5, b"9.999999999999997e+22", id="below-1e23"),
        pytest.param(0x44B52D02C7E14AF6, b"1e+23", id="1e23"),
        pytest.param(0x44B52D02C7E14AF7, b"1.0000000000000001e+23", id="above-1e23"),
        pytest.param(0x444B1AE4D6E2EF4E, b"999999999999999700000", id="below-1e21-a"),
        pytest.param(0x444B1AE4D6E2EF4F, b"999999999999999900000", id="below-1e21-b"),
        pytest.param(0x444B1AE4D6E2EF50, b"1e+21", id="1e21"),
        pytest.param(0x3EB0C6F7A0B5ED8C, b"9.999999999999997e-7", id="below-1e-6"),
        pytest.param(0x3EB0C6F7A0B5ED8D, b"0.000001", id="1e-6"),
        pytest.param(0x41B3DE4355555553, b"333333333.3333332", id="third-a"),
        pytest.param(0x41B3DE4355555554, b"333333333.33333325", id="third-b"),
        pytest.param(0x41B3DE4355555555, b"333333333.3333333", id="third-c"),
        pytest.param(0x41B3DE4355555556, b"333333333.3333334", id="third-d"),
        pytest.param(0x41B3DE4355555557, b"333333333.33333343", id="third-e"),
        pytest.param(0xBECBF647612F3696, b"-0.0000033333333333333333", id="small-negative"),
        pytest.param(0x43143FF3C1CB0959, b"1424953923781206.2", id="large-fraction"),
    ],
)
def test_numbers_serialise_as_in_rfc8785_appendix_b(bits: int, expected: bytes) -> None:
    assert canonical_json(_from_bits(bits)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(1e21, b"1e+21", id="1e21"),
        pytest.param(0.000001, b"0.000001", id="1e-6"),
        pytest.param(1e-7, b"1e-7", id="1e-7"),
        pytest.param(-0.0, b"0", id="minus-zero"),
        pytest.param(1.0, b"1", id="one-point-zero"),
        pytest.param(4.50, b"4.5", id="trailing-zero"),
        pytest.param(_SAFE_INT, b"9007199254740991", id="max-safe-integer"),
        pytest.param(-_SAFE_INT, b"-9007199254740991", id="min-safe-integer"),
        pytest.param([None, True, False], b"[null,true,false]", id="literals"),
        pytest.param({}, b"{}", id="empty-object"),
        pytest.param([], b"[]", id="empty-array"),
        pytest.param({"b": 1, "a": {"d": 2, "c": 3}}, b'{"a":{"c":3,"d":2},"b":1}', id="nested-keys-sorted"),
        pytest.param("\u2028\x7f", '"\u2028\x7f"'.encode(), id="separators-and-del-not-escaped"),
        pytest.param("\x00\x0f\x1f", b'"\\u0000\\u000f\\u001f"', id="controls-as-lowercase-u-escapes"),
        pytest.param("\b\t\n\f\r", b'"\\b\\t\\n\\f\\r"', id="short-escapes"),
        pytest.param('"\\/', b'"\\"\\\\/"', id="quote-backslash-and-unescaped-solidus"),
        pytest.param({"\U0001f600": 1, "\ue000": 2}, '{"\U0001f600":1,"\ue000":2}'.encode(), id="utf16-order-non-bmp-before-e000"),
    ],
)
def test_values_serialise_to_their_rfc8785_bytes(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


def test_the_rfc8785_sorting_example_orders_keys_by_utf16_code_units() -> None:
    # RFC 8785, section 3.2.3.
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(canonical_json(value)))
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_the_rfc8785_main_example_gives_its_published_bytes() -> None:
    # RFC 8785, section 3.2.4, fed through a JSON parser as the RFC does.
    text = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = r"""{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"""
    assert canonical_json(json.loads(text)) == expected.encode()


def test_signing_bytes_drop_exactly_the_top_level_hash_and_sig_members() -> None:
    entry = {
        "seq": 7,
        "hash": "aa" * 32,
        "sig": "c2ln",
        "hashes": ["kept"],
        "signature": "kept",
        "Sig": "kept",
        "HASH": "kept",
        "body": {"hash": "kept when nested", "sig": "kept when nested"},
    }
    kept = {k: v for k, v in entry.items() if k not in ("hash", "sig")}
    assert signing_bytes(entry) == ENTRY_DOMAIN + canonical_json(kept)
    assert "hash" in entry
    assert "sig" in entry


def test_signing_bytes_do_not_change_with_hash_or_sig_and_change_with_anything_else() -> None:
    entry = {"seq": 1, "tool": "echo", "hash": "00", "sig": "AA=="}
    base = signing_bytes(entry)
    assert signing_bytes({**entry, "hash": "ff", "sig": "BB=="}) == base
    assert signing_bytes({k: v for k, v in entry.items() if k not in ("hash", "sig")}) == base
    assert signing_bytes({**entry, "seq": 2}) != base
    assert signing_bytes({**entry, "extra": None}) != base


@pytest.mark.parametrize(
    "domain",
    [
        pytest.param(ENTRY_DOMAIN, id="entry"),
        pytest.param(BATCH_DOMAIN, id="batch"),
        pytest.param(ROTATION_DOMAIN, id="rotation"),
        pytest.param(b"custom\x00", id="custom"),
    ],
)
def test_signing_bytes_start_with_the_domain_prefix_given(domain: bytes) -> None:
    entry = {"seq": 1, "hash": "00"}
    assert signing_bytes(entry, domain) == domain + b'{"seq":1}'


def test_signing_bytes_default_to_the_entry_domain() -> None:
    assert signing_bytes({"a": 1}).startswith(ENTRY_DOMAIN)


def test_different_domains_give_different_bytes_and_no_domain_is_a_prefix_of_another() -> None:
    domains = [ENTRY_DOMAIN, BATCH_DOMAIN, ROTATION_DOMAIN]
    entry = {"seq": 1, "root": "00" * 32}
    assert len({signing_bytes(entry, domain) for domain in domains}) == len(domains)
    for first in domains:
        for second in domains:
            if first != second:
                assert not second.startswith(first)


def test_signing_bytes_raise_canonicalization_error_for_an_entry_without_canonical_form() -> None:
    with pytest.raises(CanonicalizationError):
        signing_bytes({"seq": 1, "latency": float("nan")})


# -- signing_bytes(..., inspect=...): the flight log's hot path ------------------------------
#
# `FlightLog.record` vouches for every member of its entries except `request_id` and `data`,
# and asks `signing_bytes` to inspect only those two. The bytes must still be RFC 8785 (the
# verifier re-derives them without `inspect`), and an entry without a canonical form must still
# be refused, whichever member carries the problem.

_HOT_INSPECT = ("request_id", "data")
_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
# Names `canonical` knows to be ASCII (its fast key check), mixed with arbitrary keys.
_KNOWN_KEYS = ["call", "is_error", "arguments", "response", "tools", "name", "next_cursor", "count", "big_int", "hash", "sig", "data"]
_hex_digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
_optional_digests = st.one_of(st.none(), _hex_digests)
_broken_text = st.builds(lambda head, bad, tail: head + bad + tail, _text, st.sampled_from(_SURROGATES), _text)
_big_ints = st.one_of(
    st.integers(),
    st.sampled_from([_SAFE_INT + 1, -_SAFE_INT - 1, 2**53 + 1, 2**63, -(2**63), 2**64, 10**30, -(10**30)]),
)
_bad_floats = st.sampled_from([float("nan"), float("inf"), float("-inf")])


def _hot_data(*, broken: bool) -> st.SearchStrategy[dict[Any, Any]]:
    """JSON-ish `data` objects: nested, floats, non-ASCII (and non-BMP) keys, safe integers;
    `broken` adds what has no RFC 8785 form (big integers, NaN and infinities, lone surrogates,
    non-string keys), anywhere in the tree."""
    leaves = [st.none(), st.booleans(), _safe_ints, _floats, _text]
    keys = [_text, _ascii_text, st.sampled_from(_KNOWN_KEYS)]
    if broken:
        leaves += [_big_ints, _bad_floats, _broken_text]
        keys += [_broken_text, st.integers(-3, 3)]
    key = st.one_of(*keys)
    values = st.recursive(
        st.one_of(*leaves),
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(key, children, max_size=4)),
        max_leaves=20,
    )
    return st.dictionaries(key, values, max_size=5)


def _request_ids(*, broken: bool) -> st.SearchStrategy[Any]:
    """What `record` gets as `request_id`: an integer, a string, null or `log_request_id`'s
    {"big_int": ...}; `broken` adds integers beyond 2**53 as they are and lone surrogates."""
    ids = [_safe_ints, _text, st.none(), st.builds(lambda n: {"big_int": str(n)}, _big_ints)]
    if broken:
        ids += [_big_ints, _broken_text]
    return st.one_of(*ids)


@st.composite
def _hot_entries(draw: st.DrawFn, *, broken: bool) -> dict[str, Any]:
    """An entry as `FlightLog.record` builds it (same members, same insertion order)."""
    text = st.one_of(st.none(), _text, _broken_text) if broken else st.one_of(st.none(), _text)
    return {
        "args_hash": draw(_optional_digests),
        "data": draw(_hot_data(broken=broken)),
        "decision": draw(st.sampled_from([None, "allow", "deny", "shadow-deny"])),
        "descriptor_hash": draw(_optional_digests),
        "key_id": draw(_hex_digests),
        "kind": draw(st.sampled_from(["call", "result"])),
        "labels": [],
        "policy_hash": draw(_optional_digests),
        "prev": draw(_hex_digests),
        "reason": draw(text),
        "request_id": draw(_request_ids(broken=broken)),
        "result_hash": draw(_optional_digests),
        "rule": draw(text),
        "seq": draw(st.integers(0, _SAFE_INT)),
        "server": draw(text),
        "session": draw(st.binary(min_size=16, max_size=16).map(bytes.hex)),
        "tool": draw(text),
        "ts": "2026-01-02T03:04:05.678901Z",
        "v": 1,
    }


def _hot_entry(**members: Any) -> dict[str, Any]:
    """A typical `record` entry, with `members` replaced."""
    entry: dict[str, Any] = {
        "args_hash": "ab" * 32, "data": {}, "decision": "allow", "descriptor_hash": None, "key_id": "cd" * 32,
        "kind": "call", "labels": [], "policy_hash": None, "prev": "0" * 64, "reason": "no rule denies this call",
        "request_id": 1, "result_hash": None, "rule": "default.allow", "seq": 1, "server": "everything",
        "session": "ef" * 16, "tool": "echo", "ts": "2026-01-02T03:04:05.678901Z", "v": 1,
    }  # fmt: skip
    assert sorted(entry) == sorted(MEMBERS)  # every member of `Entry`, as the flight log writes them
    assert members.keys() <= entry.keys()
    return {**entry, **members}


def _reference_entry_bytes(entry: dict[str, Any]) -> bytes | None:
    """ENTRY_DOMAIN + rfc8785's bytes, or None when rfc8785 finds no canonical form."""
    try:
        return ENTRY_DOMAIN + _reference(entry)
    except (ValueError, TypeError, RecursionError):  # rfc8785.CanonicalizationError and UnicodeEncodeError are ValueErrors
        return None


@settings(max_examples=500, deadline=None)
@given(st.one_of(_hot_entries(broken=False), _hot_entries(broken=True)))
@example(_hot_entry(request_id=_SAFE_INT, data={"call": "ab" * 32, "is_error": False}))
@example(_hot_entry(request_id=-_SAFE_INT, data={"arguments": '{"a":1}'}))
@example(_hot_entry(request_id={"big_int": str(2**64)}, data={"\U0001f600": 1.0, "\ue000": -0.0, "a": 1e21}))
@example(_hot_entry(data={"\U0001f600": 1, "\ue000": 2, "\uffff": "x", "\U00010000": None}))
@example(_hot_entry(data={"call": {"\U0010ffff": [True], "\ufb33": []}}))
@example(_hot_entry(request_id="\U0001f600\x00\u2028", data={"k": {"é": [1.0, 2**53 - 1, {"\U00010000": None}]}}))
@example(_hot_entry(server="\x00\x1f\x7f", tool="\U0010ffff", rule="\u2028\u2029", reason='"\\/\ue000'))
@example(_hot_entry(data={"hash": "kept when nested", "sig": "kept when nested"}))
@example(_hot_entry(request_id=2**53))
@example(_hot_entry(request_id=-(2**53)))
@example(_hot_entry(request_id=2**64))
@example(_hot_entry(data={"a": [1, {"b": 2**53}]}))
@example(_hot_entry(data={"a": float("nan")}))
@example(_hot_entry(data={"a": [float("-inf")]}))
@example(_hot_entry(data={"\ud800": 1}))
@example(_hot_entry(data={1: "a"}))
@example(_hot_entry(request_id="\udfff"))
@example(_hot_entry(server="a\ud800b"))
@example(_hot_entry(reason="\udc00"))
def test_signing_bytes_inspecting_request_id_and_data_equal_rfc8785_of_a_record_entry(entry: dict[str, Any]) -> None:
    expected = _reference_entry_bytes(entry)
    event("no canonical form" if expected is None else "canonical form")
    if expected is None:
        with pytest.raises(CanonicalizationError):
            signing_bytes(entry, inspect=_HOT_INSPECT)
        with pytest.raises(CanonicalizationError):
            signing_bytes(entry)
    else:
        assert signing_bytes(entry, inspect=_HOT_INSPECT) == expected
        assert signing_bytes(entry) == expected


@settings(max_examples=200, deadline=None)
@given(
    request_id=st.one_of(_safe_ints, _text, st.none(), st.booleans()),
    data=st.dictionaries(_ascii_text, _fast_values, max_size=5),
    server=st.one_of(st.none(), _text),
)
def test_signing_bytes_inspecting_serve_a_fast_record_entry_without_the_reference(request_id: Any, data: Any, server: Any) -> None:
    entry = _hot_entry(request_id=request_id, data=data, server=server)
    expected = ENTRY_DOMAIN + _reference(entry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rfc8785, "dumps", _refuse_reference)
        assert signing_bytes(entry, inspect=_HOT_INSPECT) == expected


@pytest.mark.parametrize("depth", [1, 62, 63, 64, 65, 66, 100, 300])
def test_signing_bytes_inspecting_deeply_nested_data_still_equal_rfc8785(depth: int) -> None:
    # `data` is one level below the entry: the fast path's depth limit must not shift the bytes.
    value: Any = {"k": "v", "n": 1}
    for level in range(depth):
        value = [value, level] if level % 2 else {"x": value, "y": None}
    entry = _hot_entry(data={"nested": value})
    assert signing_bytes(entry, inspect=_HOT_INSPECT) == ENTRY_DOMAIN + _reference(entry)


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"data": {"a": _nested_list(10_000)}}, id="data-nested-too-deeply"),
        pytest.param({"data": {"a": _cycle()}}, id="data-cycle"),
        pytest.param({"data": {"a": object()}}, id="data-object"),
        pytest.param({"request_id": 1.5}, id="float-request-id"),
        pytest.param({"request_id": float("nan")}, id="nan-request-id"),
        pytest.param({"request_id": [2**64]}, id="list-request-id-with-big-int"),
    ],
)
def test_signing_bytes_inspecting_agree_with_rfc8785_on_odd_members(members: dict[str, Any]) -> None:
    entry = _hot_entry(**members)
    expected = _reference_entry_bytes(entry)
    if expected is None:
        with pytest.raises(CanonicalizationError):
            signing_bytes(entry, inspect=_HOT_INSPECT)
    else:
        assert signing_bytes(entry, inspect=_HOT_INSPECT) == expected


def test_signing_bytes_inspecting_still_leave_out_hash_and_sig() -> None:
    # `hash` and `sig` are in the member set the caller may vouch for; they are never signed.
    entry = {**_hot_entry(), "hash": "aa" * 32, "sig": "c2ln"}
    unsigned = _hot_entry()
    assert signing_bytes(entry, inspect=_HOT_INSPECT) == signing_bytes(entry) == ENTRY_DOMAIN + _reference(unsigned)


# -- EntryTemplate: the same bytes, assembled without the entry ------------------------------
#
# `FlightLog` takes a `call`, `result` or `checkpoint` entry's signing bytes from its template
# and builds the entry for `signing_bytes` only when the template gives up (None). Whatever the
# template returns must be RFC 8785 of the entry; when the entry has no canonical form it must
# give up, so that `signing_bytes` raises.

_TEMPLATE_KINDS = ("call", "result", "checkpoint")


def _template_for(entry: dict[str, Any]) -> EntryTemplate:
    return EntryTemplate(session=entry["session"], key_id=entry["key_id"], policy_hash=entry["policy_hash"], version=entry["v"],
                         kinds=_TEMPLATE_KINDS)  # fmt: skip


def _assembled(entry: dict[str, Any]) -> bytes | None:
    """The template's bytes for `entry`, given exactly the members it does not fix."""
    template = _template_for(entry)
    assert template.entry({name: entry[name] for name in template.members}) == entry
    return template.entry_signing_bytes({name: entry[name] for name in template.members})


def test_the_entry_template_fixes_or_takes_every_member_of_an_entry_once() -> None:
    template = _template_for(_hot_entry())
    assert sorted([*template.fixed, *template.members]) == sorted(MEMBERS)
    assert not set(template.fixed) & set(template.members)


@st.composite
def _template_entries(draw: st.DrawFn, *, broken: bool) -> dict[str, Any]:
    """`_hot_entries`, with any kind the template serves, any text where a timestamp goes, and
    fixed members (session, key id, policy hash) that are text too."""
    text = st.one_of(_text, _broken_text) if broken else _text
    return {
        **draw(_hot_entries(broken=broken)),
        "kind": draw(st.sampled_from(_TEMPLATE_KINDS)),
        "ts": draw(st.one_of(st.just("2026-01-02T03:04:05.678901Z"), text)),
        "prev": draw(st.one_of(_hex_digests, _text)),
        "session": draw(st.one_of(_hex_digests, _text)),
        "key_id": draw(st.one_of(_hex_digests, _text)),
        "policy_hash": draw(st.one_of(st.none(), _hex_digests, _text)),
    }


@settings(max_examples=500, deadline=None)
@given(st.one_of(_template_entries(broken=False), _template_entries(broken=True)))
@example(_hot_entry(request_id=_SAFE_INT, data={"call": "ab" * 32, "is_error": False, "labels": ["untrusted"]}))
@example(_hot_entry(kind="checkpoint", request_id=None, decision=None, rule=None, reason=None, server=None, tool=None,
                    data={"session": "ef" * 16, "key_id": "cd" * 16, "first": 1, "last": 9, "root": "00" * 32,
                          "head": "11" * 32, "count": 9, "sig": "c2ln"}))  # fmt: skip
@example(_hot_entry(request_id={"big_int": str(2**64)}))
@example(_hot_entry(request_id=True))
@example(_hot_entry(request_id=1.0))
@example(_hot_entry(data={"\U0001f600": 1, "\ue000": 2}))
@example(_hot_entry(data={"a": 1.0}))
@example(_hot_entry(data={"a": [2**53]}))
@example(_hot_entry(server="\x00\x1f\x7f", tool="\U0010ffff", rule="\u2028\u2029", reason='"\\/\ue000'))
@example(_hot_entry(server="a\ud800b"))
@example(_hot_entry(ts="\udfff"))
@example(_hot_entry(request_id="\udc00"))
@example(_hot_entry(kind="descriptor"))
def test_the_entry_template_gives_rfc8785_of_the_entry_or_gives_up(entry: dict[str, Any]) -> None:
    expected = _reference_entry_bytes(entry)
    assembled = _assembled(entry)
    event("assembled" if assembled is not None else "gave up")
    if expected is None:
        assert assembled is None
    elif assembled is not None:
        assert assembled == expected
        assert assembled == signing_bytes(entry)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(_TEMPLATE_KINDS),
    request_id=st.one_of(_safe_ints, _text, st.none()),
    data=st.dictionaries(_ascii_text, _fast_values, max_size=5),
    text=st.tuples(*[st.one_of(st.none(), _text)] * 5),
    ts=_text,
)
def test_the_entry_template_assembles_every_entry_the_fast_path_takes_without_the_reference(
    kind: str, request_id: Any, data: Any, text: tuple[str | None, ...], ts: str
) -> None:
    server, tool, decision, rule, reason = text
    entry = _hot_entry(kind=kind, request_id=request_id, data=data, server=server, tool=tool, decision=decision, rule=rule,
                       reason=reason, ts=ts)  # fmt: skip
    expected = ENTRY_DOMAIN + _reference(entry)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rfc8785, "dumps", _refuse_reference)
        assert _assembled(entry) == expected


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"kind": "genesis"}, id="kind-not-the-templates"),
        pytest.param({"request_id": {"big_int": str(2**64)}}, id="big-int-request-id"),
        pytest.param({"request_id": 2**53}, id="request-id-beyond-2**53"),
        pytest.param({"request_id": False}, id="boolean-request-id"),
        pytest.param({"data": {"é": 1}}, id="non-ascii-key"),
        pytest.param({"data": {"a": 0.5}}, id="float"),
        pytest.param({"data": None}, id="data-not-an-object"),
        pytest.param({"reason": "\ud800"}, id="lone-surrogate"),
    ],
)
def test_the_entry_template_gives_up_on_members_outside_the_fast_path(members: dict[str, Any]) -> None:
    assert _assembled(_hot_entry(**members)) is None


def test_the_entry_template_serialises_its_fixed_members_once_and_refuses_one_without_canonical_form() -> None:
    with pytest.raises(CanonicalizationError):
        EntryTemplate(session="\ud800", key_id="cd" * 16, policy_hash=None, version=1, kinds=_TEMPLATE_KINDS)
