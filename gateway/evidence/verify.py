"""Offline verification of a flight log. Pure over lines; `verify_file` streams a file.

The verifier stops at the first failure and raises its typed error (`failures`, which lists
the exit codes; also in README, "Verify").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import GatewayError
from gateway.evidence.canonical import ENTRY_DOMAIN, CanonicalizationError, batch_signing_bytes, signing_bytes
from gateway.evidence.entry import (
    DECISIONS,
    FORMAT_VERSION,
    GENESIS_PREV,
    KINDS,
    MEMBERS,
    SELF_SIGNED,
    batch_statement,
    line_from_signed,
    sha256_hex,
)
from gateway.evidence.failures import (
    ChainBroken,
    CheckpointInvalid,
    EntriesAfterSeal,
    EntryHashMismatch,
    LogMalformed,
    LogUnsealed,
    SequenceBroken,
    SessionMismatch,
    SignatureInvalid,
    TornTail,
    VerificationError,
    WrongKey,
)
from gateway.evidence.rotation import verify_manifest
from gateway.evidence.signing import key_id, public_from_text, public_raw, verify_signature


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    session: str | None = None
    key_id: str | None = None
    public_key: str | None = None
    ephemeral: bool | None = None
    key_pinned: bool = False
    sealed: bool = False
    checkpoints: int = 0
    #: Entries covered by a verified signature (batch, genesis or seal).
    signed_entries: int = 0
    #: Trailing entries that are chained but not yet covered by a signature.
    unsigned_tail: int = 0
    torn_tail: bool = False
    #: Key rotations followed; `key_id` is then the last key.
    rotations: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    head: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


_TYPES: dict[str, tuple[type, ...]] = {
    "v": (int,),
    "kind": (str,),
    "session": (str,),
    "seq": (int,),
    "ts": (str,),
    "key_id": (str,),
    "prev": (str,),
    "labels": (list,),
    "data": (dict,),
    "hash": (str,),
}


class Verifier:
    """Feed entries in order; `finish` returns the report or raises."""

    def __init__(self, pinned: Ed25519PublicKey | None = None) -> None:
        self._pinned = pinned
        self._public: Ed25519PublicKey | None = None
        self.report = VerifyReport(key_pinned=pinned is not None)
        self._prev = GENESIS_PREV
        self._unsigned: list[str] = []
        self._unsigned_first = 0
        self._unsigned_kinds: list[str] = []
        self._sealed = False

    def _fail(self, error: type[VerificationError], message: str, line: int) -> VerificationError:
        return error(message, line=line, report=self.report)

    def feed(self, entry: Any, line: int, raw: bytes | None = None) -> None:
        """Check one entry. `raw` is the stored line without its newline: when given, it must be
        byte for byte the storage form the writer makes, so no byte of the file can change
        (whitespace, escapes, member order) without failing verification."""
        if self._sealed:
            raise self._fail(EntriesAfterSeal, "the log continues after its seal", line)
        self._check_shape(entry, line)
        seq = self.report.entries
        try:
            payload = signing_bytes(entry)
        except CanonicalizationError as exc:
            raise self._fail(LogMalformed, f"entry has no canonical form: {exc.message}", line) from None
        if entry["hash"] != sha256_hex(payload):
            raise self._fail(EntryHashMismatch, f"entry seq={entry['seq']!r} does not match its hash (a member was edited)", line)
        if raw is not None and raw + b"\n" != line_from_signed(payload, ENTRY_DOMAIN, entry["hash"], entry.get("sig")):
            raise self._fail(LogMalformed, "the line's bytes differ from the stored form of its entry (the file was modified)", line)
        if entry["seq"] != seq:
            raise self._fail(SequenceBroken, f"expected sequence number {seq}, found {entry['seq']}", line)
        if seq == 0:
            self._genesis(entry, line)
        elif entry["session"] != self.report.session:
            raise self._fail(SessionMismatch, f"entry belongs to session {entry['session']!r}, the log to {self.report.session!r}", line)
        elif entry["kind"] == "genesis":
            raise self._fail(ChainBroken, "a second genesis entry (logs spliced together)", line)
        if entry["prev"] != self._prev:
            raise self._fail(ChainBroken, f"entry seq={seq} does not link to the entry before it", line)
        if entry["kind"] == "rotation":
            self._rotation(entry, line)
        if entry["key_id"] != self.report.key_id:
            raise self._fail(WrongKey, f"entry names key {entry['key_id']!r}, the log's key is {self.report.key_id!r}", line)
        kind = entry["kind"]
        if kind == "checkpoint":
            self._checkpoint(entry, line)
        elif kind == "seal":
            self._seal(entry, line)
        self._prev = entry["hash"]
        if not self._unsigned:
            self._unsigned_first = seq
            self._unsigned_kinds = []
        self._unsigned.append(entry["hash"])
        self._unsigned_kinds.append(kind)
        if kind in SELF_SIGNED:
            # Self-signed: covers itself and, through the chain, everything before it.
            self.report.signed_entries = seq + 1
            self._unsigned = []
            self._unsigned_kinds = []
        self.report.entries = seq + 1
        self.report.head = entry["hash"]
        self.report.kinds[kind] = self.report.kinds.get(kind, 0) + 1
        if entry["decision"] is not None:
            self.report.decisions[entry["decision"]] = self.report.decisions.get(entry["decision"], 0) + 1

    def _check_shape(self, entry: Any, line: int) -> None:
        if type(entry) is not dict:
            raise self._fail(LogMalformed, "not a JSON object", line)
        missing = [name for name in (*MEMBERS, "hash") if name not in entry]
        extra = [name for name in entry if name not in MEMBERS and name not in ("hash", "sig")]
        if missing or extra:
            raise self._fail(LogMalformed, f"entry members wrong (missing {missing}, unknown {extra})", line)
        for name, types in _TYPES.items():
            if type(entry[name]) not in types:
                raise self._fail(LogMalformed, f"member {name!r} has the wrong type", line)
        if entry["v"] != FORMAT_VERSION:
            raise self._fail(LogMalformed, f"unsupported format version {entry['v']!r}", line)
        if entry["kind"] not in KINDS:
            raise self._fail(LogMalformed, f"unknown entry kind {entry['kind']!r}", line)
        if entry["decision"] is not None and entry["decision"] not in DECISIONS:
            raise self._fail(LogMalformed, f"unknown decision {entry['decision']!r}", line)
        if ("sig" in entry) != (entry["kind"] in SELF_SIGNED):
            raise self._fail(LogMalformed, "only genesis, rotation and seal entries carry their own signature", line)

    def _verify_own_signature(self, entry: dict[str, Any], line: int) -> None:
        assert self._public is not None
        try:
            verify_signature(self._public, entry["sig"], signing_bytes(entry))
        except SignatureInvalid:
            raise self._fail(SignatureInvalid, f"the {entry['kind']} signature does not verify", line) from None

    def _genesis(self, entry: dict[str, Any], line: int) -> None:
        if entry["kind"] != "genesis":
            raise self._fail(LogMalformed, "the first entry is not a genesis entry", line)
        data = entry["data"]
        try:
            public = public_from_text(str(data.get("public_key", "")))
        except GatewayError:
            raise self._fail(LogMalformed, "the genesis entry has no valid public key", line) from None
        if key_id(public) != entry["key_id"]:
            raise self._fail(WrongKey, "the genesis key id does not match its public key", line)
        if self._pinned is not None and public_raw(public) != public_raw(self._pinned):
            pinned = key_id(self._pinned)
            raise self._fail(WrongKey, f"the log is signed by key {entry['key_id']}, not by the pinned --public-key {pinned}", line)
        self._public = public
        self.report.session = entry["session"]
        self.report.key_id = entry["key_id"]
        self.report.public_key = data.get("public_key")
        self.report.ephemeral = bool(data.get("ephemeral"))
        self._verify_own_signature(entry, line)

    def _rotation(self, entry: dict[str, Any], line: int) -> None:
        """Follow a key rotation: the manifest must hand the current key to the entry's key."""
        assert self._public is not None
        # Everything before the hand-over must be signed by the old key. Only checkpoint
        # entries may be pending: their statements carry their own (old-key) signatures, and
        # the rotation entry's signature covers their place in the chain.
        if set(self._unsigned_kinds) - {"checkpoint"}:
            raise self._fail(CheckpointInvalid, "entries before a rotation were left unsigned by the old key", line)
        try:
            new = verify_manifest(entry["data"].get("manifest"), self._public)
        except SignatureInvalid as exc:
            raise self._fail(SignatureInvalid, f"key rotation manifest invalid: {exc.message}", line) from None
        if key_id(new) != entry["key_id"]:
            raise self._fail(WrongKey, "the rotation entry names another key than its manifest", line)
        self._public = new
        self.report.key_id = entry["key_id"]
        self.report.rotations += 1
        self._verify_own_signature(entry, line)

    def _checkpoint(self, entry: dict[str, Any], line: int) -> None:
        data = entry["data"]
        try:
            first, last, signature = int(data["first"]), int(data["last"]), str(data["sig"])
        except (KeyError, TypeError, ValueError):
            raise self._fail(LogMalformed, "checkpoint data lacks first/last/sig", line) from None
        unsigned_last = self._unsigned_first + len(self._unsigned) - 1
        if not self._unsigned or first != self._unsigned_first or not first <= last <= unsigned_last:
            why = f"checkpoint covers entries {first}..{last}, which are not the next unsigned ones"
            raise self._fail(CheckpointInvalid, why, line)
        covered = self._unsigned[: last - first + 1]
        statement = batch_statement(entry["session"], entry["key_id"], first, covered)
        claimed = {k: data.get(k) for k in statement}
        if claimed != statement:
            raise self._fail(CheckpointInvalid, "checkpoint root or head does not match the entries it covers", line)
        assert self._public is not None
        try:
            verify_signature(self._public, signature, batch_signing_bytes(statement))
        except SignatureInvalid:
            raise self._fail(SignatureInvalid, "the checkpoint signature does not verify", line) from None
        self._unsigned = self._unsigned[last - first + 1 :]
        self._unsigned_kinds = self._unsigned_kinds[last - first + 1 :]
        self._unsigned_first = last + 1
        self.report.checkpoints += 1
        self.report.signed_entries = max(self.report.signed_entries, last + 1)

    def _seal(self, entry: dict[str, Any], line: int) -> None:
        data = entry["data"]
        if data.get("count") != entry["seq"] + 1 or data.get("head") != entry["prev"]:
            raise self._fail(LogMalformed, "the seal's count or head does not match the log", line)
        self._verify_own_signature(entry, line)
        self._sealed = True
        self.report.sealed = True

    def finish(self, *, torn: bool = False, line: int = 0) -> VerifyReport:
        report = self.report
        if report.entries == 0:
            raise LogMalformed("the log has no entries", line=None, report=report)
        report.unsigned_tail = report.entries - report.signed_entries
        report.torn_tail = torn
        if not report.sealed:
            what = (
                f"{report.entries} entries intact, {report.signed_entries} covered by signatures, "
                f"{report.unsigned_tail} chained but unsigned"
            )
            if torn:
                why = f"the last line is incomplete (a crash mid-write, not tampering); {what}; not sealed"
                raise TornTail(why, line=line, report=report)
            raise LogUnsealed(f"the log is not sealed (no clean shutdown, or its end was cut off); {what}", report=report)
        return report


