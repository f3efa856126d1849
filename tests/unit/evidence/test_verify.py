"""gateway/evidence/verify.py: a sealed log verifies; every kind of tampering fails with its own typed error.

Logs are written by the real writer (`FlightLog`, inline signing) with a fixed key, session and
clock, so every byte is reproducible. The attacker in the tamper table can edit, drop, reorder
and re-hash entries (`rehash`, `relink`) but holds no signing key, except where a row says so.
"""

from __future__ import annotations

import base64
import io
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway import cli
from gateway.evidence.canonical import batch_signing_bytes, entry_hash, signing_bytes
from gateway.evidence.entry import GENESIS_PREV, MEMBERS, Kind, batch_statement, timestamp, to_line
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
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import key_id, public_text, sign
from gateway.evidence.verify import Verifier, VerifyReport, verify_file, verify_lines

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
SESSION = "5e55" * 8
OTHER_SESSION = "0dd5" * 8
POLICY_HASH = "ab" * 32
START = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

#: The exit codes documented in the table at the top of gateway/evidence/verify.py.
EXIT_CODES: dict[type[VerificationError], int] = {
    LogMalformed: 10,
    EntryHashMismatch: 11,
    ChainBroken: 12,
    SequenceBroken: 13,
    SignatureInvalid: 14,
    WrongKey: 15,
    SessionMismatch: 16,
    EntriesAfterSeal: 17,
    CheckpointInvalid: 18,
    LogUnsealed: 20,
    TornTail: 21,
}

Entry = dict[str, Any]

#: What the writer is asked to append, in order (genesis, checkpoints and seal come from it).
SCRIPT: tuple[tuple[Kind, dict[str, Any]], ...] = (
    ("descriptor", {"server": "files", "tool": "read_file", "descriptor_hash": "d1" * 32}),
    ("descriptor", {"server": "files", "tool": "delete_file", "descriptor_hash": "d2" * 32}),
    ("call", {"server": "files", "tool": "read_file", "request_id": "1", "descriptor_hash": "d1" * 32,
              "args_hash": "a1" * 32, "decision": "allow", "rule": "allow-read", "reason": "read-only tool"}),
    ("result", {"server": "files", "tool": "read_file", "request_id": "1", "result_hash": "e1" * 32}),
    ("call", {"server": "files", "tool": "delete_file", "request_id": "2", "descriptor_hash": "d2" * 32,
              "args_hash": "a2" * 32, "decision": "deny", "rule": "deny-destructive", "reason": "destructive tool",
              "labels": ["fs", "destructive"]}),
    ("call", {"server": "files", "tool": "read_file", "request_id": "3", "descriptor_hash": "d1" * 32,
              "args_hash": "a3" * 32, "decision": "allow", "rule": "allow-read", "reason": "read-only tool"}),
    ("result", {"server": "files", "tool": "read_file", "request_id": "3", "result_hash": "e3" * 32}),
    ("call", {"server": "files", "tool": "delete_file", "request_id": "4", "descriptor_hash": "d2" * 32,
              "args_hash": "a4" * 32, "decision": "deny", "rule": "deny-destructive", "reason": "destructive tool"}),
)  # fmt: skip

#: The sealed log the script makes with group_entries=3 (line number = index + 1).
LAYOUT = (
    "genesis", "descriptor", "descriptor", "call", "checkpoint", "result", "call", "call",
    "checkpoint", "result", "call", "checkpoint", "seal",
)  # fmt: skip
FIRST_CHECKPOINT, DENIED_CALL, NEXT_CALL, MIDDLE_CHECKPOINT, LAST_CHECKPOINT, SEAL = 4, 6, 7, 8, 11, 12
SPLICE_AT = 6


def clock_from(start: datetime) -> Callable[[], str]:
    """Successive moments a millisecond apart, as the RFC 3339 strings the writer asks for."""
    ticks = itertools.count()
    return lambda: timestamp(start + timedelta(milliseconds=next(ticks)))


