"""A poisoning finding, and how its excerpt shows hidden characters. Pure."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from gateway.protocol.names import INVISIBLE_RANGES


@dataclass(frozen=True, slots=True)
class Finding:
    technique: str
    path: str  # where in the descriptor, e.g. "inputSchema.properties.path.description"
    start: int
    end: int
    excerpt: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "path": self.path,
            "span": [self.start, self.end],
            "excerpt": self.excerpt,
            "reason": self.reason,
        }


def character_class(codes: Iterable[int]) -> str:
    """A regex class of `codes` (ascending) written as ranges: the regex module does not merge a
    list of single characters, and tests each in turn."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges) + "]"


EXCERPT = 60


_HIDDEN_CHARACTER: Final = re.compile(
    character_class([*range(0x20), *range(0x7F, 0xA0), *(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1))])
)


def _show_code(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def visible(text: str) -> str:
    """`text` with every control and invisible character written as <U+XXXX>."""
    return _HIDDEN_CHARACTER.sub(_show_code, text)


def excerpt(text: str, start: int, end: int) -> str:
    return visible(text[max(0, start - 10) : min(len(text), end + 10)])[: EXCERPT * 2]
