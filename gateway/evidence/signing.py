"""Ed25519 keys: generate, store (0600, never overwritten), load (refusing loose permissions),
identify, sign and verify. There is no built-in key anywhere in the gateway."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path
from typing import Final, NewType

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import EXIT_USAGE, GatewayError
from gateway.evidence.failures import SignatureInvalid

KeyId = NewType("KeyId", str)

#: Environment variable naming the private key file (the key itself never goes in a variable).
KEY_FILE_ENV: Final = "AIRLOCK_KEY_FILE"


class KeyFileError(GatewayError):
    """A key file is missing, unreadable, malformed, or too widely readable."""

    exit_code = EXIT_USAGE


def generate_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_text(key: Ed25519PublicKey) -> str:
    """The public key as it appears in logs and files: `ed25519:` and base64 of the raw 32 bytes."""
    return "ed25519:" + base64.b64encode(public_raw(key)).decode()


def key_id(key: Ed25519PublicKey) -> KeyId:
    """The first 16 bytes of SHA-256 over the raw public key, hex."""
    return KeyId(hashlib.sha256(public_raw(key)).hexdigest()[:32])


def public_from_text(text: str) -> Ed25519PublicKey:
    """Parse `ed25519:BASE64` or a PEM public key.

    Raises:
        KeyFileError: neither form, or not an Ed25519 key.
    """
    text = text.strip()
    try:
        if text.startswith("ed25519:"):
            raw = base64.b64decode(text.removeprefix("ed25519:"), validate=True)
            return Ed25519PublicKey.from_public_bytes(raw)
        loaded = serialization.load_pem_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"not an Ed25519 public key ({exc}); expected 'ed25519:BASE64' or a PEM public key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise KeyFileError("the public key is not an Ed25519 key")
    return loaded


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    """Write `key` as unencrypted PKCS#8 PEM, mode 0600, refusing to replace an existing file.

    Raises:
        KeyFileError: the file exists or cannot be created.
    """
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key (choose another --out)") from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load a private key file written by `airlock keygen`.

    Raises:
        KeyFileError: missing, readable by group or others (fix: `chmod 600 FILE`), or not an
            Ed25519 private key.
    """
    try:
        # O_NONBLOCK: a FIFO planted at the key path must not hang the gateway.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise KeyFileError(f"cannot open key file {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"key file {path} is accessible by group or others (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")
        data = b""
        try:
            while chunk := os.read(fd, 65536):
                data += chunk
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """Base64 of the Ed25519 signature of `message`."""
    return base64.b64encode(key.sign(message)).decode()


def verify_signature(public: Ed25519PublicKey, signature: str, message: bytes) -> None:
    """Raises:
    SignatureInvalid: malformed base64 or a signature that does not verify.
    """
    try:
        raw = base64.b64decode(signature, validate=True)
        # Only the canonical encoding counts: base64 has spare bits in its last character,
        # and a log whose bytes can change without failing verification is not tamper-evident.
        if base64.b64encode(raw).decode() != signature:
            raise ValueError("non-canonical base64")
        public.verify(raw, message)
    except (InvalidSignature, ValueError, TypeError):
        raise SignatureInvalid("signature does not verify") from None