def write_log(
    path: Path,
    *,
    key: Ed25519PrivateKey = KEY,
    session: str = SESSION,
    script: tuple[tuple[Kind, dict[str, Any]], ...] = SCRIPT,
    seal: bool = True,
) -> Path:
    log_settings = LogSettings(path, fsync="off", group_entries=3)
    flight = FlightLog.open(log_settings, key, policy_hash=POLICY_HASH, session=session, clock=clock_from(START), inline_signing=True)
    flight.start("0.0.0-test", ephemeral=False)
    for kind, fields in script:
        flight.append(kind, **fields)
    if seal:
        flight.close()
    else:
        flight.abandon()
    return path


@dataclass(frozen=True, repr=False)
class Logs:
    sealed: bytes  # KEY, SESSION
    other_session: bytes  # KEY, OTHER_SESSION, same script
    other_key: bytes  # OTHER_KEY, SESSION, same script: a log fully re-signed by another key
    path: Path  # where `sealed` is on disk

    def __repr__(self) -> str:  # keeps Hypothesis reports readable
        return f"Logs({self.path})"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    folder = tmp_path_factory.mktemp("flightlogs")
    sealed = write_log(folder / "sealed.jsonl")
    other_session = write_log(folder / "other-session.jsonl", session=OTHER_SESSION)
    other_key = write_log(folder / "other-key.jsonl", key=OTHER_KEY)
    return Logs(sealed.read_bytes(), other_session.read_bytes(), other_key.read_bytes(), sealed)


# -- helpers: parse, edit, re-serialise, and what an attacker without the key can recompute ---


def parse(data: bytes) -> list[Entry]:
    return [orjson.loads(line) for line in data.splitlines()]


def serialise(entries: list[Entry]) -> bytes:
    return b"".join(to_line(entry) for entry in entries)


def rehash(entry: Entry) -> Entry:
    """Recompute `hash` for the entry's (edited) content: anyone can do this."""
    entry["hash"] = entry_hash(entry)
    return entry


def relink(entries: list[Entry], start: int, *, checkpoints: bool = False) -> None:
    """Re-chain from `start` on: renumber, point `prev` at the entry before, fix the seal's
    count and head, optionally recompute checkpoint statements (keeping their old signatures),
    and re-hash. Signatures cannot be redone without the key, so they are left as they were."""
    for index in range(start, len(entries)):
        entry = entries[index]
        entry["seq"] = index
        entry["prev"] = entries[index - 1]["hash"] if index else GENESIS_PREV
        if entry["kind"] == "seal":
            entry["data"] = {**entry["data"], "count": index + 1, "head": entry["prev"]}
        if checkpoints and entry["kind"] == "checkpoint":
            data = entry["data"]
            covered = [e["hash"] for e in entries[data["first"] : data["last"] + 1]]
            data.update(batch_statement(entry["session"], entry["key_id"], data["first"], covered))
        rehash(entry)


def resign_checkpoint(entry: Entry, key: Ed25519PrivateKey) -> None:
    data = entry["data"]
    statement = {name: data[name] for name in ("session", "key_id", "first", "last", "root", "head")}
    data["sig"] = sign(key, batch_signing_bytes(statement))
    rehash(entry)


_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def malleate(signature: str) -> str:
    """Another text for the same signature bytes: flip an unused low bit of the last digit."""
    body = signature.rstrip("=")
    return body[:-1] + _B64[_B64.index(body[-1]) ^ 1] + signature[len(body) :]


def verify_bytes(data: bytes, pinned: Ed25519PublicKey | None = None) -> VerifyReport:
    return verify_lines(io.BytesIO(data), pinned)  # split at b"\n" only, as a file is


def failure(data: bytes, pinned: Ed25519PublicKey | None = None) -> VerificationError:
    with pytest.raises(VerificationError) as caught:
        verify_bytes(data, pinned)
    return caught.value


def assert_fails_with(data: bytes, expected: type[VerificationError], pinned: Ed25519PublicKey | None = None) -> VerificationError:
    error = failure(data, pinned)
    assert type(error) is expected, f"expected {expected.__name__}, got {type(error).__name__}: {error.message}"
    assert error.exit_code == EXIT_CODES[expected]
    return error


Tamper = Callable[[Logs], bytes]


def entries_edit(change: Callable[[list[Entry]], object]) -> Tamper:
    def tamper(logs: Logs) -> bytes:
        entries = parse(logs.sealed)
        change(entries)
        return serialise(entries)

    return tamper


