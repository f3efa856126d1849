"""Poisoning scan of what a server shows the model, and neutralisation of terminal escapes. Pure.

A finding names the technique, the JSON path of the string it is in, the offending span
(character offsets) and an excerpt with the hidden characters made visible. Techniques:

- `invisible`: zero-width and other format characters (Cf), which hide text from a reviewer;
- `tag-characters`: Unicode tag characters (U+E0000..E007F), which can spell a whole hidden
  ASCII instruction; the decoded text is in the reason;
- `bidi`: bidi controls, which make text read differently from how it is stored;
- `terminal-escape`: ANSI/CSI/OSC escapes (ESC or C1), including OSC 8 hyperlinks and OSC 52
  clipboard writes, which rewrite what a terminal shows;
- `control`: other control characters;
- `tool-name`: a name outside the MCP tool-name alphabet (look-alikes, invisible characters);
- `confusable-name`: two tools whose names are equal after NFKC and case folding;
- `shadowing`: a tool named like another server's tool;
- `hidden-instruction`: text addressed to the model rather than describing the tool
  (`<IMPORTANT>`, "ignore previous instructions", "do not tell the user", secrets paths ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from gateway import jsonrpc
from gateway.names import is_bidi_control, is_invisible, name_problem, normalise


@dataclass(frozen=True, slots=True)
class Finding:
    technique: str
    path: str  # where in the descriptor, e.g. "inputSchema.properties.path.description"
    start: int
    end: int
    excerpt: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"technique": self.technique, "path": self.path, "span": [self.start, self.end], "excerpt": self.excerpt,
                "reason": self.reason}  # fmt: skip


_ESC_SEQUENCE: Final = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL/ST (8 = hyperlink, 52 = clipboard)
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"  # CSI
    r"|\x1b[P^_X][^\x1b]*(?:\x1b\\)?"  # DCS, PM, APC, SOS
    r"|\x1b.?"  # any other escape
    r"|[\x80-\x9f]"  # C1 controls (0x9b is an 8-bit CSI, 0x9d an OSC)
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")

#: Phrases that address the model instead of describing a tool. Fixed patterns, linear.
_HIDDEN_INSTRUCTIONS: Final = tuple(
    (re.compile(pattern, re.IGNORECASE), why)
    for pattern, why in (
        (r"<\s*/?\s*(important|system|instructions?|secret|hidden|admin|assistant|s)\s*>", "a tag addressed to the model"),
        (r"\[/?(inst|system)\]|<<\s*sys\s*>>|<\|im_start\|>", "chat-template control markup"),
        (
            r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|other|system)\b.{0,20}"
            r"\b(instructions?|prompts?|rules?|messages?|directives?)",
            "an instruction to ignore other instructions",
        ),
        (
            r"\b(do\s+not|don'?t|never)\b.{0,30}\b(tell|mention|inform|reveal|show|notify|alert)\b.{0,30}\b(user|human|anyone)",
            "an instruction to keep something from the user",
        ),
        (r"\b(before|prior\s+to|after)\s+(using|calling|running)\s+(this|any|the)\s+tool", "an instruction about other tool use"),
        (
            r"\byou\s+(must|should|have\s+to|need\s+to)\s+(first\s+)?(read|send|call|include|pass|upload|forward|copy)",
            "an imperative addressed to the model",
        ),
        (
            r"(~|\$HOME|/home/[^/\s]+)/\.(ssh|aws|gnupg|config|kube|docker)\b|\bid_(rsa|ed25519|ecdsa)\b|\.env\b|\bmcp\.json\b",
            "a reference to credential files",
        ),
        (
            r"\b(api[_\s-]?keys?|passwords?|private\s+keys?|secrets?|tokens?|credentials?)\b.{0,40}\b(send|include|pass|append|"
            r"add|forward|exfiltrate|upload)",
            "a request to move secrets",
        ),
        (r"<!--", "an HTML comment (hidden when rendered)"),
        (r"\bsystem\s+prompt\b", "a reference to the system prompt"),
        (r"\b(this|the)\s+tool\s+has\s+(been\s+)?(updated|changed|deprecated)\b.{0,60}\b(use|call)\b", "tool-redirection text"),
    )
)
_PADDING: Final = re.compile(r"[ \t\r\n]{80,}")
_EXCERPT = 60


def _visible(text: str) -> str:
    out = []
    for char in text:
        if is_invisible(char) or char < " " or "\x7f" <= char <= "\x9f":
            out.append(f"<U+{ord(char):04X}>")
        else:
            out.append(char)
    return "".join(out)


def _excerpt(text: str, start: int, end: int) -> str:
    return _visible(text[max(0, start - 10) : min(len(text), end + 10)])[: _EXCERPT * 2]


def scan_text(text: str, path: str) -> Iterator[Finding]:
    """Findings in one string."""
    index = 0
    length = len(text)
    while index < length:  # runs of invisible characters, tag characters decoded
        char = text[index]
        if is_invisible(char):
            end = index
            while end < length and is_invisible(text[end]):
                end += 1
            run = text[index:end]
            tags = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
            if tags:
                yield Finding("tag-characters", path, index, end, _excerpt(text, index, end), f"Unicode tag characters spell {tags!r}")
            elif any(is_bidi_control(c) for c in run):
                yield Finding("bidi", path, index, end, _excerpt(text, index, end), "bidi control characters reorder the text")
            else:
                yield Finding("invisible", path, index, end, _excerpt(text, index, end), f"{end - index} invisible character(s)")
            index = end
        else:
            index += 1
    for match in _ESC_SEQUENCE.finditer(text):
        seq = match.group()
        if seq.startswith("\x1b]8;") or seq.startswith("\x9d8;"):
            why = "an OSC 8 terminal hyperlink"
        elif seq.startswith("\x1b]52;"):
            why = "an OSC 52 clipboard write"
        elif seq.startswith("\x1b]"):
            why = "an OSC terminal escape"
        elif seq.startswith("\x1b[") or seq == "\x9b":
            why = "an ANSI CSI escape (colours, cursor movement, erasing text)"
        else:
            why = "a terminal escape sequence"
        yield Finding("terminal-escape", path, match.start(), match.end(), _excerpt(text, match.start(), match.end()), why)
    for match in _CONTROL.finditer(text):
        yield Finding("control", path, match.start(), match.end(), _excerpt(text, match.start(), match.end()),
                      f"control character U+{ord(match.group()):04X}")  # fmt: skip
    for pattern, why in _HIDDEN_INSTRUCTIONS:
        for match in pattern.finditer(text):
            yield Finding("hidden-instruction", path, match.start(), match.end(), _excerpt(text, match.start(), match.end()), why)
    for match in _PADDING.finditer(text):
        yield Finding("hidden-instruction", path, match.start(), match.end(), _excerpt(text, match.start(), match.end()),
                      f"{match.end() - match.start()} whitespace characters push text out of view")  # fmt: skip


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if type(value) is str:
        yield path, value
    elif type(value) is dict:
        for key, member in value.items():
            child = f"{path}.{key}" if path else str(key)
            if type(key) is str:
                yield f"{child}(key)", key
            yield from _strings(member, child)
    elif type(value) is list:
        for index, member in enumerate(value):
            yield from _strings(member, f"{path}[{index}]")


def scan_value(value: Any, path: str = "") -> list[Finding]:
    """Findings in every string (keys included) of a JSON value."""
    found: list[Finding] = []
    for where, text in _strings(value, path):
        if text.isascii() and text.isprintable() and len(text) < 24:
            continue  # short plain ASCII (names, types, keys): nothing to hide in
        found.extend(scan_text(text, where))
    return found


def scan_tool(tool: Mapping[str, Any], *, siblings: Iterable[str] = (), other_servers: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings for one tool descriptor. `siblings`: the other tool names of the same server;
    `other_servers`: normalised tool name -> the other server that has it."""
    findings = scan_value({k: v for k, v in tool.items() if k != "name"})
    name = tool.get("name")
    if type(name) is not str:
        return [Finding("tool-name", "name", 0, 0, repr(name), "the tool has no string name"), *findings]
    problem = name_problem(name)
    if problem is not None:
        findings.insert(0, Finding("tool-name", "name", 0, len(name), _visible(name)[:_EXCERPT], problem))
    key = normalise(name)
    for sibling in siblings:
        if sibling != name and normalise(sibling) == key:
            findings.append(Finding("confusable-name", "name", 0, len(name), _visible(name)[:_EXCERPT],
                                    f"the name equals another tool's name {sibling!r} after normalisation"))  # fmt: skip
    if other_servers and key in other_servers:
        findings.append(Finding("shadowing", "name", 0, len(name), _visible(name)[:_EXCERPT],
                                f"server {other_servers[key]!r} already has a tool with this name"))  # fmt: skip
    return findings


