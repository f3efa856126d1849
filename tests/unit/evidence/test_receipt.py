"""Standalone receipts: every signed entry of a log yields a receipt that verifies alone, and
no tampered receipt does."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.evidence.failures import LogMalformed, SignatureInvalid, VerificationError, WrongKey
from gateway.evidence.receipt import ReceiptUnavailable, extract_receipt, verify_receipt
from gateway.evidence.signing import generate_key, public_from_text

LOG = Path(__file__).resolve().parents[3] / "fixtures" / "vectors" / "log.jsonl"
PUBLIC_1 = public_from_text((LOG.parent / "public-key-1.txt").read_text())
LINES = LOG.read_bytes().splitlines()
ENTRIES = [orjson.loads(line) for line in LINES]


def _receipt(seq: int) -> dict[str, Any]:
    return extract_receipt(LINES, seq)


@pytest.mark.parametrize("seq", [e["seq"] for e in ENTRIES if e["kind"] != "checkpoint"])
def test_every_signed_entry_of_the_golden_log_has_a_receipt_that_verifies_alone(seq: int) -> None:
    receipt = _receipt(seq)
    assert verify_receipt(orjson.loads(orjson.dumps(receipt)))["seq"] == seq


def test_a_receipt_from_before_the_rotation_verifies_against_the_pinned_first_key() -> None:
    assert verify_receipt(_receipt(2), PUBLIC_1)["tool"] == "echo"


def test_a_receipt_signed_by_another_key_than_the_pinned_one_is_refused() -> None:
    with pytest.raises(WrongKey):
        verify_receipt(_receipt(2), generate_key().public_key())


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(receipt: dict[str, Any]) -> None:
        target = receipt
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _flip_proof(receipt: dict[str, Any]) -> None:
    first = receipt["batch"]["proof"][0]
    receipt["batch"]["proof"][0] = ("0" if first[0] != "0" else "1") + first[1:]


TAMPERING: list[tuple[str, Callable[[dict[str, Any]], None], type[VerificationError]]] = [
    ("decision-flipped", _set(("entry", "decision"), "deny"), SignatureInvalid),
    ("tool-renamed", _set(("entry", "tool"), "rm"), SignatureInvalid),
    ("proof-sibling-flipped", _flip_proof, SignatureInvalid),
    ("proof-dropped", _set(("batch", "proof"), []), SignatureInvalid),
    ("wrong-index", _set(("batch", "index"), 0), SignatureInvalid),
    ("root-replaced", _set(("batch", "statement", "root"), "00" * 32), SignatureInvalid),
    ("batch-size-changed", _set(("batch", "statement", "last"), 99), SignatureInvalid),
    ("signature-replaced", _set(("batch", "sig"), "A" * 86 + "=="), SignatureInvalid),
    ("batch-removed", _set(("batch",), None), SignatureInvalid),
    ("other-public-key", _set(("public_key",), "ed25519:" + "A" * 43 + "="), WrongKey),
    ("not-a-receipt", _set(("v",), 2), LogMalformed),
]


@pytest.mark.parametrize(("mutate", "error"), [(m, e) for _, m, e in TAMPERING], ids=[n for n, _, _ in TAMPERING])
def test_a_tampered_receipt_fails_with_its_typed_error(mutate: Callable[[dict[str, Any]], None], error: type[VerificationError]) -> None:
    receipt = copy.deepcopy(_receipt(2))
    mutate(receipt)
    with pytest.raises(error):
        verify_receipt(receipt)


def test_no_receipt_is_made_for_a_missing_entry() -> None:
    with pytest.raises(ReceiptUnavailable):
        _receipt(999)
