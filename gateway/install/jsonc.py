"""JSONC, read and edited in place: comments and trailing commas blanked out with the offsets kept
(`strip_jsonc`), a document parsed (`parse_document`), the servers object found (`servers_of`) and
where each server's value is in the text (`server_spans`), the smallest edits that turn one entry
into another (`entry_edits`) and their application with everything else kept byte for byte
(`splice`). Pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.install.errors import ClientConfigInvalid, ClientConfigShape

_STRING: Final = r'"(?:[^"\\]|\\.)*"'
_COMMENTS: Final = re.compile(_STRING + r"|//[^\n]*|/\*.*?\*/|/\*", re.DOTALL)
_TRAILING_COMMA: Final = re.compile(_STRING + r"|,(?=\s*[}\]])")
_BLANK: Final = re.compile(r"[^\r\n]")


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def strip_jsonc(text: str, source: str = "<text>") -> tuple[str, bool]:
    """JSON text with the same offsets as `text`: comments and trailing commas of JSONC become
    spaces (line breaks kept), so JSON errors point at the right line and column. Strings are
    left alone, `//` inside a URL included. The flag says whether there were comments.

    Raises:
        ClientConfigInvalid: an unterminated block comment.
    """
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        token = match.group()
        if token.startswith('"'):
            return token
        if token == "/*":
            raise ClientConfigInvalid(source, f"unterminated /* comment at {_position(text, match.start())}")
        found = True
        return _BLANK.sub(" ", token)

    without_comments = _COMMENTS.sub(blank, text)
    cleaned = _TRAILING_COMMA.sub(lambda m: m.group() if m.group().startswith('"') else " ", without_comments)
    return cleaned, found


def has_comment(text: str) -> bool:
    """Whether `text` holds a `//` or `/* */` comment outside its strings."""
    return any(not m.group().startswith('"') for m in _COMMENTS.finditer(text))


def decode(raw: bytes, source: str) -> tuple[str, str]:
    """(BOM, text) of a UTF-8 file."""
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    try:
        return bom, raw[len(bom.encode()) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientConfigInvalid(source, f"not UTF-8 text (byte {exc.start})") from None


def parse_document(text: str, source: str, jsonc: bool) -> tuple[Any, str, bool]:
    """(document, JSON text with `text`'s offsets, had comments). Blank text is an empty object.

    Raises:
        ClientConfigInvalid: not JSON (JSONC when `jsonc`), with line and column.
    """
    cleaned, commented = strip_jsonc(text, source) if jsonc else (text, False)
    if not cleaned.strip():
        return {}, "{}", commented
    try:
        return json.loads(cleaned), cleaned, commented
    except json.JSONDecodeError as exc:
        kind = "JSON (comments and trailing commas allowed)" if jsonc else "JSON"
        raise ClientConfigInvalid(source, f"not valid {kind}: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def json_type(value: Any) -> str:
    """The kind of a parsed JSON value as messages name it: "an object", "an array", "null"..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def servers_of(document: Any, layout: tuple[str, ...], source: str) -> dict[str, Any] | None:
    """The servers object at `layout`, or None when the file configures none.

    Raises:
        ClientConfigShape: the top level, or a step of `layout`, is not an object.
    """
    if not isinstance(document, dict):
        raise ClientConfigShape(source, f"expected a JSON object at the top level, found {json_type(document)}")
    node: Any = document
    for depth, key in enumerate(layout, 1):
        if key not in node:
            return None
        node = node[key]
        if not isinstance(node, dict):
            where = ".".join(layout[:depth])
            what = "an object mapping server names to servers" if depth == len(layout) else "an object"
            raise ClientConfigShape(source, f"{where!r} must be {what}, found {json_type(node)}")
    return dict(node)


# -- spans: where each server's value is in the text ------------------------------------------------

_DECODER: Final = json.JSONDecoder()
_WS: Final = re.compile(r"[ \t\r\n]*")


def _skip(text: str, index: int) -> int:
    match = _WS.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _members(text: str, start: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the object at `start` of valid JSON `text`."""
    members: list[tuple[str, int, int]] = []
    index = _skip(text, start + 1)
    if text[index] == "}":
        return members
    while True:
        key, index = _DECODER.raw_decode(text, index)
        index = _skip(text, _skip(text, index) + 1)  # past the colon
        _, end = _DECODER.raw_decode(text, index)
        members.append((key, index, end))
        index = _skip(text, end)
        if text[index] != ",":
            return members
        index = _skip(text, index + 1)


def server_spans(cleaned: str, layout: tuple[str, ...], source: str) -> dict[str, tuple[int, int]]:
    """Offsets of each server entry's value in `cleaned` (which `servers_of` accepted).

    Raises:
        ClientConfigShape: a server name appears twice (the client and this tool could disagree
        about which one counts).
    """
    start = _skip(cleaned, 0)
    for key in layout:
        start = [s for k, s, _ in _members(cleaned, start) if k == key][-1]
    spans: dict[str, tuple[int, int]] = {}
    for name, value_start, value_end in _members(cleaned, start):
        if name in spans:
            raise ClientConfigShape(source, f"server {name!r} is defined twice in {'.'.join(layout)!r}; keep one")
        spans[name] = (value_start, value_end)
    return spans


def _indent_unit(text: str) -> str:
    match = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return match.group(1) if match else "  "


def _line_indent(text: str, offset: int) -> str:
    match = re.compile(r"[ \t]*").match(text, text.rfind("\n", 0, offset) + 1)
    return match.group() if match else ""


@dataclass(frozen=True, slots=True)
class Style:
    """How a file is written: its indent unit and its line break, so that new text matches it."""

    unit: str
    newline: str

    @classmethod
    def of(cls, text: str) -> Style:
        return cls(_indent_unit(text), "\r\n" if "\r\n" in text else "\n")

    def newlines(self, text: str) -> str:
        """`text` with the file's line breaks."""
        return text.replace("\r\n", "\n").replace("\n", self.newline)

    def render(self, value: Any, multiline: bool, indent: str) -> str:
        """`value` as JSON: on one line, or over several indented from `indent` like the file."""
        if not multiline:
            return json.dumps(value, ensure_ascii=False)
        return json.dumps(value, ensure_ascii=False, indent=self.unit).replace("\n", self.newline + indent)


#: A replacement of text[start:end].
TextEdit = tuple[int, int, str]


def _args_after_command(keys: list[str]) -> list[str]:
    out = [k for k in keys if k != "args"]
    at = out.index("command") + 1
    return [*out[:at], "args", *out[at:]]


def entry_edits(text: str, cleaned: str, span: tuple[int, int], old: Any, new: Mapping[str, Any]) -> list[TextEdit]:
    """The smallest edits that turn the entry at `span` from `old` into `new`: only the values
    that changed (and an `args` member added after, or removed from after, `command`), so the
    entry's layout and its comments elsewhere stay. Anything else rewrites the whole entry."""
    style = Style.of(text)
    start, end = span
    whole = [(start, end, style.render(new, "\n" in text[start:end], _line_indent(text, start)))]
    members = _members(cleaned, start) if isinstance(old, dict) else []
    keys = [k for k, _, _ in members]
    if not isinstance(old, dict) or keys != list(old) or len(set(keys)) != len(keys):
        return whole
    spans = {k: (s, e) for k, s, e in members}
    edits: list[TextEdit] = []
    if keys == list(new):
        pass
    elif "command" in old and "command" in new and "args" not in old and list(new) == _args_after_command(keys):
        command_start, command_end = spans["command"]
        indent = _line_indent(text, command_start)
        multiline = "\n" in text[start:end]
        separator = "," + style.newline + indent if multiline else ", "
        edits.append((command_end, command_end, separator + '"args": ' + style.render(new["args"], multiline, indent)))
    elif "command" in new and "args" not in new and keys == _args_after_command(list(new)):
        edits.append((spans["command"][1], spans["args"][1], ""))
    else:
        return whole
    for key, value in new.items():
        if key in spans and old[key] != value:
            value_start, value_end = spans[key]
            multiline = "\n" in text[value_start:value_end]
            edits.append((value_start, value_end, style.render(value, multiline, _line_indent(text, value_start))))
    return edits


def splice(text: str, edits: Sequence[TextEdit]) -> str:
    """`text` with non-overlapping `edits` applied; everything else kept byte for byte."""
    out = text
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + replacement + out[end:]
    return out
