"""Redaction of recorded messages (see `cassette` for the format): values at dotted paths
replaced by stable placeholders, and every redacted string replaced wherever it shows up
later. Pure, but `Redactor` is stateful per cassette.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any, Final

import orjson

from gateway.errors import ConfigError

_MIN_SPREAD: Final = 6  # shortest redacted string also replaced inside other strings


def sorted_json(value: Any) -> bytes:
    """Sorted keys, compact, UTF-8. Integers beyond 64 bits and lone surrogates take the
    standard library (as `jsonrpc.encode` does)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False).encode()


def placeholder(value: Any) -> str:
    """The stable stand-in for a redacted value: equal values give equal placeholders."""
    return "<redacted:" + hashlib.sha256(sorted_json(value)).hexdigest()[:12] + ">"


class Redactor:
    """Replaces the values at `paths` (dotted, `*` for any member or element) in messages, and
    every string value it has redacted so far (6 characters or more) wherever it occurs later
    inside any string: an argument the server echoes in its result, a token mirrored into the
    `content` text. Stateful: use one per cassette, in message order."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.paths = tuple(paths)
        self._split = tuple(tuple(p.split(".")) for p in self.paths)
        for path, parts in zip(self.paths, self._split, strict=True):
            if not path or any(not part for part in parts):
                raise ConfigError(f"redact path {path!r}: write dotted member names, e.g. params.arguments.password")
        self._secrets: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.paths)

    def apply(self, message: Any) -> Any:
        """The message with every redacted value replaced (a new value; `message` is not changed)."""
        hidden: dict[str, str] = {}
        for parts in self._split:
            message = _redact_at(message, parts, hidden)
        fresh = {secret: stand_in for secret, stand_in in hidden.items() if len(secret) >= _MIN_SPREAD and secret not in self._secrets}
        if fresh:
            self._secrets.update(fresh)
            # Longest first: a secret that contains another is replaced whole.
            self._pattern = re.compile("|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True)))
        return self.apply_text(message) if self._pattern is not None else message

    def apply_text(self, value: Any) -> Any:
        """`value` with every secret seen so far replaced inside its strings (keys included)."""
        pattern = self._pattern
        if pattern is None:
            return value
        secrets = self._secrets

        def walk(node: Any) -> Any:
            if type(node) is str:
                return pattern.sub(lambda m: secrets[m.group(0)], node) if pattern.search(node) else node
            if type(node) is dict:
                return {walk(k): walk(v) for k, v in node.items()}
            if type(node) is list:
                return [walk(v) for v in node]
            return node

        return walk(value)


def _redact_at(value: Any, parts: Sequence[str], hidden: dict[str, str]) -> Any:
    if not parts:
        if type(value) is str and value.startswith("<redacted:"):
            return value
        stand_in = placeholder(value)
        if type(value) is str:
            hidden[value] = stand_in
        return stand_in
    head, rest = parts[0], parts[1:]
    if type(value) is dict:
        if head == "*":
            return {k: _redact_at(v, rest, hidden) for k, v in value.items()}
        if head in value:
            return {**value, head: _redact_at(value[head], rest, hidden)}
        return value
    if type(value) is list:
        if head == "*":
            return [_redact_at(v, rest, hidden) for v in value]
        if head.isdigit() and int(head) < len(value):
            index = int(head)
            return [*value[:index], _redact_at(value[index], rest, hidden), *value[index + 1 :]]
    return value
