"""The checked-in golden vectors still come out of the code byte for byte, and still verify."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import orjson
import rfc8785

from gateway.evidence import merkle
from gateway.evidence.canonical import batch_signing_bytes, signing_bytes
from gateway.evidence.entry import sha256_hex
from gateway.evidence.signing import public_from_text, verify_signature
from gateway.evidence.verify import verify_file

ROOT = Path(__file__).resolve().parents[3]
VECTORS = ROOT / "fixtures" / "vectors"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_vectors", ROOT / "fixtures" / "generate_vectors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_generator_reproduces_every_checked_in_vector_byte_for_byte() -> None:
    assert _generator().main(["--check"]) == 0


def test_canonical_vectors_agree_with_the_reference_implementation() -> None:
    for row in orjson.loads((VECTORS / "canonical.json").read_bytes()):
        value = orjson.loads(row["input"])
        assert bytes.fromhex(row["canonical_hex"]) == rfc8785.dumps(value), row["name"]


def test_the_entry_vector_hash_and_signature_verify_from_the_file_alone() -> None:
    vector = orjson.loads((VECTORS / "entry.json").read_bytes())
    payload = signing_bytes(vector["entry"])
    assert payload.hex() == vector["signing_bytes_hex"]
    assert sha256_hex(payload) == vector["hash"]
    public = public_from_text(vector["public_key"])
    verify_signature(public, vector["signature"], payload)
    leaves = [bytes.fromhex(leaf) for leaf in vector["merkle_leaves"]]
    for index, proof in enumerate(vector["merkle_proofs"]):
        root = merkle.root_from_proof(leaves[index], index, len(leaves), [bytes.fromhex(p) for p in proof])
        assert root.hex() == vector["merkle_root"]
    verify_signature(public, vector["batch_signature"], batch_signing_bytes(vector["batch_statement"]))


def test_the_golden_log_verifies_across_its_key_rotation_with_the_pinned_first_key() -> None:
    pinned = public_from_text((VECTORS / "public-key-1.txt").read_text())
    report = verify_file(VECTORS / "log.jsonl", pinned)
    assert report.sealed and report.rotations == 1 and report.unsigned_tail == 0
    assert report.decisions == {"allow": 2, "deny": 1}
