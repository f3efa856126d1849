"""gateway/errors.py: one error class per failure, fixed JSON-RPC codes, exit codes."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import defaultdict

import pytest

import gateway
from gateway import errors
from gateway.errors import (
    EXIT_INTERNAL,
    EXIT_UPSTREAM,
    EXIT_USAGE,
    INTERNAL_ERROR,
    SDK_RESERVED_CODES,
    ConfigError,
    GatewayError,
    PolicyDenied,
    UpstreamStartFailed,
    UpstreamUnavailable,
)

_STANDARD_CODES = {errors.PARSE_ERROR, errors.INVALID_REQUEST, errors.METHOD_NOT_FOUND, errors.INVALID_PARAMS, errors.INTERNAL_ERROR}


def _error_classes() -> list[type[GatewayError]]:
    """Every GatewayError subclass of the gateway: every module is imported, so a subclass
    defined beside the code that raises it is seen wherever it lives."""
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        if not module.name.endswith("__main__"):  # running it would run the command line
            importlib.import_module(module.name)
    found: list[type[GatewayError]] = [GatewayError]
    queue = list(GatewayError.__subclasses__())
    while queue:
        cls = queue.pop()
        if cls.__module__.startswith("gateway"):
            found.append(cls)
        queue.extend(cls.__subclasses__())
    return found


def _code_constants() -> dict[str, int]:
    return {name: value for name, value in vars(errors).items() if re.fullmatch(r"[A-Z_]+", name) and type(value) is int and value < 0}


def test_no_code_collides_with_an_sdk_reserved_code() -> None:
    used = {cls.code for cls in _error_classes()} | set(_code_constants().values())
    assert used.isdisjoint(SDK_RESERVED_CODES)


def test_sdk_reserved_codes_are_the_ones_the_conventions_list() -> None:
    assert frozenset({-32000, -32001, -32020, -32021, -32022, -32042}) == SDK_RESERVED_CODES


def test_every_code_is_a_standard_code_or_in_the_implementation_defined_range() -> None:
    for cls in _error_classes():
        assert cls.code in _STANDARD_CODES or -32099 <= cls.code <= -32000, cls.__name__


def test_client_visible_errors_have_distinct_codes() -> None:
    # A class that sets its own code is a client-visible failure and owns that code. The only
    # shared code is INTERNAL_ERROR, inherited from the root by errors that end the process
    # rather than answer a request.
    by_code: dict[int, list[str]] = defaultdict(list)
    for cls in _error_classes():
        by_code[cls.code].append(cls.__name__)
    shared = {code: names for code, names in by_code.items() if len(names) > 1}
    assert set(shared) <= {INTERNAL_ERROR}, shared
    own_codes = [cls.code for cls in _error_classes() if "code" in vars(cls) and cls is not GatewayError]
    assert len(own_codes) == len(set(own_codes))
    assert INTERNAL_ERROR not in own_codes


def test_errors_that_share_internal_error_are_process_failures_with_their_own_exit_code() -> None:
    sharing = [cls for cls in _error_classes() if cls.code == INTERNAL_ERROR and cls is not GatewayError]
    assert sharing, "expected the process-level errors to inherit INTERNAL_ERROR"
    for cls in sharing:
        assert cls.exit_code != EXIT_INTERNAL, cls.__name__


def test_documented_code_table_matches_the_classes() -> None:
    assert errors.__doc__ is not None
    table = dict(re.findall(r"^\| (-\d+) +\| (\w+) +\|", errors.__doc__, flags=re.MULTILINE))
    assert table, "the module docstring should hold the code table"
    classes = {cls.__name__: cls for cls in _error_classes()}
    for code, name in table.items():
        assert classes[name].code == int(code), name
    documented = set(table.values())
    undocumented = [
        cls.__name__ for cls in _error_classes() if "code" in vars(cls) and cls is not GatewayError and cls.__name__ not in documented
    ]
    assert undocumented == []


@pytest.mark.parametrize(
    ("cls", "exit_code"),
    [
        pytest.param(GatewayError, EXIT_INTERNAL, id="root-is-internal"),
        pytest.param(ConfigError, EXIT_USAGE, id="config-is-usage"),
        pytest.param(UpstreamStartFailed, EXIT_UPSTREAM, id="upstream-start"),
        pytest.param(UpstreamUnavailable, EXIT_UPSTREAM, id="upstream-unavailable"),
    ],
)
def test_process_failures_map_to_documented_exit_codes(cls: type[GatewayError], exit_code: int) -> None:
    assert cls.exit_code == exit_code


def _exit_constants() -> dict[str, int]:
    return {name: value for name, value in vars(errors).items() if name.startswith("EXIT_") and type(value) is int}


def test_every_exit_code_of_every_error_is_a_constant_of_the_one_table() -> None:
    table = set(_exit_constants().values())
    strays = {cls.__qualname__: cls.exit_code for cls in _error_classes() if cls.exit_code not in table}
    assert strays == {}


def test_every_exit_code_constant_is_distinct_and_documented() -> None:
    constants = _exit_constants()
    assert len(set(constants.values())) == len(constants), constants
    assert errors.__doc__ is not None
    documented = {int(code) for code in re.findall(r"^\| (\d+) +\|", errors.__doc__, flags=re.MULTILINE)}
    ranges = re.findall(r"^\| (\d+)-(\d+) *\|", errors.__doc__, flags=re.MULTILINE)
    documented |= {code for low, high in ranges for code in range(int(low), int(high) + 1)}
    assert set(constants.values()) <= documented


def test_exit_codes_are_distinct() -> None:
    codes = [errors.EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_UPSTREAM]
    assert len(set(codes)) == len(codes)
    assert errors.EXIT_OK == 0


def test_policy_denied_carries_rule_and_reason_in_data() -> None:
    error = PolicyDenied("cli.deny[delete_file]", "tool is on the deny list")
    assert error.code == errors.POLICY_DENIED == -32030
    assert error.rule == "cli.deny[delete_file]"
    assert error.reason == "tool is on the deny list"
    obj = error.to_error_object()
    assert obj["code"] == -32030
    assert obj["data"] == {"rule": "cli.deny[delete_file]", "reason": "tool is on the deny list"}
    assert "cli.deny[delete_file]" in obj["message"]


def test_error_object_omits_data_when_there_is_none() -> None:
    obj = UpstreamUnavailable("gone").to_error_object()
    assert obj == {"code": errors.UPSTREAM_UNAVAILABLE, "message": "gone"}


def test_error_object_includes_data_when_given() -> None:
    obj = errors.MessageTooLarge("big", data={"size": 5}).to_error_object()
    assert obj["code"] == errors.MESSAGE_TOO_LARGE
    assert obj["data"] == {"size": 5}


def test_every_error_is_a_gateway_error_and_an_exception() -> None:
    for cls in _error_classes():
        assert issubclass(cls, GatewayError)
        assert issubclass(cls, Exception)
