"""Encoded forms of an argument's text: what hex, base64 (standard and URL-safe, padded or not,
line-wrapped) and character-code decoding reveals, so that `provenance` can look a secret up
however it was encoded. Pure.

Candidates are found in linear time: the text is mapped to a string of character classes
(`str.translate`) and scanned for runs (a literal-prefix regex), so prose costs one pass per
decoder. Each candidate is decoded once (hex at both parities, base64 at all four alignments
unless the first gives text); a decoded form is traced when it is text (strict UTF-8 without
control characters), or, for binary, its runs of at least `_MIN_SEGMENT` printable ASCII
characters (a secret embedded among other bytes). Decoded forms are decoded again, up to
`MAX_LAYERS` deep; a form at that depth that still decodes, or more than `MAX_DECODED` forms
for one argument value, yields `TOO_DEEP`: the caller fails closed to the coarse taint.
"""

from __future__ import annotations

import binascii
import re
import string
from collections.abc import Iterable, Iterator
from typing import Any, Final
from urllib.parse import unquote

from gateway.labels.fingerprints import TOO_DEEP

#: Layers of encoding traced below the argument's own text (base64 of hex is two); a form at
#: this depth that decodes once more makes the taint coarse.
MAX_LAYERS: Final = 2
#: Decoded forms traced for one argument value (every layer); past it the taint is coarse.
MAX_DECODED: Final = 256
_MIN_TEXT: Final = 6  # a decoded text shorter than this is not traced (shorter than a token)
_MIN_SEGMENT: Final = 10  # printable ASCII run taken from binary; random bytes rarely hold one
_MIN_CODES: Final = 8  # character codes in a list, and hex byte pairs with separators

_B64_CHARS: Final = string.ascii_letters + string.digits + "+/-_\r\n"
_B64_CLASSES: Final = str.maketrans({chr(c): "b" if chr(c) in _B64_CHARS else "=" if chr(c) == "=" else "." for c in range(128)})
_B64_RUN: Final = re.compile("b" * 12 + "b*=*")  # a literal prefix: the scan runs at C speed
_HEX_CLASSES: Final = str.maketrans(
    {chr(c): "h" if chr(c) in string.hexdigits else "s" if chr(c) in " :,;-\t\r\n" else "." for c in range(128)}
)
_HEX_SPACED: Final = re.compile(rf"hh(?:s{{1,4}}hh){{{_MIN_CODES - 1},}}")
_CODE_CLASSES: Final = str.maketrans(
    {chr(c): "d" if chr(c) in string.digits else "s" if chr(c) in " ,;\t\r\n" else "." for c in range(128)}
)
_CODES: Final = re.compile(rf"d{{1,7}}(?:s{{1,3}}d{{1,7}}){{{_MIN_CODES - 1},}}")
_DIGIT: Final = re.compile(r"\d")
_ALL_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_NOT_HEX: Final = re.compile(r"[^0-9a-fA-F]+")
#: What base64 of text has and a word of prose lacks: a digit, a '+/-_', or a capital after a
#: small letter (the first 6 bits of ASCII letters encode as Y, Z, a-e; the next as G, H, W, X).
_ENCODED_LOOK: Final = re.compile(r"[0-9+/\-_]|[a-z][A-Z]")
_URL_SAFE: Final = str.maketrans("-_", "+/", "\r\n")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_PRINTABLE_MASK: Final = bytes(0x70 if 0x20 <= b < 0x7F else 0 for b in range(256))
_SEGMENT_START: Final = b"p" * _MIN_SEGMENT
_TEXT_RUNS: Final = re.compile(rf"[ -~]{{{_MIN_SEGMENT},}}")


