"""Key rotation manifests: a statement that key A hands over to key B, signed by both.

A manifest signed only by the new key would let anyone who steals nothing but a fresh key
claim a log; one signed only by the old key would let a thief of the old key hand the log to
a key the owner never made. Both signatures, over the same domain-separated RFC 8785 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.evidence.canonical import ROTATION_DOMAIN, signing_bytes
from gateway.evidence.failures import SignatureInvalid
from gateway.evidence.signing import key_id, public_from_text, public_raw, public_text, sign, verify_signature

MANIFEST_VERSION: Final = 1
_BODY: Final = ("v", "old_key_id", "old_public_key", "new_key_id", "new_public_key", "ts")


def make_manifest(old: Ed25519PrivateKey, new: Ed25519PrivateKey, ts: str) -> dict[str, Any]:
    body = {
        "v": MANIFEST_VERSION,
        "old_key_id": key_id(old.public_key()),
        "old_public_key": public_text(old.public_key()),
        "new_key_id": key_id(new.public_key()),
        "new_public_key": public_text(new.public_key()),
        "ts": ts,
    }
    message = signing_bytes(body, ROTATION_DOMAIN)
    return {**body, "sig_old": sign(old, message), "sig_new": sign(new, message)}


def verify_manifest(manifest: Mapping[str, Any], current: Ed25519PublicKey) -> Ed25519PublicKey:
    """Check that `manifest` hands `current` over to a new key; return the new key.

    Raises:
        SignatureInvalid: malformed, not about `current`, or either signature fails.
    """
    if type(manifest) is not dict or any(name not in manifest for name in (*_BODY, "sig_old", "sig_new")):
        raise SignatureInvalid("rotation manifest is malformed")
    if manifest["v"] != MANIFEST_VERSION:
        raise SignatureInvalid(f"unsupported rotation manifest version {manifest['v']!r}")
    try:
        old = public_from_text(str(manifest["old_public_key"]))
        new = public_from_text(str(manifest["new_public_key"]))
    except Exception:
        raise SignatureInvalid("rotation manifest holds an invalid public key") from None
    if public_raw(old) != public_raw(current) or manifest["old_key_id"] != key_id(old) or manifest["new_key_id"] != key_id(new):
        raise SignatureInvalid("rotation manifest does not hand over the current key")
    message = signing_bytes({name: manifest[name] for name in _BODY}, ROTATION_DOMAIN)
    verify_signature(old, str(manifest["sig_old"]), message)
    verify_signature(new, str(manifest["sig_new"]), message)
    return new
