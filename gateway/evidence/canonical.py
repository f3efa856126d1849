"""Canonical JSON (RFC 8785, JCS) and the one function that makes signed bytes.

`signing_bytes` is the one producer of bytes that are hashed or signed anywhere in the gateway
(`batch_signing_bytes` and `entry_hash` are it with a domain, and its digest). Storage
formatting (`gateway.evidence.entry.to_line`) is a different function, and nothing ever
verifies the stored line's bytes directly: the verifier re-derives the signing bytes.

Fast path: orjson with sorted keys is byte-equal to RFC 8785 when every key is ASCII (JCS sorts
by UTF-16 code units, orjson by code points: they agree on ASCII), every number is an integer
within +/-(2**53 - 1), and there are no floats (JCS writes 1.0 as `1`, orjson as `1.0`).
Anything else takes `rfc8785`, the reference implementation; `tests/unit/evidence/test_canonical.py`
checks the equality property with `rfc8785` as the oracle.

`EntryTemplate` is an optimisation of `signing_bytes` for the flight log's hot path, not a
second producer: for one log's `call`, `result` and `checkpoint` entries it gives the bytes
`signing_bytes` gives for the whole entry, with the members that never change within a log
serialised once, or gives up (None) and leaves the entry to `signing_bytes`. Its members are
the fields of `gateway.evidence.entry.Entry`; the same test checks it against `rfc8785`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Final

import orjson
import rfc8785

from gateway.errors import EXIT_LOG_MALFORMED, GatewayError
from gateway.evidence.entry import Entry, escaped_members

#: Prefixes that separate what is signed for different purposes (domain separation): an entry's
#: signature can never be replayed as a batch statement or a rotation manifest, or vice versa.
ENTRY_DOMAIN: Final = b"mcp-airlock/v1/entry\x00"
BATCH_DOMAIN: Final = b"mcp-airlock/v1/batch\x00"
ROTATION_DOMAIN: Final = b"mcp-airlock/v1/rotation\x00"

#: Members of a stored entry that are not part of what is signed.
UNSIGNED_MEMBERS: Final = frozenset({"hash", "sig"})

_SAFE_INT: Final = 2**53 - 1
_MAX_DEPTH: Final = 64


class CanonicalizationError(GatewayError):
    """A value has no RFC 8785 form (NaN, infinity, an integer beyond 2**53, a lone surrogate,
    a non-string key) or is nested too deeply."""

    exit_code = EXIT_LOG_MALFORMED  # the data, not the gateway, is at fault


_SCALARS: Final = frozenset({str, bool, type(None)})
#: Member names known to be ASCII (flight-log entries and their data): dicts whose keys all
#: come from here skip the per-key check, which is most of this function's cost otherwise.
_KNOWN_ASCII_KEYS: Final = frozenset(
    {member.name for member in fields(Entry)}
    | UNSIGNED_MEMBERS
    | {
        # entries' data: calls, results, descriptor listings, checkpoints
        "call",
        "is_error",
        "arguments",
        "response",
        "tools",
        "name",
        "next_cursor",
        "first",
        "last",
        "root",
        "head",
        "count",
        "big_int",
        # MCP descriptors and JSON Schema (descriptor hashes take this path for every listed item)
        "title",
        "description",
        "inputSchema",
        "outputSchema",
        "annotations",
        "_meta",
        "icons",
        "type",
        "properties",
        "required",
        "additionalProperties",
        "enum",
        "default",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "format",
        "pattern",
        "$schema",
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "const",
        "examples",
        "readOnlyHint",
        "destructiveHint",
        "idempotentHint",
        "openWorldHint",
        "uri",
        "uriTemplate",
        "mimeType",
        "size",
        "execution",
        "taskSupport",
    }
)


def _fast_ok(value: Any, depth: int = 0) -> bool:
    """True when orjson's sorted output is RFC 8785 for `value` (see the module docstring).
    Scalars are checked inline: this runs for every flight-log entry."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if depth > _MAX_DEPTH:
        return False
    if kind is dict:
        if not value.keys() <= _KNOWN_ASCII_KEYS and not all(type(key) is str and key.isascii() for key in value):
            return False
        members = value.values()
    elif kind is list:
        members = value
    else:
        return False
    for member in members:
        member_kind = type(member)
        if member_kind in _SCALARS:
            continue
        if member_kind is int:
            if not -_SAFE_INT <= member <= _SAFE_INT:
                return False
        elif (member_kind is dict or member_kind is list) and not member:
            continue
        elif not _fast_ok(member, depth + 1):
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 canonical JSON of `value`.

    Raises:
        CanonicalizationError: the value has no canonical form.
    """
    if _fast_ok(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # lone surrogates: let the reference implementation say what is wrong
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise CanonicalizationError(f"value has no canonical JSON form: {exc}") from None


class EntryTemplate:
    """`signing_bytes` of the entries one flight log writes most (`record`: `call`, `result`,
    `checkpoint`), without serialising what never changes within the log: `v`, `key_id`,
    `session`, `policy_hash` and `labels` (empty) are `fixed`, in canonical form once. The
    caller gives the rest, `members`: every other field of `Entry`, by name.

    `entry_signing_bytes(members)` makes the same promise as `signing_bytes(entry(members),
    inspect=("request_id", "data"))`, and asks the same of its caller: every member but
    `request_id` and `data` is a string, None, a boolean or an integer within +/-(2**53 - 1)
    (orjson writes those as RFC 8785 does; a string with a lone surrogate makes orjson refuse).
    `request_id` and `data` are checked as there. Members are written in RFC 8785 order, which
    for these ASCII names is orjson's sorted order.
    """

    __slots__ = ("_fragments", "_kinds", "fixed", "members")

    def __init__(self, *, session: str, key_id: str, policy_hash: str | None, version: int, kinds: Iterable[str]) -> None:
        """Raises:
        CanonicalizationError: a fixed member has no canonical form.
        """
        fixed = {"v": version, "key_id": key_id, "session": session, "policy_hash": policy_hash, "labels": []}
        self.fixed: Final[Mapping[str, Any]] = fixed
        #: What the caller gives: every other member of an entry.
        self.members: Final = tuple(member.name for member in fields(Entry) if member.name not in fixed)
        self._fragments = {name: orjson.Fragment(canonical_json(value)) for name, value in fixed.items()}
        self._kinds = frozenset(kinds)

    def entry(self, members: Mapping[str, Any]) -> dict[str, Any]:
        """The whole entry with these `members` and the template's: what `signing_bytes` takes."""
        return {**members, **self.fixed}

    def entry_signing_bytes(self, members: dict[str, Any]) -> bytes | None:
        """The signing bytes (entry domain) of `entry(members)`, or None when its kind is not
        the template's or `request_id` or `data` (or a lone surrogate anywhere) is outside the
        fast path: the caller then takes `signing_bytes(entry(members))`, which gives the same
        bytes or says what has no canonical form. `members` is the caller's to hand over: the
        template adds its fixed members to it, serialised (`entry` overrides them again)."""
        request_id = members["request_id"]
        id_type = type(request_id)
        if not (id_type is str or request_id is None or (id_type is int and -_SAFE_INT <= request_id <= _SAFE_INT)):
            return None
        data = members["data"]
        if type(data) is not dict or (data and not _fast_ok(data)) or members["kind"] not in self._kinds:
            return None
        members.update(self._fragments)  # no copy: this runs for every call and result
        try:
            return ENTRY_DOMAIN + orjson.dumps(members, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            return None  # a lone surrogate: `signing_bytes` says so


def recorded_signing_bytes(entry: Mapping[str, Any], *, inspect: tuple[str, ...] | None = None) -> tuple[bytes, dict[str, Any]]:
    """`signing_bytes` of `entry` and the entry as it is recorded: itself, or, when it has no
    canonical form (text that is not valid Unicode), its `escaped_members` form, so that what the
    gateway decided is always recorded."""
    try:
        return signing_bytes(entry, inspect=inspect), dict(entry)
    except CanonicalizationError:
        escaped = escaped_members(entry)
        return signing_bytes(escaped, inspect=inspect), escaped


def signing_bytes(entry: Mapping[str, Any], domain: bytes = ENTRY_DOMAIN, *, inspect: tuple[str, ...] | None = None) -> bytes:
    """The bytes that are hashed and signed for `entry`: the domain prefix, then the RFC 8785
    form of the entry without its `hash` and `sig` members.

    `inspect` is for the flight log's hot path: the caller vouches that `entry` is a dict whose
    keys are all in the known ASCII member set and whose members, except those named in
    `inspect`, are strings, None, booleans or integers within +/-(2**53 - 1). Only the named
    members are then checked for the fast path, which saves most of its cost; the bytes are the
    same (`tests/unit/evidence/test_canonical.py` checks them against `rfc8785`)."""
    if inspect is not None and type(entry) is dict and "hash" not in entry and "sig" not in entry:
        for name in inspect:
            member = entry[name]
            kind = type(member)
            if kind is int:
                if not -_SAFE_INT <= member <= _SAFE_INT:
                    break
            elif kind not in _SCALARS and not _fast_ok(member):
                break
        else:
            try:
                return domain + orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
            except orjson.JSONEncodeError:
                pass  # a lone surrogate somewhere: the general path says what is wrong
    if "hash" in entry or "sig" in entry:
        entry = {k: v for k, v in entry.items() if k not in UNSIGNED_MEMBERS}
    return domain + canonical_json(entry)


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The `hash` member an entry must carry: SHA-256 (hex) of its signing bytes."""
    return hashlib.sha256(signing_bytes(entry)).hexdigest()


def batch_signing_bytes(statement: Mapping[str, Any]) -> bytes:
    """What a checkpoint's signature covers: the batch domain and the statement's RFC 8785 form."""
    return BATCH_DOMAIN + canonical_json(dict(statement))
