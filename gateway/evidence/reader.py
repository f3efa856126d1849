"""`airlock inspect`: a flight log as a readable table or JSON lines, filtered. Raw stored
arguments and results are never printed unless asked for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

RAW_MEMBERS = ("arguments", "response")


@dataclass(frozen=True, slots=True)
class EntryFilter:
    session: str | None = None
    tool: str | None = None
    decision: str | None = None
    kind: str | None = None

    def accepts(self, entry: dict[str, Any]) -> bool:
        return (
            (self.session is None or entry.get("session") == self.session)
            and (self.tool is None or entry.get("tool") == self.tool)
            and (self.decision is None or entry.get("decision") == self.decision)
            and (self.kind is None or entry.get("kind") == self.kind)
        )


def read_entries(lines: Iterable[bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(line number, entry) per line; None for a line that is not a JSON object."""
    for number, line in enumerate(lines, start=1):
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, None
            continue
        yield number, entry if type(entry) is dict else None


def redact(entry: dict[str, Any], show_raw: bool) -> dict[str, Any]:
    data = entry.get("data")
    if show_raw or type(data) is not dict or not any(k in data for k in RAW_MEMBERS):
        return entry
    return {**entry, "data": {k: ("<stored; --show-raw prints it>" if k in RAW_MEMBERS else v) for k, v in data.items()}}


COLUMNS = (("seq", 5), ("ts", 27), ("kind", 10), ("tool", 24), ("decision", 11), ("rule", 28), ("hash", 12))


def table_header() -> str:
    return "  ".join(name.ljust(width) for name, width in COLUMNS).rstrip()


def table_row(entry: dict[str, Any]) -> str:
    cells = []
    for name, width in COLUMNS:
        value = entry.get(name)
        text = "" if value is None else str(value)
        if name == "hash":
            text = text[:12]
        cells.append(text[:width].ljust(width))
    return "  ".join(cells).rstrip()


def redact_receipt(receipt: dict[str, Any], show_raw: bool) -> dict[str, Any]:
    """A receipt with raw values hidden. Hiding them changes the entry, so such a receipt no
    longer verifies: say so instead of printing something that looks checkable."""
    entry = receipt["entry"]
    shown = redact(entry, show_raw)
    if shown is entry:
        return receipt
    return {**receipt, "entry": shown, "note": "raw values hidden: pass --show-raw for a receipt that verifies"}