def lines_edit(change: Callable[[list[bytes]], list[bytes]]) -> Tamper:
    return lambda logs: b"".join(change(logs.sealed.splitlines(keepends=True)))


# -- a valid log --------------------------------------------------------------------------


def test_the_fixture_log_has_the_layout_the_tamper_rows_assume(logs: Logs) -> None:
    entries = parse(logs.sealed)
    assert tuple(entry["kind"] for entry in entries) == LAYOUT
    assert entries[DENIED_CALL]["decision"] == "deny"
    assert [entries[i]["data"]["first"] for i in (FIRST_CHECKPOINT, MIDDLE_CHECKPOINT, LAST_CHECKPOINT)] == [1, 4, 8]


def test_a_sealed_log_from_the_writer_verifies_with_a_full_report(logs: Logs) -> None:
    report = verify_file(logs.path)
    entries = parse(logs.sealed)
    assert report.sealed is True
    assert report.entries == len(LAYOUT) == 13
    assert report.checkpoints == 3
    assert report.signed_entries == report.entries
    assert report.unsigned_tail == 0
    assert report.torn_tail is False
    assert report.decisions == {"allow": 2, "deny": 2}
    assert report.kinds == {"genesis": 1, "descriptor": 2, "call": 4, "result": 2, "checkpoint": 3, "seal": 1}
    assert report.session == SESSION
    assert report.key_id == key_id(KEY.public_key())
    assert report.public_key == public_text(KEY.public_key())
    assert report.ephemeral is False
    assert report.key_pinned is False
    assert report.head == entries[-1]["hash"]


def test_a_sealed_log_verifies_against_its_pinned_public_key(logs: Logs) -> None:
    report = verify_file(logs.path, KEY.public_key())
    assert report.key_pinned is True
    assert report.sealed is True
    assert report.signed_entries == report.entries == 13


def test_verifying_lines_a_file_or_a_fed_verifier_gives_the_same_report(logs: Logs) -> None:
    verifier = Verifier(KEY.public_key())
    for number, entry in enumerate(parse(logs.sealed), start=1):
        verifier.feed(entry, number)
    assert verifier.finish() == verify_bytes(logs.sealed, KEY.public_key()) == verify_file(logs.path, KEY.public_key())


def test_the_writer_makes_the_same_bytes_for_the_same_key_session_and_clock(logs: Logs, tmp_path: Path) -> None:
    assert write_log(tmp_path / "again.jsonl").read_bytes() == logs.sealed


def test_a_noncanonical_signature_text_decodes_to_the_same_signature_bytes(logs: Logs) -> None:
    signature = parse(logs.sealed)[SEAL]["sig"]
    assert malleate(signature) != signature
    assert base64.b64decode(malleate(signature), validate=True) == base64.b64decode(signature)


# -- the tamper table ----------------------------------------------------------------------

#: One row per member of a `call` entry: (member, new value, error). The old `hash` is kept.
MEMBER_EDITS: list[tuple[str, Any, type[VerificationError]]] = [
    ("v", 2, LogMalformed),  # the format version is checked before the hash
    ("kind", "result", EntryHashMismatch),
    ("session", OTHER_SESSION, EntryHashMismatch),
    ("seq", NEXT_CALL, EntryHashMismatch),
    ("ts", "2026-01-02T03:04:06.000000Z", EntryHashMismatch),
    ("key_id", key_id(OTHER_KEY.public_key()), EntryHashMismatch),
    ("prev", "00" * 32, EntryHashMismatch),
    ("server", "shell", EntryHashMismatch),
    ("tool", "read_file", EntryHashMismatch),
    ("request_id", "99", EntryHashMismatch),
    ("descriptor_hash", "d1" * 32, EntryHashMismatch),
    ("policy_hash", "cd" * 32, EntryHashMismatch),
    ("args_hash", "a1" * 32, EntryHashMismatch),
    ("result_hash", "e2" * 32, EntryHashMismatch),
    ("labels", [], EntryHashMismatch),
    ("decision", "allow", EntryHashMismatch),
    ("rule", "allow-read", EntryHashMismatch),
    ("reason", "read-only tool", EntryHashMismatch),
    ("data", {"note": "nothing to see"}, EntryHashMismatch),
]


