"""What a server shows the model, hashed completely and canonically, and compared field by field.
Pure.

A descriptor is every field of a listed tool, prompt or resource exactly as the server sent it
(name, title, description, input and output schemas, annotations, `_meta`, and any field this
version does not know): its hash is SHA-256 over its RFC 8785 form, so any change the model
could see changes the hash. The server's `instructions` (from `initialize`) are a descriptor too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, NewType

from gateway.evidence.canonical import CanonicalizationError, canonical_json
from gateway.protocol import jsonrpc

Sha256Hex = NewType("Sha256Hex", str)
#: The member that names an item in each list a server publishes (`methods.LIST_METHODS`).
KEY_OF: Final[dict[str, str]] = {"tools": "name", "prompts": "name", "resources": "uri", "resourceTemplates": "uriTemplate"}


def descriptor_hash(descriptor: Any) -> Sha256Hex:
    """SHA-256 (hex) of the RFC 8785 form of a descriptor. A value with no RFC 8785 form (an
    integer beyond 2**53 in a schema) is hashed as its exact JSON bytes, prefixed `raw:`."""
    try:
        return Sha256Hex(hashlib.sha256(canonical_json(descriptor)).hexdigest())
    except CanonicalizationError:
        return Sha256Hex("raw:" + hashlib.sha256(jsonrpc.encode(descriptor)).hexdigest())


def item_key(kind: str, item: Any) -> str | None:
    """The name (or URI) that identifies a listed item, or None when it has none."""
    if type(item) is not dict:
        return None
    key = item.get(KEY_OF.get(kind, "name"))
    return key if type(key) is str else None


@dataclass(frozen=True, slots=True)
class FieldChange:
    path: str
    old: Any
    new: Any

    def describe(self) -> str:
        if self.old is _MISSING:
            return f"{self.path}: added {_short(self.new)}"
        if self.new is _MISSING:
            return f"{self.path}: removed (was {_short(self.old)})"
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)}"


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


def _short(value: Any, limit: int = 120) -> str:
    text = jsonrpc.encode(value).decode("utf-8", "replace")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff(old: Any, new: Any, path: str = "") -> Iterator[FieldChange]:
    """Every field that differs between two descriptors, as JSON paths, deepest first found."""
    if type(old) is dict and type(new) is dict:
        for key in sorted(set(old) | set(new)):
            child = f"{path}.{key}" if path else key
            yield from diff(old.get(key, _MISSING), new.get(key, _MISSING), child)
    elif type(old) is list and type(new) is list and len(old) == len(new):
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            yield from diff(a, b, f"{path}[{index}]")
    elif old is _MISSING or new is _MISSING or type(old) is not type(new) or old != new:
        yield FieldChange(path or "(whole)", old, new)