def expand(texts: Iterable[str], code_lists: Iterable[list[int]] = ()) -> Iterator[Any]:
    """Each text, then every form decoding it reveals (and the text of each list of character
    codes), depth first; `TOO_DEEP` last when a form at `MAX_LAYERS` still decodes or more than
    `MAX_DECODED` forms were found (the caller stops and fails closed)."""
    budget = MAX_DECODED
    stack: list[tuple[str, int]] = [(text, 0) for text in reversed(list(texts))]
    for codes in code_lists:
        stack.extend((text, 1) for text in from_codes(codes))
    while stack:
        text, layer = stack.pop()
        yield text
        for decoded in _decoded(text):
            budget -= 1
            if layer >= MAX_LAYERS or budget < 0:
                yield TOO_DEEP
                return
            stack.append((decoded, layer + 1))


def from_codes(codes: list[int]) -> list[str]:
    """The text a list of character codes spells (an argument sent as a JSON array of ints)."""
    if len(codes) < _MIN_CODES or not all(0 <= c <= 0x10FFFF for c in codes):
        return []
    return _texts_of("".join(map(chr, codes)))


def _decoded(text: str) -> Iterator[str]:
    if "%" in text:
        text = unquote(text)  # a value in a URL query: '%2B' and '%3D' are base64's '+' and '='
    classes = text.translate(_B64_CLASSES)
    for match in _B64_RUN.finditer(classes):
        yield from _run(text[match.start() : match.end()].strip())
    # hex of text has a digit in nearly every byte (ASCII is 0x20-0x7e), and codes are digits
    if len(text) >= 3 * _MIN_CODES - 1 and len(_DIGIT.findall(text)) >= _MIN_CODES:
        spaced = text.replace("0x", "  ").replace("0X", "  ").replace("\\x", "  ")  # same length
        for match in _HEX_SPACED.finditer(spaced.translate(_HEX_CLASSES)):
            yield from _from_hex(spaced[match.start() : match.end()])
        for match in _CODES.finditer(text.translate(_CODE_CLASSES)):
            numbers = [int(n) for n in re.findall(r"\d+", text[match.start() : match.end()])]
            yield from from_codes(numbers)


def _run(run: str) -> Iterator[str]:
    """A run of base64 characters: hex if it is only hex digits (and long enough), else base64."""
    body = run.translate(_URL_SAFE).rstrip("=")
    bare = body[2:] if body[:2] in ("0x", "0X") else body
    if _ALL_HEX.fullmatch(bare):
        if len(bare) >= 2 * _MIN_CODES:
            yield from _from_hex(bare)
        return
    if not _ENCODED_LOOK.search(run):
        return  # a long word of prose
    for offset in range(4):
        chunk = body[offset:]
        if len(chunk) % 4 == 1:
            chunk = chunk[:-1]  # a trailing character that cannot complete a byte
        try:
            raw = binascii.a2b_base64(chunk + "=" * (-len(chunk) % 4))
        except (binascii.Error, ValueError):
            continue
        found, whole = _texts_of_bytes(raw)
        yield from found
        if whole:
            return  # aligned: the run was base64 of text


def _from_hex(region: str) -> Iterator[str]:
    digits = _NOT_HEX.sub("", region)
    for parity in (0, 1) if len(digits) > 2 * _MIN_CODES else (0,):
        pairs = digits[parity:]
        found, whole = _texts_of_bytes(bytes.fromhex(pairs[: len(pairs) & ~1]))
        yield from found
        if whole:
            return


def _texts_of_bytes(raw: bytes) -> tuple[list[str], bool]:
    """The text `raw` is (and True), or its printable ASCII segments (and False)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if not _CONTROL.search(text):
            return ([text] if len(text) >= _MIN_TEXT else []), True
    mask = raw.translate(_PRINTABLE_MASK)
    out = []
    start = mask.find(_SEGMENT_START)
    while start >= 0:
        end = mask.find(b"\0", start)
        end = len(raw) if end < 0 else end
        out.append(raw[start:end].decode("ascii"))
        start = mask.find(_SEGMENT_START, end)
    return out, False


def _texts_of(text: str) -> list[str]:
    if not _CONTROL.search(text):
        return [text] if len(text) >= _MIN_TEXT else []
    return _TEXT_RUNS.findall(text)
