"""Input-schema checks for `tools/call` arguments, compiled once per descriptor hash.

Most tool schemas use a small part of JSON Schema (types, properties, required, enums, ranges,
lengths, items). That part is compiled into plain Python predicates, about ten times faster
than `jsonschema`'s general validator. Any keyword outside it (`$ref`, `pattern`, `allOf`,
`format` with a checker, a draft-04 `$schema`, ...) sends the whole schema to `jsonschema`,
so the fast path is never an approximation: it answers only where its answer is the same
(a property test compares the two). A rejected value is always re-checked by `jsonschema` for
its error message; if the two ever disagree, the value is rejected (fail closed).

`SchemaCheck.problem(value)` is the one entry point. Compilation, including the metaschema
check, is lazy (on the first call of the tool, not when it is listed: a 100-tool listing
compiles nothing) and memoised per schema text, process-wide and bounded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Final

import jsonschema

from gateway.protocol import jsonrpc

Predicate = Callable[[Any], bool]

#: Keywords that never change whether a value is valid (annotations). `format` is one: no
#: format checker is configured, as in `jsonschema`'s default.
_ANNOTATIONS: Final = frozenset(
    {"title", "description", "default", "examples", "$comment", "deprecated", "readOnly", "writeOnly", "format",
     "contentMediaType", "contentEncoding", "$schema"}
)  # fmt: skip
_SUPPORTED: Final = frozenset(
    {"type", "properties", "required", "additionalProperties", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
     "exclusiveMaximum", "minLength", "maxLength", "items", "minItems", "maxItems", "minProperties", "maxProperties"}
)  # fmt: skip
#: Drafts whose meaning of the supported keywords is the same (numeric exclusive bounds,
#: 1.0 is an integer). Draft 4 and 3 differ: those schemas go to `jsonschema`.
_SAME_DRAFTS: Final = frozenset(
    {"https://json-schema.org/draft/2020-12/schema", "https://json-schema.org/draft/2019-09/schema",
     "http://json-schema.org/draft-07/schema#", "http://json-schema.org/draft-07/schema",
     "http://json-schema.org/draft-06/schema#", "http://json-schema.org/draft-06/schema"}
)  # fmt: skip
_CACHE_LIMIT: Final = 4096


class _Unsupported(Exception):
    """The schema uses something the fast path does not compile."""


def _is_number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


_TYPES: Final[Mapping[str, Predicate]] = {
    "null": lambda v: v is None,
    "boolean": lambda v: type(v) is bool,
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "number": lambda v: type(v) is int or type(v) is float,
    "integer": lambda v: type(v) is int or (type(v) is float and v.is_integer()),
}


def json_equal(one: Any, two: Any) -> bool:
    """Equality as JSON Schema's `enum` and `const` mean it: `true` is not 1, 1 is 1.0,
    arrays and objects compare element by element."""
    if type(one) is bool or type(two) is bool:
        return type(one) is type(two) and one == two
    if type(one) is list and type(two) is list:
        return len(one) == len(two) and all(json_equal(a, b) for a, b in zip(one, two, strict=True))
    if type(one) is dict and type(two) is dict:
        return len(one) == len(two) and all(k in two and json_equal(v, two[k]) for k, v in one.items())
    if type(one) in (list, dict) or type(two) in (list, dict):
        return False
    if type(one) is str or type(two) is str:
        return type(one) is type(two) and one == two
    return bool(one == two)


# -- the predicates (module functions bound with partial: typed, and no closure cells) ----------


def _any_type(tests: tuple[Predicate, ...], v: Any) -> bool:
    return any(t(v) for t in tests)


def _in_enum(allowed: tuple[Any, ...], v: Any) -> bool:
    return any(json_equal(v, a) for a in allowed)


def _is_const(const: Any, v: Any) -> bool:
    return json_equal(v, const)


def _all(checks: tuple[Predicate, ...], v: Any) -> bool:
    return all(c(v) for c in checks)


def _numeric(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _ge(bound: Any, v: Any) -> bool:
    return not _numeric(v) or bool(v >= bound)


def _le(bound: Any, v: Any) -> bool:
    return not _numeric(v) or bool(v <= bound)


def _gt(bound: Any, v: Any) -> bool:
    return not _numeric(v) or bool(v > bound)


def _lt(bound: Any, v: Any) -> bool:
    return not _numeric(v) or bool(v < bound)


def _min_length(n: int, v: Any) -> bool:
    return type(v) is not str or len(v) >= n


def _max_length(n: int, v: Any) -> bool:
    return type(v) is not str or len(v) <= n


def _properties(compiled: tuple[tuple[str, Predicate], ...], v: Any) -> bool:
    return type(v) is not dict or all(name not in v or p(v[name]) for name, p in compiled)


def _required(names: tuple[str, ...], v: Any) -> bool:
    return type(v) is not dict or all(r in v for r in names)


def _additional(declared: frozenset[str], p: Predicate, v: Any) -> bool:
    return type(v) is not dict or all(p(val) for key, val in v.items() if key not in declared)


def _min_properties(n: int, v: Any) -> bool:
    return type(v) is not dict or len(v) >= n


def _max_properties(n: int, v: Any) -> bool:
    return type(v) is not dict or len(v) <= n


def _items(p: Predicate, v: Any) -> bool:
    return type(v) is not list or all(p(x) for x in v)


def _min_items(n: int, v: Any) -> bool:
    return type(v) is not list or len(v) >= n


def _max_items(n: int, v: Any) -> bool:
    return type(v) is not list or len(v) <= n


def _compile(schema: Any, top: bool = False) -> Predicate:
    """A predicate for `schema`, or _Unsupported."""
    if schema is True:
        return lambda v: True
    if schema is False:
        return lambda v: False
    if type(schema) is not dict:
        raise _Unsupported
    for key in schema:
        if key not in _SUPPORTED and key not in _ANNOTATIONS:
            raise _Unsupported
    if "$schema" in schema and (not top or schema["$schema"] not in _SAME_DRAFTS):
        raise _Unsupported
    checks: list[Predicate] = []
    if "type" in schema:
        kinds = schema["type"]
        names = [kinds] if type(kinds) is str else kinds
        if type(names) is not list or not names or any(type(n) is not str or n not in _TYPES for n in names):
            raise _Unsupported
        if len(set(names)) != len(names):
            raise _Unsupported
        tests = tuple(_TYPES[n] for n in names)
        checks.append(tests[0] if len(tests) == 1 else partial(_any_type, tests))
    if "enum" in schema:
        allowed = schema["enum"]
        if type(allowed) is not list:
            raise _Unsupported
        checks.append(partial(_in_enum, tuple(allowed)))
    if "const" in schema:
        const = schema["const"]
        checks.append(partial(_is_const, const))
    checks.extend(_number_checks(schema))
    checks.extend(_length_checks(schema))
    checks.extend(_object_checks(schema))
    checks.extend(_array_checks(schema))
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return partial(_all, tuple(checks))


def _bound(schema: Mapping[str, Any], key: str) -> Any:
    value = schema.get(key)
    if value is not None and not (_is_number(value) and type(value) is not bool):
        raise _Unsupported
    return value


def _number_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    low, high = _bound(schema, "minimum"), _bound(schema, "maximum")
    xlow, xhigh = _bound(schema, "exclusiveMinimum"), _bound(schema, "exclusiveMaximum")
    if low is not None:
        out.append(partial(_ge, low))
    if high is not None:
        out.append(partial(_le, high))
    if xlow is not None:
        out.append(partial(_gt, xlow))
    if xhigh is not None:
        out.append(partial(_lt, xhigh))
    return out


def _count(schema: Mapping[str, Any], key: str) -> int | None:
    value = schema.get(key)
    if value is None:
        return None
    if not _is_count(value):
        raise _Unsupported  # e.g. 2.0: jsonschema accepts it; not worth mirroring
    return int(value)


def _length_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    shortest, longest = _count(schema, "minLength"), _count(schema, "maxLength")
    if shortest is not None:
        out.append(partial(_min_length, shortest))
    if longest is not None:
        out.append(partial(_max_length, longest))
    return out


def _object_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    properties = schema.get("properties")
    if properties is not None:
        if type(properties) is not dict:
            raise _Unsupported
        compiled = tuple((name, _compile(sub)) for name, sub in properties.items())
        out.append(partial(_properties, compiled))
    required = schema.get("required")
    if required is not None:
        if type(required) is not list or any(type(r) is not str for r in required) or len(set(required)) != len(required):
            raise _Unsupported
        names = tuple(required)
        out.append(partial(_required, names))
    if "additionalProperties" in schema:
        extra = _compile(schema["additionalProperties"])
        declared = frozenset(properties or ())
        out.append(partial(_additional, declared, extra))
    fewest, most = _count(schema, "minProperties"), _count(schema, "maxProperties")
    if fewest is not None:
        out.append(partial(_min_properties, fewest))
    if most is not None:
        out.append(partial(_max_properties, most))
    return out


def _array_checks(schema: Mapping[str, Any]) -> list[Predicate]:
    out: list[Predicate] = []
    if "items" in schema:
        items = schema["items"]
        if type(items) is not dict and type(items) is not bool:
            raise _Unsupported  # the draft-07 tuple form
        each = _compile(items)
        out.append(partial(_items, each))
    fewest, most = _count(schema, "minItems"), _count(schema, "maxItems")
    if fewest is not None:
        out.append(partial(_min_items, fewest))
    if most is not None:
        out.append(partial(_max_items, most))
    return out


def fast_predicate(schema: Any) -> Predicate | None:
    """The compiled predicate, or None when the schema needs `jsonschema`."""
    try:
        return _compile(schema, top=True)
    except (_Unsupported, RecursionError):
        return None


class SchemaCheck:
    """The argument check of one input schema. Thread-safe; compiled on first use."""

    __slots__ = ("_compiled", "_fast", "_lock", "_problem", "_schema", "_validator")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._schema = schema
        self._compiled = False
        self._fast: Predicate | None = None
        self._validator: Any = None
        self._problem: str | None = None
        self._lock = threading.Lock()

    def _compile(self) -> None:
        with self._lock:
            if self._compiled:
                return
            self._fast = fast_predicate(self._schema)
            try:
                validator_class = jsonschema.validators.validator_for(self._schema, default=jsonschema.Draft202012Validator)
                validator_class.check_schema(dict(self._schema))
                self._validator = validator_class(dict(self._schema))
            except jsonschema.SchemaError as exc:
                self._problem = f"the tool's input schema is invalid: {exc.message}"
            except jsonschema.exceptions.UnknownType as exc:
                self._problem = f"the tool's input schema uses an unknown type: {exc.type}"
            except Exception as exc:  # the schema comes from the upstream: any failure denies
                self._problem = f"the tool's input schema cannot be used ({type(exc).__name__})"
            self._compiled = True

    def schema_problem(self) -> str | None:
        """Why the schema itself cannot be used to check arguments, or None."""
        if not self._compiled:
            self._compile()
        return self._problem

    def problem(self, value: Any) -> str | None:
        """Why `value` does not satisfy the schema, or None when it does."""
        if not self._compiled:
            self._compile()
        if self._problem is not None:
            return self._problem
        if self._fast is not None:
            try:
                if self._fast(value):
                    return None
            except RecursionError:
                return "the arguments are nested too deeply to check"
        found = validation_problem(self._validator, value)
        if found is None and self._fast is not None:
            return "the arguments do not satisfy the schema (fast check)"  # the two disagree: fail closed
        return found


def validation_problem(validator: Any, value: Any) -> str | None:
    """The first schema violation, or why the schema could not be applied (an unresolvable
    `$ref`, a number too large for `multipleOf`): either way the value is not shown valid."""
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Exception as exc:  # the schema comes from the upstream: any failure denies
        return f"the schema cannot be applied ({type(exc).__name__}: {str(exc)[:200]})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" at {where}" if where else "")


_cache: dict[bytes, SchemaCheck] = {}
_cache_lock = threading.Lock()


def schema_check(schema: Mapping[str, Any]) -> SchemaCheck:
    """The check for `schema`, memoised by its exact JSON text (which tells 1, 1.0 and true
    apart, as Python's == does not): every listing of an unchanged tool, in every session of
    this process, shares one compiled check."""
    key = jsonrpc.encode(schema)
    found = _cache.get(key)
    if found is None:
        found = SchemaCheck(schema)
        with _cache_lock:
            if len(_cache) >= _CACHE_LIMIT:
                _cache.clear()
            _cache[key] = found
    return found


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
