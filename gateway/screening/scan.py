"""Poisoning scan of what a server shows the model, and neutralisation of terminal escapes. Pure.

A finding names the technique, the JSON path of the string it is in, the offending span
(character offsets) and an excerpt with the hidden characters made visible. Techniques:

- `invisible`: zero-width and other format characters (Cf), which hide text from a reviewer;
  a joiner that a script or an emoji sequence needs is not one (see `_is_legitimate_joiner`);
- `tag-characters`: Unicode tag characters (U+E0000..E007F), which can spell a whole hidden
  ASCII instruction; the decoded text is in the reason;
- `bidi`: bidi controls, which make text read differently from how it is stored;
- `terminal-escape`: ANSI/CSI/OSC escapes (ESC or C1), including OSC 8 hyperlinks and OSC 52
  clipboard writes, which rewrite what a terminal shows;
- `control`: other control characters, and a carriage return not followed by a line feed;
- `tool-name`: a name outside the MCP tool-name alphabet (look-alikes, invisible characters);
- `confusable-name`: two tools whose names are equal after NFKC and case folding;
- `shadowing`: a tool named like another server's tool;
- `hidden-instruction`: text addressed to the model rather than describing the tool
  (`<IMPORTANT>`, "ignore previous instructions", "do not tell the user", secrets paths ...),
  and runs of whitespace that push text out of view.

Every string is scanned, however short. Phrases are matched on a folded copy of non-ASCII text
(NFKC, accents dropped, common Cyrillic and Greek look-alikes mapped to Latin, invisible
characters removed), and reported at the span of the original text they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any, Final

import orjson

from gateway.protocol.names import name_problem, normalise
from gateway.screening.characters import CONTROL_CHARACTER, PADDING, SPACES, invisible_findings, terminal_findings
from gateway.screening.findings import EXCERPT, Finding, excerpt, visible
from gateway.screening.phrases import phrase_findings

__all__ = ["Finding", "clear_memo", "scan_text", "scan_tool", "scan_value"]


def _scan_into(out: list[Finding], text: str, path: str) -> None:
    if text.isascii():
        if text.isalnum():  # ASCII letters and digits only (most keys and enum values): nothing to find
            return
        printable = text.isprintable()  # printable ASCII has no control character at all
        if not printable:
            terminal_findings(out, text, path)
    else:
        printable = text.isprintable()  # False for every control, format character and space but U+0020
        invisible_findings(out, text, path, printable)
        if not printable and CONTROL_CHARACTER.search(text):
            terminal_findings(out, text, path)
    phrase_findings(out, text, path)
    if len(text) >= 80 and (not printable or SPACES in text):  # the only whitespace a printable string holds is U+0020
        for match in PADDING.finditer(text):
            start, end = match.span()
            out.append(
                Finding(
                    "hidden-instruction",
                    path,
                    start,
                    end,
                    excerpt(text, start, end),
                    f"{end - start} whitespace characters push text out of view",
                )
            )


def scan_text(text: str, path: str) -> Iterator[Finding]:
    """Findings in one string, `path` naming where it is."""
    out: list[Finding] = []
    _scan_into(out, text, path)
    return iter(out)


def _worth_scanning(text: str) -> bool:
    return not (text.isascii() and text.isalnum())  # ASCII letters and digits only: nothing to find


#: Descriptors up to this size (as JSON) are memoised, see scan_value.
_MEMO_BYTES: Final = 16 * 1024


def scan_value(value: Any, path: str = "") -> list[Finding]:
    """Findings in every string (keys included) of a JSON value, however deep or short. Order:
    an object's keys and strings in member order, then its objects and arrays, depth first.

    Every tools/list repeats the same descriptors, so results are memoised by the value's JSON
    text: what is scanned is that text decoded, so equal keys always mean equal findings. A value
    orjson cannot write (an integer beyond 64 bits, a lone surrogate) or a large one is scanned
    as it is, without the memo."""
    try:
        encoded = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _scan_value(value, path)
    if len(encoded) > _MEMO_BYTES:
        return _scan_value(value, path)
    return list(_scan_encoded(encoded, path))


@lru_cache(maxsize=1024)
def _scan_encoded(encoded: bytes, path: str) -> tuple[Finding, ...]:
    return tuple(_scan_value(orjson.loads(encoded), path))


def _scan_value(value: Any, path: str) -> list[Finding]:
    found: list[Finding] = []
    if type(value) is str:
        _scan_into(found, value, path)
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:  # no recursion: any depth is fine
        node, where = stack.pop()
        nested: list[tuple[Any, str]] = []
        if type(node) is dict:
            for key, member in node.items():
                child = ""
                if type(key) is str and _worth_scanning(key):
                    child = f"{where}.{key}" if where else key
                    _scan_into(found, key, f"{child}(key)")
                kind = type(member)
                if kind is str:
                    if _worth_scanning(member):
                        _scan_into(found, member, child or (f"{where}.{key}" if where else str(key)))
                elif kind is dict or kind is list:
                    nested.append((member, child or (f"{where}.{key}" if where else str(key))))
        elif type(node) is list:
            for index, member in enumerate(node):
                kind = type(member)
                if kind is str:
                    if _worth_scanning(member):
                        _scan_into(found, member, f"{where}[{index}]")
                elif kind is dict or kind is list:
                    nested.append((member, f"{where}[{index}]"))
        stack.extend(reversed(nested))
    return found


def clear_memo() -> None:
    """Forget memoised scans (as in a new process; for benchmarks)."""
    _scan_encoded.cache_clear()
    _normalised_names.cache_clear()


@lru_cache(maxsize=16)
def _normalised_names(names: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Normalised name -> the names with that form. Cached: a listing passes the same sibling
    names for each of its tools."""
    index: dict[str, tuple[str, ...]] = {}
    for name in names:
        if type(name) is str:
            key = normalise(name)
            index[key] = (*index.get(key, ()), name)
    return index


def scan_tool(tool: Mapping[str, Any], *, siblings: Iterable[str] = (), other_servers: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings for one tool descriptor. `siblings`: the other tool names of the same server;
    `other_servers`: normalised tool name -> the other server that has it."""
    findings = scan_value({k: v for k, v in tool.items() if k != "name"})
    name = tool.get("name")
    if type(name) is not str:
        return [Finding("tool-name", "name", 0, 0, repr(name), "the tool has no string name"), *findings]
    problem = name_problem(name)
    if problem is not None:
        findings.insert(0, Finding("tool-name", "name", 0, len(name), visible(name)[:EXCERPT], problem))
    key = normalise(name)
    names = siblings if type(siblings) is tuple else tuple(siblings)
    for sibling in _normalised_names(names).get(key, ()) if names else ():
        if sibling != name:
            findings.append(
                Finding(
                    "confusable-name",
                    "name",
                    0,
                    len(name),
                    visible(name)[:EXCERPT],
                    f"the name equals another tool's name {sibling!r} after normalisation",
                )
            )
    if other_servers and key in other_servers:
        findings.append(
            Finding(
                "shadowing",
                "name",
                0,
                len(name),
                visible(name)[:EXCERPT],
                f"server {other_servers[key]!r} already has a tool with this name",
            )
        )
    return findings
