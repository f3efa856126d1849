"""The fast argument check answers exactly as `jsonschema` does, on the schemas it compiles,
and hands every other schema to `jsonschema`."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.policy.schemacheck import SchemaCheck, fast_predicate, json_equal, schema_check

NAMES = st.sampled_from(["a", "b", "c", "limit", "path"])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, 1.0, -0.0, 0.5, True, False, 2**53 + 1]),
    st.text(max_size=6),
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)),
                      max_leaves=12)  # fmt: skip
TYPES = st.sampled_from(["null", "boolean", "object", "array", "number", "integer", "string"])
BOUND = st.one_of(st.integers(-5, 5), st.floats(-5, 5, allow_nan=False), st.sampled_from([2**60, 0.5, -0.0]))
COUNT = st.integers(0, 4)


def _keywords(sub: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(TYPES, st.lists(TYPES, min_size=1, max_size=3, unique=True)),
            "enum": st.lists(SCALARS, min_size=1, max_size=4),
            "const": VALUES,
            "minimum": BOUND,
            "maximum": BOUND,
            "exclusiveMinimum": BOUND,
            "exclusiveMaximum": BOUND,
            "minLength": COUNT,
            "maxLength": COUNT,
            "minItems": COUNT,
            "maxItems": COUNT,
            "minProperties": COUNT,
            "maxProperties": COUNT,
            "required": st.lists(NAMES, max_size=3, unique=True),
            "properties": st.dictionaries(NAMES, sub, max_size=3),
            "additionalProperties": sub,
            "items": sub,
            "description": st.text(max_size=5),
            "format": st.sampled_from(["email", "uri", "date-time"]),
        },
    )


SCHEMAS = st.recursive(st.one_of(st.booleans(), _keywords(st.just({}))), _keywords, max_leaves=8)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=SCHEMAS, value=VALUES)
def test_the_fast_check_agrees_with_jsonschema(schema: Any, value: Any) -> None:
    predicate = fast_predicate(schema)
    assert predicate is not None, schema  # everything generated here is in the compiled subset
    assert predicate(value) is jsonschema.Draft202012Validator(schema).is_valid(value)


@settings(max_examples=1000, deadline=None)
@given(one=VALUES, two=VALUES)
def test_json_equality_is_jsonschemas(one: Any, two: Any) -> None:
    assert json_equal(one, two) is jsonschema.Draft202012Validator({"const": one}).is_valid(two)


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"type": "string", "pattern": "^a"}, id="pattern"),
        pytest.param({"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}}, id="ref"),
        pytest.param({"allOf": [{"type": "string"}]}, id="allOf"),
        pytest.param({"$schema": "http://json-schema.org/draft-04/schema#", "type": "integer"}, id="draft-04"),
        pytest.param({"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}, id="nested-$schema"),
        pytest.param({"items": [{"type": "string"}]}, id="tuple-items"),
        pytest.param({"minimum": True}, id="boolean-bound"),
        pytest.param({"maxLength": 2.0}, id="float-count"),
        pytest.param({"type": "strnig"}, id="unknown-type"),
        pytest.param({"x-vendor": 1}, id="unknown-keyword"),
    ],
)
def test_a_schema_outside_the_subset_goes_to_jsonschema(schema: dict[str, Any]) -> None:
    assert fast_predicate(schema) is None


@pytest.mark.parametrize(
    ("schema", "value", "says"),
    [
        pytest.param({"type": "object", "properties": {"n": {"type": "integer"}}}, {"n": "1"}, "is not of type 'integer'", id="fast"),
        pytest.param({"type": "object", "properties": {"n": {"pattern": "^[0-9]+$"}}}, {"n": "1a"}, "does not match", id="fallback"),
        pytest.param({"type": "object", "properties": {"n": {"$ref": "https://example.com/s.json"}}}, {"n": 1}, "cannot be applied",
                     id="unresolvable-ref"),
        pytest.param({"type": "object", "minProperties": "two"}, {}, "input schema is invalid", id="invalid-schema"),
    ],
)  # fmt: skip
def test_a_rejected_value_gets_jsonschemas_message(schema: dict[str, Any], value: Any, says: str) -> None:
    problem = SchemaCheck(schema).problem(value)
    assert problem is not None and says in problem


def test_an_invalid_schema_is_reported_even_where_the_fast_path_could_compile_it() -> None:
    # 'required' must hold unique names by the metaschema; the check does not guess.
    check = SchemaCheck({"type": "object", "required": ["a", "a"]})
    assert check.schema_problem() is not None
    assert check.problem({"a": 1}) == check.schema_problem()


def test_schemas_that_differ_only_in_the_type_of_a_number_do_not_share_a_check() -> None:
    # Python's == says {"const": 1} == {"const": True}; the cache must not.
    one, true = schema_check({"const": 1}), schema_check({"const": True})
    assert one is not true
    assert one.problem(1) is None and one.problem(True) is not None
    assert true.problem(True) is None and true.problem(1) is not None
    assert schema_check({"const": 1}) is one
