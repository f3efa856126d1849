"""Standalone receipts: one entry with the proof that its key signed it, checkable without the log.

A receipt is a JSON object:

    {"v": 1, "entry": {...}, "public_key": "ed25519:...",
     "batch": {"statement": {...}, "sig": "...", "index": I, "proof": ["hex", ...]}}

For a batch-signed entry, `proof` is the RFC 6962 inclusion proof of the entry's hash at `index`
in the Merkle tree whose root, size (`last - first + 1`) and first sequence number are in the
signed `statement`. Genesis, rotation and seal entries carry their own `sig` and need no
`batch`. `public_key` is the key that signed; pin it with `--public-key` to trust it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import EXIT_LOG_MALFORMED, GatewayError
from gateway.evidence import merkle
from gateway.evidence.canonical import batch_signing_bytes, signing_bytes
from gateway.evidence.entry import SELF_SIGNED, sha256_hex
from gateway.evidence.failures import LogMalformed, SignatureInvalid, WrongKey
from gateway.evidence.signing import key_id, public_from_text, public_raw, verify_signature

RECEIPT_VERSION = 1


class ReceiptUnavailable(GatewayError):
    """No receipt can be made: no such entry, or it is not signed yet (unsigned tail)."""

    exit_code = EXIT_LOG_MALFORMED


def extract_receipt(lines: Iterable[bytes], seq: int) -> dict[str, Any]:
    """Build the receipt of entry `seq` from a log's lines. Run `airlock verify` on the log
    first: this only gathers, the receipt's checks are `verify_receipt`.

    Raises:
        ReceiptUnavailable: no such entry, or no signature covers it.
    """
    public = None
    hashes: dict[int, Any] = {}
    target: dict[str, Any] | None = None
    signer_at_target = None
    for raw in lines:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            break  # a torn tail: nothing after it
        if type(entry) is not dict:
            break
        kind, number = entry.get("kind"), entry.get("seq")
        if kind == "genesis":
            public = entry.get("data", {}).get("public_key")
        elif kind == "rotation":
            public = entry.get("data", {}).get("manifest", {}).get("new_public_key")
        if type(number) is int:
            hashes[number] = entry.get("hash")
        if number == seq:
            target, signer_at_target = entry, public
            if kind in SELF_SIGNED:
                return {"v": RECEIPT_VERSION, "entry": entry, "public_key": public, "batch": None}
        if target is not None and kind == "checkpoint":
            data = entry.get("data", {})
            first, last = data.get("first"), data.get("last")
            if type(first) is int and type(last) is int and first <= seq <= last:
                leaves = [bytes.fromhex(hashes[i]) for i in range(first, last + 1)]
                statement = {k: data.get(k) for k in ("session", "key_id", "first", "last", "root", "head")}
                proof = [p.hex() for p in merkle.inclusion_proof(leaves, seq - first)]
                batch = {"statement": statement, "sig": data.get("sig"), "index": seq - first, "proof": proof}
                return {"v": RECEIPT_VERSION, "entry": target, "public_key": signer_at_target, "batch": batch}
    if target is None:
        raise ReceiptUnavailable(f"the log has no entry with seq {seq}")
    raise ReceiptUnavailable(
        f"entry {seq} is covered by no batch signature: it is in the unsigned tail of an unsealed log, or it is a "
        "checkpoint, vouched for through the chain by the signed entry after it"
    )


def verify_receipt(receipt: Any, pinned: Ed25519PublicKey | None = None) -> dict[str, Any]:
    """Check a receipt on its own; return its entry.

    Raises:
        LogMalformed: not a receipt. WrongKey: not the pinned key, or key ids disagree.
        SignatureInvalid: the entry's hash, the inclusion proof or a signature fails.
    """
    if type(receipt) is not dict or receipt.get("v") != RECEIPT_VERSION or type(receipt.get("entry")) is not dict:
        raise LogMalformed("not an Airlock receipt")
    entry: dict[str, Any] = receipt["entry"]
    try:
        public = public_from_text(str(receipt.get("public_key")))
        payload = signing_bytes(entry)
    except GatewayError as exc:
        raise LogMalformed(f"receipt unreadable: {exc.message}") from None
    if pinned is not None and public_raw(public) != public_raw(pinned):
        raise WrongKey(f"the receipt is signed by key {key_id(public)}, not by the pinned key {key_id(pinned)}")
    if entry.get("key_id") != key_id(public):
        raise WrongKey("the entry names another key than the receipt's public key")
    digest = sha256_hex(payload)
    if entry.get("hash") != digest:
        raise SignatureInvalid("the entry does not match its hash")
    batch = receipt.get("batch")
    try:
        if batch is None:
            if entry.get("kind") not in SELF_SIGNED:
                raise SignatureInvalid("a batch-signed entry needs its batch proof")
            verify_signature(public, str(entry.get("sig")), payload)
            return entry
        statement = batch["statement"]
        first, last, index = int(statement["first"]), int(statement["last"]), int(batch["index"])
        if first + index != entry.get("seq") or statement.get("session") != entry.get("session"):
            raise SignatureInvalid("the proof is for another position or session")
        if statement.get("key_id") != key_id(public):
            raise WrongKey("the batch names another key than the receipt's public key")
        proof = [bytes.fromhex(p) for p in batch["proof"]]
        root = merkle.root_from_proof(bytes.fromhex(digest), index, last - first + 1, proof)
        if root.hex() != statement.get("root"):
            raise SignatureInvalid("the inclusion proof does not lead to the signed root")
        verify_signature(public, str(batch["sig"]), batch_signing_bytes(statement))
    except (KeyError, TypeError, ValueError) as exc:
        raise SignatureInvalid(f"malformed batch proof: {exc}") from None
    except GatewayError as exc:
        if isinstance(exc, SignatureInvalid | WrongKey):
            raise
        raise SignatureInvalid(exc.message) from None
    return entry
