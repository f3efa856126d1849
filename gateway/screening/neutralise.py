"""Neutralisation of terminal escapes in forwarded text (results, errors, notifications): the
text stays readable and can no longer drive a terminal. Pure."""

from __future__ import annotations

import re
from typing import Any, Final

from gateway.protocol import jsonrpc

#: On encoded JSON: orjson and the standard library write ESC as \u001b, backspace as \b and
#: CR as \r, and C1 controls as raw UTF-8 (orjson) or \u0080..\u009f (ensure_ascii).
_CONTROL_IN_JSON: Final = re.compile(rb"\\(?:u00(?:1[bB]|0[8dD]|[89][0-9a-fA-F])|b|r(?!\\n))|\xc2[\x80-\x9f]")
_NEUTRAL: Final = {0x1B: "\u241b", 0x08: "\u2408", **{code: "\ufffd" for code in range(0x80, 0xA0)}}
_LONE_CR: Final = re.compile(r"\r(?!\n)")


def neutralise_text(text: str) -> str:
    """ESC becomes U+241B and backspace U+2408 (visible symbols), a carriage return not followed
    by a line feed U+240D, and C1 controls U+FFFD: the text stays readable and can no longer
    drive a terminal (move the cursor, overprint, hyperlink, write the clipboard)."""
    text = text.translate(_NEUTRAL)
    return _LONE_CR.sub("\u240d", text) if "\r" in text else text


def _neutralise(value: Any) -> Any:
    if type(value) is str:
        return neutralise_text(value)
    if type(value) is dict:
        return _neutralise_members(value)
    if type(value) is list:
        return [_neutralise(v) for v in value]
    return value


def _neutralise_members(members: dict[str, Any]) -> dict[str, Any]:
    """Neutralised keys must not collide and drop a member: a key that changes and lands on a
    name already used gets the first free suffix "#2", "#3", ... (keys that need no change
    keep their names; order is kept)."""
    renamed = {key: neutralise_text(key) for key in members}
    taken = {key for key, new in renamed.items() if new == key}
    out: dict[str, Any] = {}
    for key, member in members.items():
        new = renamed[key]
        if new != key:
            candidate, number = new, 1
            while candidate in taken:
                number += 1
                candidate = f"{new}#{number}"
            taken.add(candidate)
            new = candidate
        out[new] = _neutralise(member)
    return out


def _holds_terminal_control(line: bytes) -> bool:
    if b"\\u00" not in line and b"\\b" not in line and b"\\r" not in line and b"\xc2" not in line:
        return False  # substring searches are much faster than the regex, and decide most lines
    for match in _CONTROL_IN_JSON.finditer(line):
        start = match.start()
        if line[start] != 0x5C:
            return True  # a raw C1 control
        first = start
        while first and line[first - 1] == 0x5C:
            first -= 1
        if (start - first) % 2 == 0:
            return True  # after an even run of backslashes (escaped backslashes), this one starts an escape
    return False


def neutralise_line(line: bytes) -> bytes:
    """An encoded JSON message with every terminal escape, backspace and lone carriage return
    neutralised; the same object when there is none (a few substring searches over the bytes:
    the common case costs almost nothing)."""
    if not _holds_terminal_control(line):
        return line
    return jsonrpc.encode(_neutralise(jsonrpc.decode(line)))
