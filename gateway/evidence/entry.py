"""Flight-log entries (receipts) as values: build, hash, format. Pure, no I/O.

Every entry has every member, `null` where it does not apply, so that no field can be left
out of what is signed and a verifier never guesses a schema:

    v, kind, session, seq, ts, key_id, prev, server, tool, request_id, descriptor_hash,
    policy_hash, args_hash, result_hash, labels, decision, rule, reason, data, hash [, sig]

`hash` is SHA-256 over `signing_bytes(entry)` (the domain prefix and RFC 8785 form of every
other member), so editing any member, `decision` and `rule` included, breaks it. `prev` is the
previous entry's `hash`, which chains the log. Genesis, rotation and seal entries also carry
`sig`, an Ed25519 signature over the same bytes; every other entry is signed in a batch: a
later `checkpoint` entry holds a signature over the Merkle root (RFC 6962) of the batch's
hashes. A `rotation` entry carries a manifest signed by the old and the new key; entries
after it name and are signed by the new key.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from gateway.evidence import merkle
from gateway.evidence.canonical import BATCH_DOMAIN, canonical_json, signing_bytes

FORMAT_VERSION: Final = 1
GENESIS_PREV: Final = "0" * 64

Kind = Literal["genesis", "descriptor", "call", "result", "checkpoint", "seal", "rotation"]
KINDS: Final = frozenset({"genesis", "descriptor", "call", "result", "checkpoint", "seal", "rotation"})
#: Kinds that carry their own signature (`sig`), by the key named in their `key_id`.
SELF_SIGNED: Final = frozenset({"genesis", "seal", "rotation"})
Decision = Literal["allow", "deny", "shadow-deny"]
DECISIONS: Final = frozenset({"allow", "deny", "shadow-deny"})

#: Every member of an entry other than `hash` and `sig`, in storage order.
MEMBERS: Final = (
    "v", "kind", "session", "seq", "ts", "key_id", "prev", "server", "tool", "request_id",
    "descriptor_hash", "policy_hash", "args_hash", "result_hash", "labels", "decision", "rule",
    "reason", "data",
)  # fmt: skip

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


def build_entry(
    kind: Kind,
    *,
    session: str,
    seq: int,
    ts: str,
    key_id: str,
    prev: str,
    policy_hash: str | None,
    labels: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
    server: str | None = None,
    tool: str | None = None,
    request_id: int | str | Mapping[str, str] | None = None,
    descriptor_hash: str | None = None,
    args_hash: str | None = None,
    result_hash: str | None = None,
    decision: Decision | None = None,
    rule: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """An entry with every member present, not yet hashed.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown entry kind {kind!r}")
    return {
        "v": FORMAT_VERSION, "kind": kind, "session": session, "seq": seq, "ts": ts, "key_id": key_id, "prev": prev,
        "server": server, "tool": tool, "request_id": request_id, "descriptor_hash": descriptor_hash,
        "policy_hash": policy_hash, "args_hash": args_hash, "result_hash": result_hash,
        "labels": sorted(labels) if labels else [], "decision": decision, "rule": rule, "reason": reason,
        "data": dict(data) if data else {},
    }  # fmt: skip


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The `hash` member an entry must carry."""
    return sha256_hex(signing_bytes(entry))


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


def batch_signing_bytes(statement: Mapping[str, Any]) -> bytes:
    return BATCH_DOMAIN + canonical_json(dict(statement))


def descriptor_hash(descriptor: Any) -> str:
    """SHA-256 of the RFC 8785 form of a descriptor (a tool, prompt or resource as listed)."""
    return sha256_hex(canonical_json(descriptor))
