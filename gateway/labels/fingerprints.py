"""Fingerprints of values, in a normal form (NFKC, case-folded, invisible and format characters
removed, whitespace folded): the exact, token and run fingerprints that `provenance` keeps per
result and looks up per argument (its docstring says what each kind catches), and what only a
private or secret value leaves (`_confidential_prints`): its value and tokens reversed, the
8-character pieces holding a digit of its key-like runs (16 or more letters and digits, mixed),
and its letters-only words of 12 or more letters that are not prose (a capital after a small
letter, 20 or more letters, or assigned with '=' or ':'), forwards and reversed. The argument
side hashes every such piece and every letter run of 12 or more letters it holds. Pure.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from itertools import pairwise
from typing import Any, Final
from urllib.parse import unquote

from gateway.protocol.names import is_invisible

_RUN: Final = 12
_RUN_WINDOW: Final = 4
_RUN_SALT: Final = 0x5A17_0C0D_E5EE_D5  # keeps run hashes apart from token hashes
_SHINGLE: Final = 6
_SHINGLE_WINDOW: Final = 4
_MIN_EXACT: Final = 4
_PIECE: Final = 8  # a piece of a key: any 8 characters of it that hold a digit
_PIECE_SALT: Final = 0x3C6E_F372_FE94_F82B
_MIN_KEY: Final = 16
_WORD_SALT: Final = 0x2545_F491_4F6C_DD1D  # keeps secret words apart from whole values and tokens
_MIN_WORD: Final = 12
_LONG_WORD: Final = 20
MAX_TEXT: Final = 1 << 20  # characters of one value fingerprinted; beyond it, the session saturates
MAX_RESULT_TEXT: Final = 4 << 20  # characters of one result fingerprinted; beyond it, the session saturates
MAX_ARGUMENT_TEXT: Final = 256 << 10  # characters of one argument traced; beyond it, it carries all the session saw
_SEPARATORS: Final = str.maketrans({c: " " for c in "\"'`()<>[]{},;|\\*!"})
#: Outside ASCII: anything but letters, digits and the identifier marks separates tokens (curly
#: quotes, guillemets, CJK brackets, dashes, ideographic stops).
_UNICODE_SEPARATORS: Final = re.compile(r"[^\w@/:.\-+=%#?&~]+")
_PARTS: Final = re.compile(r"[/?&=#:@+]+")
_URL_PARTS: Final = re.compile(r"[/?&=#:+]+")
_IDENTIFIER_MARK: Final = re.compile(r"[0-9@/:._\-+=]")
_NOT_ALNUM: Final = re.compile(r"[\W_]+")
_DIGIT: Final = re.compile(r"\d")
_TWO_DIGITS: Final = re.compile(r"\d\D*\d")
_WORDS: Final = re.compile(r"[^\W_]+")
_TRIM: Final = ".,:;!?-_*~"
_LETTER_RUN: Final = re.compile(rf"(?<![a-z])[a-z]{{{_MIN_WORD},}}")  # from a run's start only: fails fast inside words
_SECRET_WORD: Final = re.compile(rf"(?<![A-Za-z])[A-Za-z]{{{_MIN_WORD},}}")
_CAMEL: Final = re.compile(r"[a-z][A-Z]")
_KEY_RUN: Final = re.compile(rf"[a-z0-9_-]{{{_MIN_KEY},}}")
_TRANSITION: Final = re.compile(r"[a-z](?=\d)|\d(?=[a-z])")
#: The piece form: letters and digits kept, '-' and '_' dropped, anything else a break.
_PIECE_FORM: Final = str.maketrans(
    {chr(c): chr(c) if chr(c).isdigit() or "a" <= chr(c) <= "z" else None if chr(c) in "-_" else " " for c in range(128)}
)


#: Characters that take no space or show blank, dropped from the normal form so that one
#: interleaved in a value does not hide it: combining marks, private-use and unassigned code
#: points, format characters, and the blank Braille pattern.
_DROPPED_CATEGORIES: Final = frozenset({"Mn", "Me", "Mc", "Co", "Cn", "Cf"})


def normalise_value(text: str) -> str:
    """The form values are compared in: compatibility-decomposed (NFKD), case-folded, with
    invisible, combining, private-use and unassigned characters removed, whitespace folded."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        if not text.isascii():
            category = unicodedata.category
            text = "".join(c for c in text if not (is_invisible(c) or category(c) in _DROPPED_CATEGORIES or c == "\u2800"))
    return " ".join(text.casefold().split())


