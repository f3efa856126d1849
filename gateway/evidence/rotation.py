"""Key rotation manifests: a statement that key A hands over to key B, signed by both.

A manifest signed only by the new key would let anyone who steals nothing but a fresh key
claim a log; one signed only by the old key would let a thief of the old key hand the log to
a key the owner never made. Both signatures, over the same domain-separated RFC 8785 bytes.

A running gateway switches keys on SIGHUP (`rotate_key`): `airlock key rotate` has put the new
key in the key file and the manifest beside it (`rotation_manifest_path`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import GatewayError
from gateway.evidence.canonical import ROTATION_DOMAIN, signing_bytes
from gateway.evidence.failures import SignatureInvalid
from gateway.evidence.signing import (
    key_id,
    load_private_key,
    public_from_text,
    public_raw,
    public_text,
    sign,
    verify_signature,
)

if TYPE_CHECKING:  # flightlog verifies manifests with this module
    from gateway.evidence.flightlog import FlightLog

log = structlog.get_logger("airlock.run")

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


def rotation_manifest_path(key_path: Path) -> Path:
    """Where `airlock key rotate` writes the manifest for the key file `key_path`."""
    return key_path.with_name(key_path.name + ".rotation.json")


async def rotate_key(flight_log: FlightLog, key_path: Path) -> None:
    """SIGHUP: if the key file now holds a new key with a manifest handing the current key to
    it, continue the log with the new key. Anything else is refused, and the old key stays."""
    try:
        new_key = load_private_key(key_path)
        if key_id(new_key.public_key()) == flight_log.key_id:
            log.info("SIGHUP: the signing key is unchanged", key_id=flight_log.key_id)
            return
        manifest = orjson.loads(rotation_manifest_path(key_path).read_bytes())
        await flight_log.rotate(new_key, manifest)
    except (GatewayError, OSError, ValueError) as exc:
        log.error("key rotation refused; still signing with the old key", error=str(exc))
        return
    log.info("signing key rotated", key_id=flight_log.key_id)
