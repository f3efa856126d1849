"""Tool names: the form they are matched in, and the checks a name must pass; and the name a
server goes by in rules and pins (`server_identity`). Pure.

MCP (2025-11-25, "Tool names") says a tool name SHOULD be 1 to 128 characters of ASCII letters,
digits, `_`, `-` and `.`. Airlock enforces that: a name outside the alphabet cannot be matched
reliably by a human-written rule (a fullwidth or Cyrillic look-alike, a zero-width split, a bidi
override) and is denied with the reason. Rules are matched against the NFKC, case-folded form,
so a look-alike that survives normalisation still hits the rule it imitates.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

MAX_TOOL_NAME: Final = 128
_ALPHABET: Final = re.compile(r"[A-Za-z0-9_.\-]{1,128}")

#: Characters that render as nothing or reorder text: zero-width, joiners, bidi controls,
#: Unicode tag characters, variation selectors, the BOM, soft hyphen, invisible operators, and
#: every other format character (Cf) of Unicode 15.1, so that a scan can find them all with one
#: regex character class (`tests/unit/test_scan.py` checks the table against the running Unicode
#: database over all planes; `is_invisible` also asks the database, for characters added later).
INVISIBLE_RANGES: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE007F),
    (0xE0100, 0xE01EF),
)
_BIDI: Final = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})


def normalise(name: str) -> str:
    """The form names and rule patterns are compared in: NFKC, then case-folded."""
    if name.isascii():  # NFKC leaves ASCII as it is, and casefold() is lower() there
        return name.lower()
    return unicodedata.normalize("NFKC", name).casefold()


def is_invisible(char: str) -> bool:
    """True for a character that renders as nothing or changes text direction (format
    characters, category Cf, included)."""
    code = ord(char)
    for low, high in INVISIBLE_RANGES:
        if low <= code <= high:
            return True
    return unicodedata.category(char) == "Cf"


def is_bidi_control(char: str) -> bool:
    return ord(char) in _BIDI


def name_problem(name: str) -> str | None:
    """Why `name` is not an acceptable tool name, or None when it is."""
    if _ALPHABET.fullmatch(name):
        return None
    if not name:
        return "the tool name is empty"
    if len(name) > MAX_TOOL_NAME:
        return f"the tool name is {len(name)} characters long (MCP allows at most {MAX_TOOL_NAME})"
    for index, char in enumerate(name):
        if is_bidi_control(char):
            return f"the tool name contains a bidi control U+{ord(char):04X} at index {index}"
        if is_invisible(char):
            return f"the tool name contains an invisible character U+{ord(char):04X} at index {index}"
    for index, char in enumerate(name):
        if not _ALPHABET.fullmatch(char):
            what = unicodedata.name(char, f"U+{ord(char):04X}")
            return (
                f"the tool name contains {what!s} (U+{ord(char):04X}) at index {index}; MCP tool names use only "
                "ASCII letters, digits, '_', '-' and '.'"
            )
    return "the tool name is not a valid MCP tool name"  # pragma: no cover - the loops find the character


def server_identity(name: str) -> str:
    """A server's name as rules and pins use it: normalised, runs of characters other than
    a-z, 0-9, '_' and '-' made one '-' (so `server.tool` splits at the first dot)."""
    out = []
    for char in normalise(name):
        ok = char.isascii() and (char.isalnum() or char in "_-")
        if ok:
            out.append(char)
        elif not out or out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-") or "upstream"