def test_the_member_edit_rows_cover_every_member_of_an_entry() -> None:
    assert [member for member, _, _ in MEMBER_EDITS] == list(MEMBERS)


def _set_member(index: int, member: str, value: Any) -> Callable[[list[Entry]], None]:
    def change(entries: list[Entry]) -> None:
        assert entries[index][member] != value
        entries[index][member] = value

    return change


@pytest.mark.parametrize(
    ("member", "value", "expected"),
    [pytest.param(member, value, expected, id=f"{member}-edited") for member, value, expected in MEMBER_EDITS]
    + [
        pytest.param("kind", "seal", LogMalformed, id="kind-edited-to-seal-without-sig"),
        pytest.param("decision", "shadow-deny", EntryHashMismatch, id="decision-edited-to-shadow-deny"),
        pytest.param("decision", None, EntryHashMismatch, id="decision-removed"),
        pytest.param("decision", "maybe", LogMalformed, id="decision-edited-to-unknown"),
    ],
)
def test_editing_any_member_of_a_call_entry_and_keeping_its_hash_fails_at_that_line(
    logs: Logs, member: str, value: Any, expected: type[VerificationError]
) -> None:
    error = assert_fails_with(entries_edit(_set_member(DENIED_CALL, member, value))(logs), expected)
    assert error.line == DENIED_CALL + 1


def _flip_decision(entries: list[Entry]) -> None:
    entries[DENIED_CALL]["decision"] = "allow"
    rehash(entries[DENIED_CALL])


def _flip_decision_and_relink(entries: list[Entry]) -> None:
    _flip_decision(entries)
    relink(entries, DENIED_CALL + 1)


def _flip_decision_relink_and_recompute_checkpoints(entries: list[Entry]) -> None:
    _flip_decision(entries)
    relink(entries, DENIED_CALL + 1, checkpoints=True)


def _edit_hash(entries: list[Entry]) -> None:
    digest = entries[DENIED_CALL]["hash"]
    entries[DENIED_CALL]["hash"] = ("0" if digest[0] != "0" else "1") + digest[1:]


def _swap_calls(entries: list[Entry]) -> None:
    entries[DENIED_CALL], entries[NEXT_CALL] = entries[NEXT_CALL], entries[DENIED_CALL]


def _swap_calls_and_renumber(entries: list[Entry]) -> None:
    _swap_calls(entries)
    for index in (DENIED_CALL, NEXT_CALL):
        entries[index]["seq"] = index
        rehash(entries[index])


def _drop(index: int, *, relinked: bool) -> Callable[[list[Entry]], None]:
    def change(entries: list[Entry]) -> None:
        del entries[index]
        if relinked:
            relink(entries, index)

    return change


def _duplicate(entries: list[Entry]) -> None:
    entries.insert(DENIED_CALL + 1, dict(entries[DENIED_CALL]))


def _forged_twin(entries: list[Entry]) -> None:
    """A second entry with the same seq and prev (a fork of the chain) that allows the call."""
    twin = {**entries[DENIED_CALL], "decision": "allow", "rule": "allow-read"}
    entries.insert(DENIED_CALL + 1, rehash(twin))


def _reuse_seq(entries: list[Entry]) -> None:
    entries[NEXT_CALL]["seq"] = DENIED_CALL
    rehash(entries[NEXT_CALL])


def _key_id_lies(entries: list[Entry]) -> None:
    entries[DENIED_CALL]["key_id"] = key_id(OTHER_KEY.public_key())
    rehash(entries[DENIED_CALL])
    relink(entries, DENIED_CALL + 1)


def _genesis_key_replaced(entries: list[Entry]) -> None:
    genesis = entries[0]
    genesis["key_id"] = key_id(OTHER_KEY.public_key())
    genesis["data"]["public_key"] = public_text(OTHER_KEY.public_key())
    genesis["sig"] = sign(OTHER_KEY, signing_bytes(genesis))
    rehash(genesis)
    relink(entries, 1)


def _resign_first_checkpoint_with_other_key(entries: list[Entry]) -> None:
    resign_checkpoint(entries[FIRST_CHECKPOINT], OTHER_KEY)
    relink(entries, FIRST_CHECKPOINT + 1)


