"""gateway/evidence/signing.py: Ed25519 key files, key ids, public key text, signatures."""

from __future__ import annotations

import base64
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from gateway.errors import EXIT_USAGE, GatewayError
from gateway.evidence.failures import SignatureInvalid
from gateway.evidence.signing import (
    KeyFileError,
    generate_key,
    key_id,
    load_private_key,
    public_from_text,
    public_raw,
    public_text,
    sign,
    verify_signature,
    write_private_key,
)

MESSAGE = b"mcp-airlock/v1/entry\x00" + b'{"seq":1,"tool":"echo"}'


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture(scope="module")
def other_key() -> Ed25519PrivateKey:
    return generate_key()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def _pkcs8_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _spki_pem(public: PublicKeyTypes) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def _pem(label: str, der: bytes) -> bytes:
    return f"-----BEGIN {label}-----\n{base64.b64encode(der).decode()}\n-----END {label}-----\n".encode()


# An algorithm identifier with an OID no library knows (1.2.3.4), around a 32-byte key.
_UNKNOWN_ALGORITHM = _der(0x30, _der(0x06, bytes.fromhex("2a0304")))
_UNKNOWN_ALGORITHM_PUBLIC_PEM = _pem("PUBLIC KEY", _der(0x30, _UNKNOWN_ALGORITHM + _der(0x03, b"\x00" + b"\x11" * 32)))
_UNKNOWN_ALGORITHM_PRIVATE_PEM = _pem(
    "PRIVATE KEY", _der(0x30, _der(0x02, b"\x00") + _UNKNOWN_ALGORITHM + _der(0x04, _der(0x04, b"\x11" * 32)))
)


def _write_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _assert_key_error(caught: pytest.ExceptionInfo[KeyFileError]) -> None:
    assert type(caught.value) is KeyFileError
    assert isinstance(caught.value, GatewayError)
    assert caught.value.exit_code == EXIT_USAGE == 2


# --- key files ---------------------------------------------------------------------------


@pytest.mark.usefixtures("permissive_umask")
def test_write_private_key_makes_a_0600_file_even_with_a_permissive_umask(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "airlock.key"
    write_private_key(path, key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_write_private_key_refuses_to_overwrite_an_existing_file(
    tmp_path: Path, key: Ed25519PrivateKey, other_key: Ed25519PrivateKey
) -> None:
    path = tmp_path / "airlock.key"
    write_private_key(path, key)
    before = path.read_bytes()
    with pytest.raises(KeyFileError) as caught:
        write_private_key(path, other_key)
    _assert_key_error(caught)
    assert path.read_bytes() == before
    assert _raw_private(load_private_key(path)) == _raw_private(key)


def test_write_private_key_refuses_to_overwrite_an_unrelated_file(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = _write_file(tmp_path / "notes.txt", b"precious", 0o644)
    with pytest.raises(KeyFileError) as caught:
        write_private_key(path, key)
    _assert_key_error(caught)
    assert path.read_bytes() == b"precious"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_private_key_refuses_to_write_through_a_dangling_symlink(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    target = tmp_path / "elsewhere.key"
    link = tmp_path / "airlock.key"
    link.symlink_to(target)
    with pytest.raises(KeyFileError) as caught:
        write_private_key(link, key)
    _assert_key_error(caught)
    assert not target.exists()


def test_write_private_key_into_a_missing_directory_raises_key_error(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with pytest.raises(KeyFileError) as caught:
        write_private_key(tmp_path / "missing" / "airlock.key", key)
    _assert_key_error(caught)


def test_a_written_key_loads_back_as_the_same_key(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    path = tmp_path / "airlock.key"
    write_private_key(path, key)
    loaded = load_private_key(path)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert _raw_private(loaded) == _raw_private(key)
    assert key_id(loaded.public_key()) == key_id(key.public_key())


@pytest.mark.parametrize("mode", [pytest.param(0o600, id="0600"), pytest.param(0o400, id="0400"), pytest.param(0o700, id="0700")])
def test_load_private_key_accepts_owner_only_modes(tmp_path: Path, key: Ed25519PrivateKey, mode: int) -> None:
    path = _write_file(tmp_path / "airlock.key", _pkcs8_pem(key), mode)
    assert _raw_private(load_private_key(path)) == _raw_private(key)


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param(0o640, id="0640-group-read"),
        pytest.param(0o604, id="0604-world-read"),
        pytest.param(0o660, id="0660-group-write"),
        pytest.param(0o644, id="0644-group-and-world-read"),
        pytest.param(0o620, id="0620-group-write-only"),
        pytest.param(0o602, id="0602-world-write-only"),
        pytest.param(0o610, id="0610-group-execute"),
        pytest.param(0o601, id="0601-world-execute"),
        pytest.param(0o666, id="0666"),
    ],
)
def test_load_private_key_refuses_a_file_accessible_by_group_or_others(tmp_path: Path, key: Ed25519PrivateKey, mode: int) -> None:
    path = _write_file(tmp_path / "airlock.key", _pkcs8_pem(key), mode)
    with pytest.raises(KeyFileError) as caught:
        load_private_key(path)
    _assert_key_error(caught)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda k, r: b"", id="empty"),
        pytest.param(lambda k, r: b"not a key at all\n", id="not-pem"),
        pytest.param(lambda k, r: _raw_private(k), id="raw-32-bytes"),
        pytest.param(
            lambda k, r: k.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            id="der",
        ),
        pytest.param(lambda k, r: _pkcs8_pem(k)[:-40], id="truncated-pem"),
        pytest.param(lambda k, r: _spki_pem(k.public_key()).encode(), id="public-key-pem"),
        pytest.param(
            lambda k, r: k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
            ),
            id="encrypted-pem",
        ),
        pytest.param(lambda k, r: _pkcs8_pem(r), id="rsa-key"),
        pytest.param(lambda k, r: _pkcs8_pem(ec.generate_private_key(ec.SECP256R1())), id="p256-key"),
        pytest.param(lambda k, r: _pkcs8_pem(ed448.Ed448PrivateKey.generate()), id="ed448-key"),
        pytest.param(lambda k, r: _pkcs8_pem(x25519.X25519PrivateKey.generate()), id="x25519-key"),
        pytest.param(lambda k, r: _UNKNOWN_ALGORITHM_PRIVATE_PEM, id="unknown-algorithm-key"),
    ],
)
def test_load_private_key_refuses_a_file_that_is_not_an_ed25519_private_key(
    tmp_path: Path,
    key: Ed25519PrivateKey,
    rsa_key: rsa.RSAPrivateKey,
    content: Callable[[Ed25519PrivateKey, rsa.RSAPrivateKey], bytes],
) -> None:
    path = _write_file(tmp_path / "airlock.key", content(key, rsa_key))
    with pytest.raises(KeyFileError) as caught:
        load_private_key(path)
    _assert_key_error(caught)


