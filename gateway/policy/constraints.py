"""Compiled argument constraints: what a rule's `[rules.arguments]` entry checks in one argument
of a call. Pure; `engine` compiles them with the rules and asks each for its failure.

A deny rule's conditions and an allow rule's constraints are the same checks read two ways
(`condition`): a value whose meaning cannot be told satisfies a deny rule's condition and fails
an allow rule's constraint, so the gateway fails closed either way.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.policy.model import ArgumentConstraint
from gateway.policy.schemacheck import SchemaCheck
from gateway.protocol import jsonrpc


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values by type as well as value (1, 1.0 and true are not the same)."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value and value not in (float("inf"), float("-inf"))


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    spec: ArgumentConstraint
    pattern: Any
    validator: SchemaCheck | None

    def failure(self, arguments: Mapping[str, Any], condition: bool = False) -> str | None:
        """Why the argument does not satisfy the constraint, or None when it does. `condition`:
        the constraint is a deny rule's condition, so a value whose meaning cannot be told
        (see `_under`) satisfies it: fail closed either way."""
        spec, name = self.spec, self.name
        if name not in arguments:
            return None if spec.optional else f"argument {name!r} is required"
        value = arguments[name]
        # A deny rule's condition holds for a value of the wrong type (a number sent as a
        # string, a path inside a list): the upstream may read it as the value the rule is
        # about, and the gateway cannot tell, so it fails closed.
        composite = type(value) is list or type(value) is dict
        if spec.enum is not None and not any(_json_equal(value, allowed) for allowed in spec.enum) and not (condition and composite):
            return f"argument {name!r} must be one of {jsonrpc.encode(spec.enum).decode()}"
        if (spec.minimum is not None or spec.maximum is not None) and not (condition and not _number(value)):
            if not _number(value):
                return f"argument {name!r} must be a finite number"
            if spec.minimum is not None and value < spec.minimum:
                return f"argument {name!r} must be at least {spec.minimum}"
            if spec.maximum is not None and value > spec.maximum:
                return f"argument {name!r} must be at most {spec.maximum}"
        stringy = spec.prefix is not None or spec.path_prefix is not None or spec.pattern is not None or spec.max_length is not None
        if stringy and not (condition and type(value) is not str):
            if type(value) is not str:
                return f"argument {name!r} must be a string"
            if spec.max_length is not None and len(value) > spec.max_length:
                return f"argument {name!r} is longer than {spec.max_length} characters"
            if spec.prefix is not None and not value.startswith(spec.prefix):
                return f"argument {name!r} must start with {spec.prefix!r}"
            if spec.path_prefix is not None:
                under = _under(value, spec.path_prefix)
                if under is None and not condition:
                    return f"argument {name!r} must be an absolute path without '//' or NUL under {spec.path_prefix!r}"
                if under is False:
                    return f"argument {name!r} must be a path under {spec.path_prefix!r}"
            if self.pattern is not None:
                matched = _full_match(self.pattern, value)
                if matched is None and condition:
                    pass  # a string no pattern can read: the condition holds
                elif not matched:
                    return f"argument {name!r} must match the pattern {spec.pattern!r}"
        if self.validator is not None:
            problem = self.validator.problem(value)
            if problem is not None:
                return f"argument {name!r} does not satisfy the rule's schema: {problem}"
        return None


def _full_match(pattern: Any, value: str) -> bool | None:
    """Whether the whole string matches; None for a string RE2 cannot read (a lone
    surrogate): not text any pattern can vouch for."""
    try:
        return pattern.fullmatch(value) is not None
    except UnicodeEncodeError:
        return None


def _under(path: str, directory: str) -> bool | None:
    """Whether `path` names `directory` or something below it; None when that cannot be told
    from the text: a relative path (depends on the working directory), a NUL byte (C truncates
    there), a leading '//' (implementation-defined in POSIX, a network root on some systems).
    The caller resolves None against itself: an allow rule is not satisfied, a deny rule holds."""
    if "\x00" in path or not path.startswith("/") or path.startswith("//"):
        return None
    resolved = posixpath.normpath(path)
    base = "/" + posixpath.normpath(directory).lstrip("/")
    return resolved == base or resolved.startswith(base.rstrip("/") + "/")