def _edit_checkpoint_root(entries: list[Entry]) -> None:
    entries[FIRST_CHECKPOINT]["data"]["root"] = "00" * 32
    rehash(entries[FIRST_CHECKPOINT])
    relink(entries, FIRST_CHECKPOINT + 1)


def _self_signature(index: int, make: Callable[[Entry], str]) -> Callable[[list[Entry]], None]:
    def change(entries: list[Entry]) -> None:
        entries[index]["sig"] = make(entries[index])

    return change


def _other_key_signature(entry: Entry) -> str:
    return sign(OTHER_KEY, signing_bytes(entry))


def _edit_seal_count(entries: list[Entry]) -> None:
    entries[SEAL]["data"]["count"] = 99
    rehash(entries[SEAL])


def _add_member(name: str, *, rehashed: bool) -> Callable[[list[Entry]], None]:
    def change(entries: list[Entry]) -> None:
        entries[DENIED_CALL][name] = "x"
        if rehashed:
            rehash(entries[DENIED_CALL])

    return change


def _remove_member(entries: list[Entry]) -> None:
    del entries[DENIED_CALL]["rule"]


def _splice_sessions(logs: Logs) -> bytes:
    return b"".join(logs.sealed.splitlines(keepends=True)[:SPLICE_AT] + logs.other_session.splitlines(keepends=True)[SPLICE_AT:])


def _insert_line(line: bytes) -> Callable[[list[bytes]], list[bytes]]:
    return lambda lines: [*lines[:DENIED_CALL], line, *lines[DENIED_CALL:]]


OTHER_PUBLIC = OTHER_KEY.public_key()
OWN_PUBLIC = KEY.public_key()