# -- terminal escapes in forwarded text --------------------------------------------------------

#: On encoded JSON (orjson escapes ESC as \u001b and writes C1 controls as raw UTF-8).
_ESCAPE_IN_JSON: Final = re.compile(rb"\\u001[bB]|\xc2[\x80-\x9f]|\\u00[89][0-9a-fA-F]")
_NEUTRAL: Final = {0x1B: "\u241b", **{code: "\ufffd" for code in range(0x80, 0xA0)}}


def neutralise_text(text: str) -> str:
    """ESC becomes U+241B (a visible symbol) and C1 controls U+FFFD: the text stays readable
    and can no longer drive a terminal."""
    return text.translate(_NEUTRAL)


def _neutralise(value: Any) -> Any:
    if type(value) is str:
        return neutralise_text(value)
    if type(value) is dict:
        return {neutralise_text(k): _neutralise(v) for k, v in value.items()}
    if type(value) is list:
        return [_neutralise(v) for v in value]
    return value


def neutralise_line(line: bytes) -> bytes:
    """An encoded JSON message with every terminal escape neutralised; the same object when
    there is none (one regex search over the bytes: the common case costs almost nothing)."""
    if _ESCAPE_IN_JSON.search(line) is None:
        return line
    return jsonrpc.encode(_neutralise(jsonrpc.decode(line)))