def _lines(stream: Iterable[bytes]) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, content, ended with a newline)."""
    for number, raw in enumerate(stream, start=1):
        yield number, raw.rstrip(b"\n"), raw.endswith(b"\n")


def verify_lines(stream: Iterable[bytes], pinned: Ed25519PublicKey | None = None) -> VerifyReport:
    """Verify a whole log given as raw lines (each with its newline, as a file yields them).

    Raises:
        VerificationError: the first failure found (see the module's table).
    """
    verifier = Verifier(pinned)
    pending: tuple[int, bytes, bool] | None = None
    for item in _lines(stream):
        if pending is not None:
            _feed(verifier, *pending, last=False)
        pending = item
    if pending is None:
        return verifier.finish()
    number, content, complete = pending
    if not complete:
        # The writer ends every entry with a newline in the same write: a last line without
        # one was cut short. Whatever it holds, it is not a verified entry.
        return verifier.finish(torn=True, line=number)
    _feed(verifier, number, content, complete, last=True)
    return verifier.finish()


def _feed(verifier: Verifier, number: int, content: bytes, complete: bool, *, last: bool) -> None:
    try:
        entry = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise LogMalformed(f"not JSON: {exc}", line=number, report=verifier.report) from None
    verifier.feed(entry, number, content)


def verify_file(path: Path, pinned: Ed25519PublicKey | None = None) -> VerifyReport:
    """Raises:
    VerificationError: as `verify_lines`; LogMalformed if the file cannot be read.
    """
    try:
        with open(path, "rb") as stream:
            return verify_lines(stream, pinned)
    except OSError as exc:
        raise LogMalformed(f"cannot read {path}: {exc.strerror}") from None


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