def test_load_private_key_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as caught:
        load_private_key(tmp_path / "absent.key")
    _assert_key_error(caught)


def test_load_private_key_refuses_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError) as caught:
        load_private_key(directory)
    _assert_key_error(caught)


# --- key ids and public key text ---------------------------------------------------------


def test_key_id_is_32_lowercase_hex_characters(key: Ed25519PrivateKey) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", key_id(key.public_key()))


def test_key_id_is_stable_for_the_same_key(key: Ed25519PrivateKey) -> None:
    public = key.public_key()
    same = Ed25519PublicKey.from_public_bytes(public_raw(public))
    assert key_id(public) == key_id(public) == key_id(same)
    assert key_id(public_from_text(public_text(public))) == key_id(public)


def test_key_id_differs_between_keys(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    assert key_id(key.public_key()) != key_id(other_key.public_key())


def test_public_text_is_ed25519_and_base64_of_the_raw_key(key: Ed25519PrivateKey) -> None:
    text = public_text(key.public_key())
    prefix, encoded = text.split(":", 1)
    assert prefix == "ed25519"
    assert base64.b64decode(encoded, validate=True) == public_raw(key.public_key())


def test_public_text_round_trips_through_public_from_text(key: Ed25519PrivateKey) -> None:
    public = key.public_key()
    parsed = public_from_text(public_text(public))
    assert isinstance(parsed, Ed25519PublicKey)
    assert public_raw(parsed) == public_raw(public)


@pytest.mark.parametrize(
    "decorate",
    [
        pytest.param(lambda text: text, id="as-is"),
        pytest.param(lambda text: f"  {text}\n", id="surrounding-whitespace"),
    ],
)
def test_public_from_text_accepts_a_pem_subject_public_key_info(key: Ed25519PrivateKey, decorate: Callable[[str], str]) -> None:
    public = key.public_key()
    parsed = public_from_text(decorate(_spki_pem(public)))
    assert public_raw(parsed) == public_raw(public)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(lambda k, r: "", id="empty"),
        pytest.param(lambda k, r: "garbage", id="garbage"),
        pytest.param(lambda k, r: "ed25519:", id="prefix-only"),
        pytest.param(lambda k, r: "ed25519:" + _b64(public_raw(k.public_key()))[:-4], id="truncated-base64"),
        pytest.param(lambda k, r: "ed25519:" + _b64(public_raw(k.public_key())[:31]), id="31-bytes"),
        pytest.param(lambda k, r: "ed25519:" + _b64(public_raw(k.public_key()) + b"\x00"), id="33-bytes"),
        pytest.param(lambda k, r: "ed25519:" + _b64(bytes(64)), id="64-bytes"),
        pytest.param(lambda k, r: "ed25519:" + "!" * 44, id="not-base64"),
        pytest.param(lambda k, r: "ed25519:" + "é" * 44, id="non-ascii"),
        pytest.param(lambda k, r: "ed448:" + _b64(public_raw(k.public_key())), id="wrong-prefix"),
        pytest.param(lambda k, r: _b64(public_raw(k.public_key())), id="bare-base64"),
        pytest.param(lambda k, r: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", id="pem-garbage-body"),
        pytest.param(lambda k, r: _pkcs8_pem(k).decode(), id="private-key-pem"),
        pytest.param(lambda k, r: _spki_pem(r.public_key()), id="rsa-pem"),
        pytest.param(lambda k, r: _spki_pem(ec.generate_private_key(ec.SECP256R1()).public_key()), id="p256-pem"),
        pytest.param(lambda k, r: _spki_pem(ed448.Ed448PrivateKey.generate().public_key()), id="ed448-pem"),
        pytest.param(lambda k, r: _spki_pem(x25519.X25519PrivateKey.generate().public_key()), id="x25519-pem"),
        pytest.param(lambda k, r: _UNKNOWN_ALGORITHM_PUBLIC_PEM.decode(), id="unknown-algorithm-pem"),
    ],
)
def test_public_from_text_rejects_anything_but_an_ed25519_public_key(
    key: Ed25519PrivateKey,
    rsa_key: rsa.RSAPrivateKey,
    text: Callable[[Ed25519PrivateKey, rsa.RSAPrivateKey], str],
) -> None:
    with pytest.raises(KeyFileError) as caught:
        public_from_text(text(key, rsa_key))
    _assert_key_error(caught)