TAMPER_ROWS = [
    # edited hash, and an attacker who re-hashes (and re-links, and recomputes checkpoint roots)
    pytest.param(entries_edit(_edit_hash), EntryHashMismatch, None, id="hash-member-edited"),
    pytest.param(entries_edit(_flip_decision), ChainBroken, None, id="deny-to-allow-rehashed"),
    pytest.param(entries_edit(_flip_decision_and_relink), CheckpointInvalid, None, id="deny-to-allow-rehashed-relinked"),
    pytest.param(
        entries_edit(_flip_decision_relink_and_recompute_checkpoints),
        SignatureInvalid,
        None,
        id="deny-to-allow-rehashed-relinked-checkpoint-recomputed",
    ),
    # reordered, dropped, duplicated lines and sequence numbers
    pytest.param(entries_edit(_swap_calls), SequenceBroken, None, id="call-lines-swapped"),
    pytest.param(entries_edit(_swap_calls_and_renumber), ChainBroken, None, id="call-lines-swapped-renumbered-rehashed"),
    pytest.param(entries_edit(_drop(DENIED_CALL, relinked=False)), SequenceBroken, None, id="middle-line-dropped"),
    pytest.param(entries_edit(_drop(DENIED_CALL, relinked=True)), CheckpointInvalid, None, id="middle-line-dropped-relinked"),
    pytest.param(entries_edit(_drop(0, relinked=False)), SequenceBroken, None, id="genesis-dropped"),
    pytest.param(entries_edit(_drop(0, relinked=True)), LogMalformed, None, id="genesis-dropped-relinked"),
    pytest.param(entries_edit(_duplicate), SequenceBroken, None, id="line-duplicated"),
    pytest.param(entries_edit(_forged_twin), SequenceBroken, None, id="duplicate-seq-forged-twin-rehashed"),
    pytest.param(entries_edit(_reuse_seq), SequenceBroken, None, id="duplicate-seq-reused-rehashed"),
    # keys and signatures
    pytest.param(lambda logs: logs.sealed, WrongKey, OTHER_PUBLIC, id="pinned-key-is-another-key"),
    pytest.param(lambda logs: logs.other_key, WrongKey, OWN_PUBLIC, id="log-resigned-by-another-key"),
    pytest.param(entries_edit(_genesis_key_replaced), WrongKey, None, id="genesis-key-replaced-relinked"),
    pytest.param(entries_edit(_key_id_lies), WrongKey, None, id="entry-key-id-lies-rehashed-relinked"),
    pytest.param(entries_edit(_self_signature(0, _other_key_signature)), SignatureInvalid, None, id="genesis-signed-by-another-key"),
    pytest.param(entries_edit(_resign_first_checkpoint_with_other_key), SignatureInvalid, None, id="checkpoint-signed-by-another-key"),
    pytest.param(entries_edit(_self_signature(SEAL, _other_key_signature)), SignatureInvalid, None, id="seal-signed-by-another-key"),
    pytest.param(
        entries_edit(_self_signature(0, lambda entry: malleate(entry["sig"]))),
        SignatureInvalid,
        None,
        id="genesis-signature-noncanonical-base64",
    ),
    pytest.param(
        entries_edit(_self_signature(SEAL, lambda entry: malleate(entry["sig"]))),
        SignatureInvalid,
        None,
        id="seal-signature-noncanonical-base64",
    ),
    # checkpoints
    pytest.param(entries_edit(_edit_checkpoint_root), CheckpointInvalid, None, id="checkpoint-root-edited-rehashed"),
    pytest.param(entries_edit(_drop(FIRST_CHECKPOINT, relinked=True)), CheckpointInvalid, None, id="checkpoint-removed-relinked"),
    pytest.param(entries_edit(_drop(LAST_CHECKPOINT, relinked=True)), SignatureInvalid, None, id="last-checkpoint-removed-relinked"),
    # the end of the log
    pytest.param(lines_edit(lambda lines: lines[:-1]), LogUnsealed, None, id="tail-cut-1-seal-removed"),
    pytest.param(lines_edit(lambda lines: lines[:-2]), LogUnsealed, None, id="tail-cut-2"),
    pytest.param(lines_edit(lambda lines: lines[:-3]), LogUnsealed, None, id="tail-cut-3"),
    pytest.param(entries_edit(_edit_seal_count), LogMalformed, None, id="seal-count-edited-rehashed"),
    pytest.param(lambda logs: logs.sealed + logs.other_session, EntriesAfterSeal, None, id="second-log-after-seal"),
    pytest.param(lambda logs: logs.sealed + logs.sealed, EntriesAfterSeal, None, id="same-log-twice"),
    pytest.param(_splice_sessions, SessionMismatch, None, id="spliced-sessions"),
    # malformed
    pytest.param(lambda logs: b"", LogMalformed, None, id="empty-file"),
    pytest.param(lines_edit(_insert_line(b"not json\n")), LogMalformed, None, id="non-json-line-in-middle"),
    pytest.param(lines_edit(_insert_line(b"\n")), LogMalformed, None, id="blank-line-in-middle"),
    pytest.param(lines_edit(_insert_line(b"[]\n")), LogMalformed, None, id="json-array-line-in-middle"),
    pytest.param(entries_edit(_add_member("comment", rehashed=False)), LogMalformed, None, id="unknown-member-added"),
    pytest.param(entries_edit(_add_member("comment", rehashed=True)), LogMalformed, None, id="unknown-member-added-rehashed"),
    pytest.param(entries_edit(_add_member("sig", rehashed=False)), LogMalformed, None, id="sig-added-to-call"),
    pytest.param(entries_edit(_remove_member), LogMalformed, None, id="member-removed"),
]


@pytest.mark.parametrize(("tamper", "expected", "pinned"), TAMPER_ROWS)
def test_tampering_fails_with_its_own_typed_error_and_exit_code(
    logs: Logs, tamper: Tamper, expected: type[VerificationError], pinned: Ed25519PublicKey | None
) -> None:
    data = tamper(logs)
    assert data != logs.sealed or pinned is not None
    assert_fails_with(data, expected, pinned)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_log_with_its_last_lines_cut_off_is_unsealed_and_reports_what_is_left(logs: Logs, cut: int) -> None:
    error = assert_fails_with(b"".join(logs.sealed.splitlines(keepends=True)[:-cut]), LogUnsealed)
    assert error.report is not None
    assert error.report.entries == len(LAYOUT) - cut
    assert error.report.sealed is False
    assert error.report.torn_tail is False