def _tokens(norm: str, min_token: int, *, any_part: bool = True) -> Iterator[str]:
    """Identifier-like tokens, and their parts between URL delimiters. `any_part=False` (the
    result side) keeps only parts with a digit (a key in a URL) or whole addresses, not bare
    host names: the domain of the user's own address is in every mail, and would taint every
    address there."""
    words = norm.translate(_SEPARATORS).split() if norm.isascii() else _UNICODE_SEPARATORS.split(norm)
    for raw in words:
        if len(raw) < min_token or raw.isalpha():
            continue  # most words of prose, at C speed
        token = raw.strip(_TRIM)
        if len(token) < min_token or not _IDENTIFIER_MARK.search(token):
            continue
        yield token
        if "%" in token and "%" not in (decoded := unquote(token)) and decoded != token:  # one level here; argument_prints does more
            yield from _tokens(normalise_value(decoded), min_token, any_part=any_part)
        parts = _PARTS.split(token)
        if "@" in token:
            parts += _URL_PARTS.split(token)  # an address inside a URL (mailto:, ?to=), kept whole
        for part in parts:
            part = part.strip(_TRIM)
            if (
                part != token
                and len(part) >= min_token
                and ((_DIGIT.search(part) or "@" in part) if not any_part else _IDENTIFIER_MARK.search(part))
            ):
                yield part


def _shingles(norm: str) -> list[int]:
    """Hashes of every run of `_SHINGLE` consecutive words (letters and digits)."""
    words = _WORDS.findall(norm)
    if len(words) < _SHINGLE:
        return []
    return list(map(hash, zip(*(words[i:] for i in range(_SHINGLE)), strict=False)))


def _winnow(hashes: list[int], window: int) -> set[int]:
    """One hash per `window` consecutive ones (the smallest): a run shared by two texts that
    spans a whole window selects the same hash on both sides."""
    if len(hashes) <= window:
        return {min(hashes)} if hashes else set()
    return {min(hashes[i : i + window]) for i in range(len(hashes) - window + 1)}


def _digit_windows(skeleton: str) -> list[int]:
    """Hashes of the `_RUN`-character windows of the letters and digits that hold at least two
    digits (identifier runs: IBANs, card and account numbers, codes; not prose)."""
    digits = [m.start() for m in _DIGIT.finditer(skeleton)]
    if len(digits) < 2 or len(skeleton) < _RUN:
        return []
    last = len(skeleton) - _RUN
    # windows [i, i + _RUN) holding both digits of a pair: i in [second - _RUN + 1, first]
    spans = ((max(0, second - _RUN + 1), min(first, last)) for first, second in pairwise(digits))
    salt = _RUN_SALT
    return [hash(skeleton[i : i + _RUN]) ^ salt for i in _union(spans)]


def _union(spans: Iterable[tuple[int, int]]) -> Iterator[int]:
    """Every integer of the union of closed spans `(low, high)` given in order of `low`, once
    each, in order (one pass: no set of starts to build and sort)."""
    low = high = -2
    for start, end in spans:
        if end < start:
            continue
        if start > high + 1:
            if high >= low >= 0:
                yield from range(low, high + 1)
            low, high = start, end
        elif end > high:
            high = end
    if high >= low >= 0:
        yield from range(low, high + 1)


def _secret_words(text: str) -> Iterator[str]:
    """Letters-only words of a confidential value that are not ordinary prose: a passphrase
    (`CorrectHorseBatteryStaple`: a capital after a small letter), a run of 20 or more letters,
    or a value assigned with '=' or ':' (`PASSPHRASE=correcthorsebattery`)."""
    for match in _SECRET_WORD.finditer(text):
        word = match.group()
        if len(word) >= _LONG_WORD or _CAMEL.search(word) or text[match.start() - 1 : match.start()] in ("=", ":"):
            yield word.casefold()


def _keys(norm: str) -> Iterator[str]:
    """The piece forms of a value's key-like runs: 16 or more letters and digits (with '-' and
    '_' dropped), letters and digits mixed (four changes between them: a random key, not
    'report-2026-q1'). Not runs of digits: IBANs of one bank share its 8-digit code, and card
    numbers their issuer's prefix (their 12-character runs are fingerprinted, see `source_prints`)."""
    for match in _KEY_RUN.finditer(norm):
        key = match.group().replace("-", "").replace("_", "")
        digits = sum(map(key.count, "0123456789"))
        if len(key) >= _MIN_KEY and digits >= 2 and len(_TRANSITION.findall(key)) >= 4:
            yield key


