"""gateway/labels/masks.py: the label bit masks, their names, the `_meta` the client sees, and the
action class derived (conservatively) from MCP tool annotations."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.labels.masks import (
    CONFIDENTIAL,
    META_KEY,
    META_NAMESPACE,
    PRIVATE,
    SECRET,
    SUSPECT,
    UNTRUSTED,
    confidentiality,
    confidentiality_mask,
    derived_class,
    mask_of,
    names_of,
    to_meta,
)

ABSENT = object()
ALL_MASKS = range(16)


def _annotations(read_only: Any, open_world: Any, destructive: Any) -> dict[str, Any]:
    given_hints = {"readOnlyHint": read_only, "openWorldHint": open_world, "destructiveHint": destructive}
    return {name: value for name, value in given_hints.items() if value is not ABSENT}


# -- derived_class ------------------------------------------------------------------------

#: readOnlyHint x openWorldHint; destructiveHint is crossed with every row and never matters.
CLASS_ROWS = [
    pytest.param(True, False, "read", id="read-only and closed-world is read"),
    pytest.param(True, True, "egress", id="read-only but open-world (a fetch) is egress"),
    pytest.param(True, ABSENT, "egress", id="read-only with open-world absent (MCP default open) is egress"),
    pytest.param(False, False, "write", id="not read-only and closed-world is write"),
    pytest.param(False, True, "egress", id="not read-only and open-world is egress"),
    pytest.param(False, ABSENT, "egress", id="not read-only with open-world absent is egress"),
    pytest.param(ABSENT, False, "write", id="read-only absent and closed-world is write"),
    pytest.param(ABSENT, True, "egress", id="read-only absent and open-world is egress"),
    pytest.param(ABSENT, ABSENT, "egress", id="no hints at all is egress"),
]


@pytest.mark.parametrize("destructive", [True, False, ABSENT], ids=["destructive", "not destructive", "destructive absent"])
@pytest.mark.parametrize(("read_only", "open_world", "expected"), CLASS_ROWS)
def test_the_class_derived_from_annotations_depends_only_on_read_only_and_open_world(
    read_only: Any, open_world: Any, destructive: Any, expected: str
) -> None:
    assert derived_class(_annotations(read_only, open_world, destructive)) == expected


@pytest.mark.parametrize(
    "annotations",
    [
        pytest.param(None, id="none"),
        pytest.param([], id="an empty list"),
        pytest.param([["readOnlyHint", True], ["openWorldHint", False]], id="a list of pairs"),
        pytest.param("readOnlyHint openWorldHint=false", id="a string"),
        pytest.param(42, id="a number"),
        pytest.param(OrderedDict(readOnlyHint=True, openWorldHint=False), id="a dict subclass"),
    ],
)
def test_annotations_that_are_not_a_plain_object_derive_the_most_conservative_class(annotations: Any) -> None:
    assert derived_class(annotations) == "egress"


@pytest.mark.parametrize(
    ("read_only", "open_world", "expected"),
    [
        pytest.param("true", False, "write", id="read-only as the string true is not read-only"),
        pytest.param(1, False, "write", id="read-only as 1 is not read-only"),
        pytest.param(True, 0, "egress", id="open-world as 0 is not closed-world"),
        pytest.param(True, "false", "egress", id="open-world as the string false is not closed-world"),
        pytest.param(True, None, "egress", id="open-world null is not closed-world"),
    ],
)
def test_hints_that_are_not_json_booleans_are_read_conservatively(read_only: Any, open_world: Any, expected: str) -> None:
    assert derived_class({"readOnlyHint": read_only, "openWorldHint": open_world}) == expected


def test_exec_is_never_derived_from_annotations() -> None:
    hints = (True, False, ABSENT)
    seen = {derived_class(_annotations(r, o, d)) for r in hints for o in hints for d in hints}
    assert seen == {"read", "write", "egress"}


# -- masks --------------------------------------------------------------------------------


def test_secret_carries_the_private_bit() -> None:
    assert SECRET & PRIVATE == PRIVATE
    assert mask_of(["secret"]) & PRIVATE == PRIVATE
    assert CONFIDENTIAL == SECRET


def test_the_label_bits_are_distinct() -> None:
    bits = [UNTRUSTED, PRIVATE, SECRET & ~PRIVATE, SUSPECT]
    assert all(bit and bit & (bit - 1) == 0 for bit in bits)
    assert len({*bits}) == 4
    assert sum(bits) == UNTRUSTED | SECRET | SUSPECT


@pytest.mark.parametrize(
    ("names", "mask"),
    [
        pytest.param([], 0, id="nothing"),
        pytest.param(["untrusted"], UNTRUSTED, id="untrusted"),
        pytest.param(["private"], PRIVATE, id="private"),
        pytest.param(["secret"], SECRET, id="secret includes private"),
        pytest.param(["private", "secret"], SECRET, id="private and secret is secret"),
        pytest.param(["poisoned-suspect"], SUSPECT, id="poisoned-suspect"),
        pytest.param(["untrusted", "secret", "poisoned-suspect"], UNTRUSTED | SECRET | SUSPECT, id="everything"),
    ],
)
def test_mask_of_joins_the_named_labels(names: list[str], mask: int) -> None:
    assert mask_of(names) == mask


def test_mask_of_rejects_an_unknown_label_name() -> None:
    with pytest.raises(KeyError):
        mask_of(["trusted"])


@pytest.mark.parametrize(
    ("level", "mask"),
    [
        pytest.param(None, 0, id="unset is public"),
        pytest.param("public", 0, id="public"),
        pytest.param("private", PRIVATE, id="private"),
        pytest.param("secret", SECRET, id="secret"),
    ],
)
def test_confidentiality_mask_of_a_declared_level(level: str | None, mask: int) -> None:
    assert confidentiality_mask(level) == mask
    assert confidentiality(mask) == (level or "public")


@pytest.mark.parametrize(
    ("mask", "names"),
    [
        pytest.param(0, [], id="clean"),
        pytest.param(UNTRUSTED, ["untrusted"], id="untrusted"),
        pytest.param(PRIVATE, ["private"], id="private"),
        pytest.param(SECRET, ["secret"], id="secret names only secret, not private too"),
        pytest.param(SECRET & ~PRIVATE, ["secret"], id="a bare secret bit is still secret"),
        pytest.param(SUSPECT, ["poisoned-suspect"], id="suspect"),
        pytest.param(UNTRUSTED | PRIVATE | SUSPECT, ["untrusted", "private", "poisoned-suspect"], id="untrusted private suspect"),
        pytest.param(UNTRUSTED | SECRET | SUSPECT, ["untrusted", "secret", "poisoned-suspect"], id="everything"),
    ],
)
def test_names_of_lists_the_labels_most_specific_confidentiality_only(mask: int, names: list[str]) -> None:
    assert names_of(mask) == names


@given(st.sampled_from(ALL_MASKS))
def test_names_of_and_mask_of_round_trip_on_every_mask_with_secret_closed_over_private(mask: int) -> None:
    closed = mask | PRIVATE if mask & (SECRET & ~PRIVATE) else mask
    assert mask_of(names_of(mask)) == closed
    assert names_of(mask_of(names_of(mask))) == names_of(mask)


# -- the client's _meta -------------------------------------------------------------------


def test_the_meta_key_is_in_airlocks_namespace() -> None:
    assert META_KEY.startswith(META_NAMESPACE)
    assert META_KEY == "dev.mcp-airlock/labels"


@pytest.mark.parametrize(
    ("mask", "expected"),
    [
        pytest.param(0, {"integrity": "trusted", "confidentiality": "public", "flags": []}, id="clean"),
        pytest.param(UNTRUSTED, {"integrity": "untrusted", "confidentiality": "public", "flags": []}, id="untrusted"),
        pytest.param(PRIVATE, {"integrity": "trusted", "confidentiality": "private", "flags": []}, id="private"),
        pytest.param(UNTRUSTED | SECRET, {"integrity": "untrusted", "confidentiality": "secret", "flags": []}, id="untrusted secret"),
        pytest.param(
            SUSPECT | UNTRUSTED, {"integrity": "untrusted", "confidentiality": "public", "flags": ["poisoned-suspect"]}, id="suspect"
        ),
    ],
)
def test_to_meta_says_integrity_confidentiality_and_flags(mask: int, expected: dict[str, Any]) -> None:
    assert to_meta(mask) == expected


def test_to_meta_names_field_levels_and_the_source() -> None:
    source = {"server": "mail", "tool": "read_email"}
    meta = to_meta(UNTRUSTED | PRIVATE, fields={"body": PRIVATE, "headers.subject": 0, "key": SECRET}, source=source)
    assert meta["fields"] == {"body": "private", "headers.subject": "public", "key": "secret"}
    assert meta["source"] == source
    assert meta["source"] is not source


def test_to_meta_leaves_out_empty_fields_and_source() -> None:
    assert set(to_meta(PRIVATE, fields={}, source={})) == {"integrity", "confidentiality", "flags"}