@pytest.mark.parametrize(
    ("line_index", "keep"),
    [
        pytest.param(SEAL, 1, id="seal-line-first-byte"),
        pytest.param(SEAL, 0.5, id="seal-line-half"),
        pytest.param(SEAL, -2, id="seal-line-without-closing-brace"),
        pytest.param(DENIED_CALL, 0.5, id="middle-line-half-and-nothing-after"),
    ],
)
def test_a_torn_last_line_is_a_torn_tail_counting_only_the_complete_lines(logs: Logs, line_index: int, keep: float) -> None:
    lines = logs.sealed.splitlines(keepends=True)
    torn = lines[line_index]
    cut = int(len(torn) * keep) if isinstance(keep, float) else keep % len(torn)
    data = b"".join(lines[:line_index]) + torn[:cut]
    assert not data.endswith(b"\n")
    error = assert_fails_with(data, TornTail)
    assert error.report is not None
    assert error.report.entries == line_index
    assert error.report.torn_tail is True
    assert error.report.sealed is False
    assert error.line == line_index + 1


@pytest.mark.parametrize("replacement", [b" ", b"\t", b"\r"], ids=["space", "tab", "carriage-return"])
def test_a_sealed_log_whose_final_newline_is_replaced_by_whitespace_does_not_verify(logs: Logs, replacement: bytes) -> None:
    data = logs.sealed[:-1] + replacement
    assert data != logs.sealed
    failure(data)


# -- properties: any mutation of a valid log fails -----------------------------------------


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(min_value=0, max_value=2**20), delta=st.integers(min_value=1, max_value=255))
@example(offset=-1, delta=ord(" ") - ord("\n"))  # the final newline replaced by a space
def test_any_single_byte_mutation_of_a_sealed_log_fails_verification(logs: Logs, offset: int, delta: int) -> None:
    data = bytearray(logs.sealed)
    position = offset % len(data)
    data[position] = (data[position] + delta) % 256
    assert bytes(data) != logs.sealed
    failure(bytes(data))


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(min_value=0, max_value=2**16))
def test_deleting_any_single_line_of_a_sealed_log_fails_verification(logs: Logs, offset: int) -> None:
    lines = logs.sealed.splitlines(keepends=True)
    del lines[offset % len(lines)]
    failure(b"".join(lines))


@settings(max_examples=200, deadline=None)
@given(first=st.integers(min_value=0, max_value=2**16), second=st.integers(min_value=0, max_value=2**16))
def test_swapping_any_two_different_lines_of_a_sealed_log_fails_verification(logs: Logs, first: int, second: int) -> None:
    lines = logs.sealed.splitlines(keepends=True)
    i, j = first % len(lines), second % len(lines)
    if i == j:
        j = (i + 1) % len(lines)
    lines[i], lines[j] = lines[j], lines[i]
    failure(b"".join(lines))


# -- an intact log without a seal ----------------------------------------------------------


@pytest.mark.parametrize(
    ("appended", "entries", "checkpoints", "unsigned_tail"),
    [
        pytest.param(0, 1, 0, 0, id="genesis-only"),
        pytest.param(2, 3, 0, 2, id="no-checkpoint-yet"),
        # A checkpoint entry is itself signed only by the next batch, so it counts as unsigned.
        pytest.param(3, 5, 1, 1, id="just-after-a-checkpoint"),
        pytest.param(5, 7, 1, 3, id="two-after-a-checkpoint"),
        pytest.param(6, 9, 2, 1, id="just-after-the-second-checkpoint"),
        pytest.param(8, 11, 2, 3, id="two-after-the-second-checkpoint"),
    ],
)
def test_an_abandoned_log_is_unsealed_and_reports_its_unsigned_tail(
    tmp_path: Path, appended: int, entries: int, checkpoints: int, unsigned_tail: int
) -> None:
    path = write_log(tmp_path / "abandoned.jsonl", script=SCRIPT[:appended], seal=False)
    with pytest.raises(LogUnsealed) as caught:
        verify_file(path, KEY.public_key())
    error = caught.value
    assert type(error) is LogUnsealed
    assert error.exit_code == 20
    report = error.report
    assert report is not None
    assert report.sealed is False
    assert report.torn_tail is False
    assert report.entries == entries == len(path.read_bytes().splitlines())
    assert report.checkpoints == checkpoints
    assert report.unsigned_tail == unsigned_tail
    assert report.signed_entries == entries - unsigned_tail
    last_checkpoint = max((i for i, kind in enumerate(LAYOUT[:entries]) if kind == "checkpoint"), default=None)
    assert unsigned_tail == (entries - last_checkpoint if last_checkpoint is not None else entries - 1)


