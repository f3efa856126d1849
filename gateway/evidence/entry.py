"""Flight-log entries (receipts) as values: the typed `Entry`, hashing helpers, the line format
and batch statements. Pure, no I/O.

`Entry` is the schema, written once: every serialisation derives from its fields (`MEMBERS`,
`canonical.EntryTemplate`, the canonical fast path's known keys). Every entry has every member,
`null` where it does not apply, so that no field can be left out of what is signed and a
verifier never guesses a schema:

    v, kind, session, seq, ts, key_id, prev, server, tool, request_id, descriptor_hash,
    policy_hash, args_hash, result_hash, labels, decision, rule, reason, data, hash [, sig]

`hash` is SHA-256 over `canonical.signing_bytes(entry)` (the domain prefix and RFC 8785 form of
every other member), so editing any member, `decision` and `rule` included, breaks it. `prev` is
the previous entry's `hash`, which chains the log. Genesis, rotation and seal entries also carry
`sig`, an Ed25519 signature over the same bytes; every other entry is signed in a batch: a
later `checkpoint` entry holds a signature over the Merkle root (RFC 6962) of the batch's
hashes. A `rotation` entry carries a manifest signed by the old and the new key; entries
after it name and are signed by the new key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from gateway.evidence import merkle

FORMAT_VERSION: Final = 1
GENESIS_PREV: Final = "0" * 64

Kind = Literal["genesis", "descriptor", "call", "result", "checkpoint", "seal", "rotation"]
KINDS: Final = frozenset({"genesis", "descriptor", "call", "result", "checkpoint", "seal", "rotation"})
#: Kinds that carry their own signature (`sig`), by the key named in their `key_id`.
SELF_SIGNED: Final = frozenset({"genesis", "seal", "rotation"})
Decision = Literal["allow", "deny", "shadow-deny"]
DECISIONS: Final = frozenset({"allow", "deny", "shadow-deny"})
#: A request id as logged: JSON-RPC's, or `{"big_int": "<decimal>"}` beyond 2**53.
RequestId = int | str | Mapping[str, str] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One flight-log entry: every member but `hash` and `sig`, in storage order. Built by
    keyword; `to_json` is the object `signing_bytes` and the line format take.

    Raises:
        ValueError: an unknown kind.
    """

    v: int = FORMAT_VERSION
    kind: Kind
    session: str
    seq: int
    ts: str
    key_id: str
    prev: str
    server: str | None = None
    tool: str | None = None
    request_id: RequestId = None
    descriptor_hash: str | None = None
    policy_hash: str | None
    args_hash: str | None = None
    result_hash: str | None = None
    labels: Sequence[str] = ()
    decision: Decision | None = None
    rule: str | None = None
    reason: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown entry kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object, members in storage order, `labels` sorted."""
        return entry_json(**{name: getattr(self, name) for name in MEMBERS})


#: Every member of an entry other than `hash` and `sig`, in storage order.
MEMBERS: Final = tuple(member.name for member in fields(Entry))
_REQUIRED: Final = frozenset(m.name for m in fields(Entry) if m.default is MISSING and m.default_factory is MISSING)
#: Each optional member's default, in storage order (`data` and `labels` are set per entry).
_DEFAULTS: Final = {m.name: None if m.default is MISSING else m.default for m in fields(Entry)}


def entry_json(**members: Any) -> dict[str, Any]:
    """`Entry(**members).to_json()` without building the `Entry` (several times cheaper: the
    flight log writes its genesis, descriptor, rotation and seal entries through this).

    Raises:
        TypeError: a member `Entry` does not have, or one it requires is missing.
        ValueError: an unknown kind.
    """
    if not members.keys() <= _DEFAULTS.keys() or not members.keys() >= _REQUIRED:
        unknown, missing = sorted(members.keys() - _DEFAULTS.keys()), sorted(_REQUIRED - members.keys())
        raise TypeError(f"an entry has no member(s) {unknown} and needs {missing}")
    if members["kind"] not in KINDS:
        raise ValueError(f"unknown entry kind {members['kind']!r}")
    out = {**_DEFAULTS, **members}
    out["labels"] = sorted(out["labels"] or ())
    out["data"] = dict(out["data"] or {})
    return out


def escaped(value: Any) -> Any:
    """`value` with every string (keys included) that is not valid Unicode, one holding a lone
    surrogate, written with each surrogate as the six characters `\\uXXXX`: a value with no
    canonical JSON form, as an entry can still record it. Other values come back as they are.
    """
    if type(value) is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        return value
    if type(value) is dict:
        return {escaped(k): escaped(v) for k, v in value.items()}
    if type(value) is list:
        return [escaped(v) for v in value]
    return value


def escaped_members(members: Mapping[str, Any]) -> dict[str, Any]:
    """An entry's members (not the template's fixed ones), every string of them `escaped`, and
    `data.unicode_escaped` set so a reader knows the text is not as it came: the gateway refuses
    such a message, and the refusal still gets its entry."""
    out = {name: escaped(value) for name, value in members.items() if name in _DEFAULTS}
    out["data"] = {**(out.get("data") or {}), "unicode_escaped": True}
    return out


Clock = Callable[[], datetime]
#: What the flight log asks for the time: an RFC 3339 timestamp string.
TimestampSource = Callable[[], str]


def utc_now() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    """RFC 3339, UTC, microseconds: a string, so no float ever enters an entry."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: The second `now_timestamp` last formatted, and its text up to the fraction's dot.
_last_second: tuple[int, str] = (-1, "")


def now_timestamp() -> str:
    """`timestamp(utc_now())` (truncated to the microsecond), several times cheaper: this runs
    for every entry, and only the microseconds change within a second."""
    global _last_second
    nanos = time.time_ns()
    second = nanos // 1_000_000_000
    cached, prefix = _last_second
    if second != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _last_second = (second, prefix)
    return "%s%06dZ" % (prefix, nanos % 1_000_000_000 // 1000)  # noqa: UP031 (cheaper than an f-string with a format spec)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def to_line(entry: Mapping[str, Any]) -> bytes:
    """Storage form of a complete entry: one compact JSON object and a newline (not what is
    signed; the verifier always re-derives the signed bytes)."""
    return orjson.dumps(entry) + b"\n"


def line_from_signed(payload: bytes, domain: bytes, digest: str, signature: str | None) -> bytes:
    """Storage form built from an entry's signing bytes: its canonical JSON with `hash` (and
    `sig`) appended. Equal in content to `to_line`, without serialising the entry again."""
    tail = f',"hash":"{digest}"' + (f',"sig":"{signature}"' if signature is not None else "") + "}\n"
    return payload[len(domain) : -1] + tail.encode()


def batch_statement(session: str, key_id: str, first: int, hashes: Sequence[str]) -> dict[str, Any]:
    """What a checkpoint signs: the session, key, seq range and Merkle root of the batch."""
    leaves = [bytes.fromhex(h) for h in hashes]
    return {
        "session": session,
        "key_id": key_id,
        "first": first,
        "last": first + len(hashes) - 1,
        "root": merkle.root(leaves).hex(),
        "head": hashes[-1],
    }
