"""Character techniques of the poisoning scan: invisible and format characters (joiners a script
or an emoji sequence needs excepted), tag characters, bidi controls, terminal escapes and other
control characters. Pure."""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from gateway.protocol.names import INVISIBLE_RANGES, is_bidi_control
from gateway.screening.findings import Finding, character_class, excerpt

_INVISIBLE_RUN: Final = re.compile(character_class(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1)) + "+")
#: The invisible characters str.isprintable() accepts (variation selectors, fillers, CGJ ...):
#: the only ones a printable string can hold.
_PRINTABLE_INVISIBLE_RUN: Final = re.compile(
    character_class(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1) if chr(c).isprintable()) + "+"
)

#: One pass finds escape sequences and control characters; a control character that ends an
#: escape (BEL after OSC) belongs to that escape's finding only. OSC and string bodies stop at
#: the first control character, so a control hidden inside one is reported on its own.
_TERMINAL: Final = re.compile(
    r"(?P<osc>(?:\x1b\]|\x9d)[^\x00-\x1f\x7f-\x9f]*(?:\x07|\x1b\\|\x9c)?)"
    r"|(?P<csi>(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?)"
    r"|(?P<string>(?:\x1b[P^_X]|[\x90\x98\x9e\x9f])[^\x00-\x1f\x7f-\x9f]*(?:\x1b\\|\x9c)?)"
    r"|(?P<esc>\x1b[ -/]*[0-~]?)"
    r"|(?P<c1>[\x80-\x9f])"
    r"|(?P<control>[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]|\r(?!\n))"
)
CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what _TERMINAL can start with, but LF and tab
PADDING: Final = re.compile(r"\s{80,}")  # Unicode whitespace: NBSP, U+2000..200A, U+3000 ...
SPACES: Final = " " * 80

#: Code points an emoji sequence may join with ZWJ or follow with VS15/VS16 (the blocks of
#: Extended_Pictographic, which `unicodedata` does not expose).
_PICTOGRAPHIC: Final = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2190, 0x21FF),
    (0x2300, 0x23FF),
    (0x24C2, 0x24C2),
    (0x25A0, 0x27BF),
    (0x2900, 0x297F),
    (0x2B00, 0x2BFF),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3297),
    (0x3299, 0x3299),
    (0x1F000, 0x1FAFF),
)
#: Scripts whose orthography uses ZWNJ/ZWJ between letters (Persian, Urdu, Hindi, Bengali ...).
_JOINING_SCRIPTS: Final = (
    ("arabic", 0x0600, 0x08FF),
    ("arabic", 0xFB50, 0xFDFF),
    ("arabic", 0xFE70, 0xFEFC),
    ("indic", 0x0900, 0x0DFF),
)
_KEYCAP_BASES: Final = frozenset("0123456789#*")
_FLAG_TAGS: Final = re.compile("[\U000e0030-\U000e0039\U000e0061-\U000e007a]{2,6}\U000e007f")  # 🏴 + gbsct + cancel


def _in(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _script(char: str) -> str | None:
    if not char or unicodedata.category(char)[0] not in "LM":
        return None
    code = ord(char)
    return next((name for name, low, high in _JOINING_SCRIPTS if low <= code <= high), None)


def _is_legitimate_joiner(text: str, start: int, end: int) -> bool:
    """True when the invisible run text[start:end] is part of well-formed text: one ZWJ/ZWNJ
    between two letters of a script that needs it; one VS15/VS16 after a pictograph (or in a
    keycap); ZWJ, optionally after VS16, between two pictographs; an emoji subdivision flag's
    tags. More than that, or the same characters between ASCII letters, hide something."""
    run = text[start:end]
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    if run in ("\u200c", "\u200d") and (script := _script(before)) is not None and script == _script(after):
        return True
    if run in ("\ufe0f", "\ufe0e"):
        return bool(before) and (_in(ord(before), _PICTOGRAPHIC) or (before in _KEYCAP_BASES and after == "\u20e3"))
    if run in ("\u200d", "\ufe0f\u200d"):
        return bool(before) and bool(after) and _in(ord(before), _PICTOGRAPHIC) and _in(ord(after), _PICTOGRAPHIC)
    return before == "\U0001f3f4" and _FLAG_TAGS.fullmatch(run) is not None


def invisible_findings(out: list[Finding], text: str, path: str, printable: bool) -> None:
    for match in (_PRINTABLE_INVISIBLE_RUN if printable else _INVISIBLE_RUN).finditer(text):
        start, end = match.span()
        if _is_legitimate_joiner(text, start, end):
            continue
        run = match.group()
        tags = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
        if tags:
            out.append(Finding("tag-characters", path, start, end, excerpt(text, start, end), f"Unicode tag characters spell {tags!r}"))
        elif any(is_bidi_control(c) for c in run):
            out.append(Finding("bidi", path, start, end, excerpt(text, start, end), "bidi control characters reorder the text"))
        else:
            out.append(Finding("invisible", path, start, end, excerpt(text, start, end), f"{end - start} invisible character(s)"))


_OSC_REASONS: Final = {"8": "an OSC 8 terminal hyperlink", "52": "an OSC 52 clipboard write"}


def terminal_findings(out: list[Finding], text: str, path: str) -> None:
    for match in _TERMINAL.finditer(text):
        kind = match.lastgroup
        seq = match.group()
        start, end = match.span()
        if kind == "control":
            technique = "control"
            if seq == "\r":
                why = "a carriage return not followed by a line feed (a terminal overprints the line with what follows)"
            else:
                why = f"control character U+{ord(seq):04X}"
        else:
            technique = "terminal-escape"
            body = seq[2:] if seq[0] == "\x1b" else seq[1:]
            if kind == "osc":
                why = _OSC_REASONS.get(body.split(";", 1)[0], "an OSC terminal escape")
            elif kind == "csi":
                why = "an ANSI CSI escape (colours, cursor movement, erasing text)"
            elif kind == "string":
                why = "a terminal control string (DCS, SOS, PM or APC)"
            elif kind == "c1":
                why = f"C1 control character U+{ord(seq):04X}"
            else:
                why = "a terminal escape sequence"
        out.append(Finding(technique, path, start, end, excerpt(text, start, end), why))