# -- the command line ----------------------------------------------------------------------


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_bytes(data)
    return path


def test_the_cli_verifies_a_sealed_log_with_exit_code_zero(logs: Logs, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", str(logs.path)]) == 0
    out = capsys.readouterr().out
    assert "13 entries" in out
    assert "allow 2, deny 2" in out


@pytest.mark.parametrize(
    ("tamper", "extra", "code"),
    [
        pytest.param(lambda logs: logs.sealed, ["--public-key", public_text(KEY.public_key())], 0, id="pinned-own-key"),
        pytest.param(lambda logs: logs.sealed, ["--public-key", public_text(OTHER_KEY.public_key())], 15, id="pinned-other-key"),
        pytest.param(entries_edit(_set_member(DENIED_CALL, "decision", "allow")), [], 11, id="decision-edited"),
        pytest.param(entries_edit(_flip_decision), [], 12, id="decision-edited-rehashed"),
        pytest.param(entries_edit(_drop(DENIED_CALL, relinked=False)), [], 13, id="line-dropped"),
        pytest.param(entries_edit(_self_signature(SEAL, _other_key_signature)), [], 14, id="seal-signed-by-another-key"),
        pytest.param(_splice_sessions, [], 16, id="spliced-sessions"),
        pytest.param(lambda logs: logs.sealed * 2, [], 17, id="entries-after-seal"),
        pytest.param(entries_edit(_edit_checkpoint_root), [], 18, id="checkpoint-root-edited"),
        pytest.param(lambda logs: logs.sealed[: logs.sealed.rindex(b"\n", 0, -1) + 1], [], 20, id="seal-removed"),
        pytest.param(lambda logs: logs.sealed[:-40], [], 21, id="torn-tail"),
        pytest.param(lambda logs: b"", [], 10, id="empty-file"),
    ],
)
def test_the_cli_exits_with_the_documented_code(
    logs: Logs, tmp_path: Path, capsys: pytest.CaptureFixture[str], tamper: Tamper, extra: list[str], code: int
) -> None:
    assert cli.main(["verify", str(_write(tmp_path, tamper(logs))), *extra]) == code
    captured = capsys.readouterr()
    if code:
        assert "airlock verify: " in captured.err


def test_the_cli_reads_a_pinned_public_key_from_a_file(logs: Logs, tmp_path: Path) -> None:
    pin = tmp_path / "signer.pub"
    pin.write_text(public_text(KEY.public_key()) + "\n")
    assert cli.main(["verify", str(logs.path), "--public-key", str(pin)]) == 0


def test_the_cli_json_report_of_a_sealed_log_says_ok(logs: Logs, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["verify", "--json", str(logs.path)]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["ok"] is True
    assert shown["error"] is None
    assert shown["exit_code"] == 0
    assert shown["entries"] == 13
    assert shown["sealed"] is True
    assert shown["signed_entries"] == 13
    assert shown["decisions"] == {"allow": 2, "deny": 2}


def test_the_cli_json_report_of_a_tampered_log_names_the_error_line_and_exit_code(
    logs: Logs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, entries_edit(_set_member(DENIED_CALL, "decision", "allow"))(logs))
    assert cli.main(["verify", str(path), "--json"]) == 11
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["ok"] is False
    assert shown["error"] == "hash-mismatch"
    assert shown["exit_code"] == 11
    assert shown["line"] == DENIED_CALL + 1
    assert shown["entries"] == DENIED_CALL


def test_the_cli_json_report_of_a_torn_log_counts_the_complete_lines(
    logs: Logs, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, logs.sealed[:-40])
    assert cli.main(["verify", "--json", str(path)]) == 21
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["ok"] is False
    assert shown["error"] == "torn-tail"
    assert shown["exit_code"] == 21
    assert shown["entries"] == len(LAYOUT) - 1
    assert shown["torn_tail"] is True