# --- signatures --------------------------------------------------------------------------


def test_a_signature_verifies_under_the_signing_key(key: Ed25519PrivateKey) -> None:
    signature = sign(key, MESSAGE)
    assert len(base64.b64decode(signature, validate=True)) == 64
    verify_signature(key.public_key(), signature, MESSAGE)
    verify_signature(public_from_text(public_text(key.public_key())), signature, MESSAGE)


def test_a_signature_over_the_empty_message_verifies(key: Ed25519PrivateKey) -> None:
    verify_signature(key.public_key(), sign(key, b""), b"")


def _flip_bit(data: bytes, bit: int) -> bytes:
    position, offset = divmod(bit, 8)
    return data[:position] + bytes([data[position] ^ (1 << offset)]) + data[position + 1 :]


def _flip_signature_bit(signature: str, bit: int) -> str:
    return _b64(_flip_bit(base64.b64decode(signature), bit))


Forgery = Callable[[Ed25519PrivateKey, Ed25519PrivateKey, str], tuple[str, bytes]]


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda k, o, s: (s, _flip_bit(MESSAGE, 0)), id="message-first-bit-flipped"),
        pytest.param(lambda k, o, s: (s, _flip_bit(MESSAGE, len(MESSAGE) * 8 - 1)), id="message-last-bit-flipped"),
        pytest.param(lambda k, o, s: (s, MESSAGE + b" "), id="message-extended"),
        pytest.param(lambda k, o, s: (s, MESSAGE[:-1]), id="message-truncated"),
        pytest.param(lambda k, o, s: (s, b""), id="message-empty"),
        pytest.param(lambda k, o, s: (s, MESSAGE.replace(b"entry", b"batch")), id="other-domain"),
        pytest.param(lambda k, o, s: (_flip_signature_bit(s, 0), MESSAGE), id="signature-first-bit-flipped"),
        pytest.param(lambda k, o, s: (_flip_signature_bit(s, 300), MESSAGE), id="signature-middle-bit-flipped"),
        pytest.param(lambda k, o, s: (_flip_signature_bit(s, 511), MESSAGE), id="signature-last-bit-flipped"),
        pytest.param(lambda k, o, s: (sign(o, MESSAGE), MESSAGE), id="signed-by-another-key"),
        pytest.param(lambda k, o, s: (sign(k, MESSAGE + b"x"), MESSAGE), id="signature-of-another-message"),
        pytest.param(lambda k, o, s: ("not base64!", MESSAGE), id="not-base64"),
        pytest.param(lambda k, o, s: (s[:-2], MESSAGE), id="padding-removed"),
        pytest.param(lambda k, o, s: (s + "AAAA", MESSAGE), id="signature-extended"),
        pytest.param(lambda k, o, s: (_b64(base64.b64decode(s)[:63]), MESSAGE), id="signature-truncated"),
        pytest.param(lambda k, o, s: (_b64(bytes(64)), MESSAGE), id="all-zero-signature"),
        pytest.param(lambda k, o, s: ("é" * 88, MESSAGE), id="non-ascii"),
        pytest.param(lambda k, o, s: ("", MESSAGE), id="empty-string"),
    ],
)
def test_verify_signature_raises_signature_invalid_for_a_forgery(
    key: Ed25519PrivateKey, other_key: Ed25519PrivateKey, forge: Forgery
) -> None:
    genuine = sign(key, MESSAGE)
    signature, message = forge(key, other_key, genuine)
    with pytest.raises(SignatureInvalid) as caught:
        verify_signature(key.public_key(), signature, message)
    assert isinstance(caught.value, GatewayError)


def test_verify_signature_raises_signature_invalid_under_another_public_key(key: Ed25519PrivateKey, other_key: Ed25519PrivateKey) -> None:
    with pytest.raises(SignatureInvalid):
        verify_signature(other_key.public_key(), sign(key, MESSAGE), MESSAGE)