def _piece_hashes(run: str) -> list[int]:
    """Hashes of the `_PIECE`-character windows of `run` that hold a digit."""
    last = len(run) - _PIECE
    if last < 0:
        return []
    spans = ((max(0, at - _PIECE + 1), min(at, last)) for at in (m.start() for m in _DIGIT.finditer(run)))
    salt = _PIECE_SALT
    return [hash(run[i : i + _PIECE]) ^ salt for i in _union(spans)]


def _pieces(norm: str) -> list[int]:
    """Every piece hash of an argument: the windows holding a digit of each run of letters and
    digits (the piece form)."""
    if not _DIGIT.search(norm):
        return []
    form = norm.translate(_PIECE_FORM)
    out: list[int] = []
    end = 0
    for match in _DIGIT.finditer(form):
        at = match.start()
        if at < end:
            continue
        start = form.rfind(" ", 0, at) + 1
        end = form.find(" ", at)
        end = len(form) if end < 0 else end
        if end - start >= _PIECE:
            out += _piece_hashes(form[start:end])
    return out


def _confidential_prints(norm: str, text: str, tokens: list[str], exact: bool) -> set[int]:
    """What only a private or secret value leaves: its value, tokens and secret words
    reversed, its secret words, and the pieces of its keys (both ways round)."""
    prints = {hash(t[::-1]) for t in tokens}
    if exact and len(norm) >= _MIN_EXACT:
        prints.add(hash(norm[::-1]))
    salt = _WORD_SALT
    for word in _secret_words(text):
        prints.add(hash(word) ^ salt)
        prints.add(hash(word[::-1]) ^ salt)
    for key in _keys(norm):
        prints.update(_piece_hashes(key))
        prints.update(_piece_hashes(key[::-1]))
    return prints


def source_prints(norm: str, min_token: int, *, exact: bool, confidential: bool = False, text: str = "") -> set[int]:
    """The fingerprints a result value leaves; `confidential` (the value is private or secret,
    `text` its original form) adds `_confidential_prints`."""
    prints: set[int] = set()
    if exact and len(norm) >= _MIN_EXACT:
        prints.add(hash(norm))
    tokens = list(_tokens(norm, min_token, any_part=False))
    prints.update(map(hash, tokens))
    if confidential:
        prints |= _confidential_prints(norm, text or norm, tokens, exact)
    digits = _digit_windows(_NOT_ALNUM.sub("", norm)) if _TWO_DIGITS.search(norm) else []
    if digits:
        prints |= _winnow(digits, _RUN_WINDOW)
    shingles = _shingles(norm)
    if shingles:
        prints |= _winnow(shingles, _SHINGLE_WINDOW)
    return prints


#: Yielded by `argument_prints` for a value percent-encoded more times than it decodes.
TOO_DEEP: Final = object()


def argument_prints(norm: str, min_token: int, decodings: int = 3, *, pieces: bool = True) -> Iterator[Any]:
    """Every fingerprint an argument value could share with a result (`argument_print_set`),
    or `TOO_DEEP` when it is percent-encoded more times than are decoded."""
    found = argument_print_set(norm, min_token, decodings, pieces=pieces)
    if found is None:
        yield TOO_DEEP  # more layers than are traced: the caller fails closed
        return
    yield from found


def argument_print_set(norm: str, min_token: int, decodings: int = 3, *, pieces: bool = True) -> set[int] | None:
    """Every fingerprint an argument value could share with a result (also of its
    percent-decoded forms, up to three levels: a value in a URL query); None when there are
    more levels. `pieces=False` leaves out the letter runs and key pieces (for measuring their
    cost only)."""
    out: set[int] = set()
    if "%" in norm:
        decoded = normalise_value(unquote(norm))
        if decoded != norm:
            inner = argument_print_set(decoded, min_token, decodings - 1, pieces=pieces) if decodings else None
            if inner is None:
                return None
            out = inner
    out.add(hash(norm))
    out.update(map(hash, _tokens(norm, min_token)))
    if _TWO_DIGITS.search(norm):
        out.update(_digit_windows(_NOT_ALNUM.sub("", norm)))
    out.update(_shingles(norm))
    if pieces:
        if len(norm) >= _MIN_WORD:
            salt = _WORD_SALT
            out.update(hash(word) ^ salt for word in _LETTER_RUN.findall(norm))
        out.update(_pieces(norm))
    return out
