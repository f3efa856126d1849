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

import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any, Final

import orjson

from gateway.protocol import jsonrpc
from gateway.protocol.names import INVISIBLE_RANGES, is_bidi_control, is_invisible, name_problem, normalise


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


# -- characters ---------------------------------------------------------------------------------


def _character_class(codes: Iterable[int]) -> str:
    """A regex class of `codes` (ascending) written as ranges: the regex module does not merge a
    list of single characters, and tests each in turn."""
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in ranges) + "]"


_INVISIBLE_RUN: Final = re.compile(_character_class(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1)) + "+")
#: The invisible characters str.isprintable() accepts (variation selectors, fillers, CGJ ...):
#: the only ones a printable string can hold.
_PRINTABLE_INVISIBLE_RUN: Final = re.compile(
    _character_class(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1) if chr(c).isprintable()) + "+"
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
_CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what _TERMINAL can start with, but LF and tab
_PADDING: Final = re.compile(r"\s{80,}")  # Unicode whitespace: NBSP, U+2000..200A, U+3000 ...
_SPACES: Final = " " * 80

#: Code points an emoji sequence may join with ZWJ or follow with VS15/VS16 (the blocks of
#: Extended_Pictographic, which `unicodedata` does not expose).
_PICTOGRAPHIC: Final = (
    (0x00A9, 0x00A9), (0x00AE, 0x00AE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139),
    (0x2190, 0x21FF), (0x2300, 0x23FF), (0x24C2, 0x24C2), (0x25A0, 0x27BF), (0x2900, 0x297F), (0x2B00, 0x2BFF),
    (0x3030, 0x3030), (0x303D, 0x303D), (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1FAFF),
)  # fmt: skip
#: Scripts whose orthography uses ZWNJ/ZWJ between letters (Persian, Urdu, Hindi, Bengali ...).
_JOINING_SCRIPTS: Final = (
    ("arabic", 0x0600, 0x08FF), ("arabic", 0xFB50, 0xFDFF), ("arabic", 0xFE70, 0xFEFC), ("indic", 0x0900, 0x0DFF),
)  # fmt: skip
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


def _invisible_findings(out: list[Finding], text: str, path: str, printable: bool) -> None:
    for match in (_PRINTABLE_INVISIBLE_RUN if printable else _INVISIBLE_RUN).finditer(text):
        start, end = match.span()
        if _is_legitimate_joiner(text, start, end):
            continue
        run = match.group()
        tags = "".join(chr(ord(c) - 0xE0000) for c in run if 0xE0020 <= ord(c) <= 0xE007E)
        if tags:
            out.append(Finding("tag-characters", path, start, end, _excerpt(text, start, end), f"Unicode tag characters spell {tags!r}"))
        elif any(is_bidi_control(c) for c in run):
            out.append(Finding("bidi", path, start, end, _excerpt(text, start, end), "bidi control characters reorder the text"))
        else:
            out.append(Finding("invisible", path, start, end, _excerpt(text, start, end), f"{end - start} invisible character(s)"))


_OSC_REASONS: Final = {"8": "an OSC 8 terminal hyperlink", "52": "an OSC 52 clipboard write"}


def _terminal_findings(out: list[Finding], text: str, path: str) -> None:
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
        out.append(Finding(technique, path, start, end, _excerpt(text, start, end), why))


# -- phrases ------------------------------------------------------------------------------------

_MOVE_VERBS = r"send|include|pass|append|forward|upload|copy|paste|post|e-?mail|transmit|share|embed|leak|exfiltrate|dump|reveal|disclose"
#: A data-moving verb not right after "not", "never" or "n't" ("do not include secrets" protects them).
_MOVE = rf"(?<!\bnot\s)(?<!\bnever\s)(?<!n't\s)(?<!n’t\s)(?:{_MOVE_VERBS})"
_SECRET = (
    r"(?:api[\s_-]?keys?|(?:access|secret|private|ssh|signing|encryption|master|wallet)[\s_-]keys?|passwords?|passphrases?|passwd"
    r"|secrets?|credentials?|(?:access|auth|bearer|api|session|refresh|oauth|id|personal[\s_-]access)[\s_-]tokens?|cookies?"
    r"|(?:seed|recovery)[\s_-]phrases?|mnemonics?)"
)
#: Environment variable names that hold secrets (case-sensitive: OPENAI_API_KEY, AWS_SECRET_ACCESS_KEY, *_TOKEN).
_SECRET_VARIABLE = (
    r"(?-i:\$?\{?\b(?:[A-Z][A-Z0-9]*_)*(?:API_?KEY|(?:SECRET_)?ACCESS_KEY(?:_ID)?|SECRET(?:_ACCESS)?_KEY|(?:PRIVATE|SIGNING|MASTER)_KEY"
    r"|[A-Z0-9]+_(?:SECRET|TOKEN|PASSWORD|PASSWD|PAT|CREDENTIALS?))\b|\*_(?:TOKEN|KEY|SECRET|PASSWORD)\b)"
)
#: "you must read" is only an attack when what is read is private (a path, a file, a secret).
_READ_TARGET = (r"[^.;!?\n]{0,40}?(?:[~$%]|/[\w.]|\b(?:files?|keys?|secrets?|credentials?|tokens?|passwords?|config(?:uration)?"
                r"|env(?:ironment)?|history|conversation)\b)")  # fmt: skip
_HOME = r"(?:~|\$\{?HOME\}?|%USERPROFILE%|/home/[^/\s]+|/Users/[^/\s]+|/root)"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MOVE_WORDS: Final = _words(
    "send include pass append forward upload copy paste post email e mail transmit share embed leak exfiltrate dump reveal disclose"
)
_SECRET_WORDS: Final = _words("key keys apikey apikeys password passwords passphrase passphrases passwd secret secrets credential "
                              "credentials token tokens cookie cookies phrase phrases mnemonic mnemonics")  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Phrase:
    """One family of phrases. `needs`: a text can only match if its words (lower-case runs of
    ASCII letters and digits) meet every one of these sets, rarest first, or if it holds one of
    `marks`. The gate spares the regex on most strings (the regex module has no multi-literal
    search: an alternation of fifty words costs tens of microseconds per description); a test
    checks that it never hides a match."""

    name: str
    reason: str
    pattern: re.Pattern[str]
    needs: tuple[frozenset[str], ...] = ()
    marks: str = ""


def _phrase(name: str, reason: str, pattern: str, *needs: str, marks: str = "") -> _Phrase:
    return _Phrase(name, reason, re.compile(pattern, re.IGNORECASE | re.DOTALL), tuple(_words(n) for n in needs), marks)


#: IGNORECASE and DOTALL: a newline between the words of a phrase changes nothing.
_PHRASES: Final = (
    _phrase("tag", "a tag addressed to the model",
            r"<\s*/?\s*(?:important|critical|urgent|system(?:[\s_-]?(?:reminder|prompt|message|instructions?|note|notice|override"
            r"|directive))?|instructions?|secret|hidden|admin|assistant|sys|s|reminder)(?:\s[^<>]{0,200})?\s*/?\s*>", marks="<"),
    _phrase("template", "chat-template control markup",
            r"\[/?(?:inst|system|sys)\]|<<\s*/?\s*sys\s*>>"
            r"|<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id|begin_of_text)\s*\|>",
            marks="[<"),
    _phrase("comment", "an HTML comment (hidden when rendered)", r"<!--", marks="<"),
    _phrase("ignore", "an instruction to ignore other instructions",
            r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}?\b(?:previous|prior|above|earlier|all|any|other|system|preceding"
            r"|your)\b.{0,20}?\b(?:instructions?|prompts?|rules?|messages?|directives?|guidelines?|guardrails?)\b",
            "ignore disregard forget override bypass",
            "instruction instructions prompt prompts rule rules message messages directive directives guideline guidelines guardrail "
            "guardrails"),
    _phrase("conceal", "an instruction to keep something from the user",
            r"\b(?:do\s+not|don['’]?t|never|must\s+not)\b.{0,30}?\b(?:tell|mention|inform|reveal|show|notify|alert|disclose)\b.{0,30}?"
            r"\b(?:user|human|anyone)\b|\bwithout\s+(?:telling|informing|notifying|alerting)\s+(?:the\s+)?(?:user|human|anyone)\b",
            "tell mention inform reveal show notify alert disclose telling informing notifying alerting",
            "do don dont never must without", "user human anyone"),
    _phrase("tool_use", "an instruction about other tool use",
            r"\b(?:before|prior\s+to|after|when(?:ever)?|each\s+time)\s+(?:you\s+)?(?:use|using|call|calling|run|running|invoke"
            r"|invoking|execute|executing)\s+(?:this|any|the|every|each|another)\s+(?:other\s+)?tools?\b[\s,]*(?:(?:you\s+)?(?:must"
            r"|should|need\s+to|have\s+to|always|first|also|please|make\s+sure\s+(?:to|you)|be\s+sure\s+to|remember\s+to)\s+)*"
            r"(?:read|call|send|include|pass|upload|forward|copy|paste|fetch|open|cat|append|e-?mail|post|share|invoke|get|retrieve"
            r"|collect|gather|write|delete|attach)\b",
            "before prior after when whenever each", "tool tools"),
    _phrase("imperative", "an imperative addressed to the model",
            r"\byou\s+(?:must|should|have\s+to|need\s+to|are\s+required\s+to)\s+(?:(?:first|also|always|now|immediately)\s+)*"
            rf"(?:{_MOVE}\b|read\b(?={_READ_TARGET}))",
            "you", "must should have need required", " ".join(_MOVE_WORDS | {"read"})),
    _phrase("credentials", "a reference to credential files",
            rf"{_HOME}[/\\]\.(?:ssh|aws|gnupg|config|kube|docker|azure|gcloud|password-store)\b"
            r"|(?<![\w.-])\.(?:netrc|git-credentials|pgpass|npmrc|pypirc|vault-token|env(?:\.[\w-]+)?)\b"
            r"|\.aws[/\\](?:credentials|config)\b|\.docker[/\\]config\.json\b|\.kube[/\\]config\b|\.ssh[/\\]"
            r"|\bid_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?\b|\bmcp\.json\b|\bclaude_desktop_config\.json\b|/etc/(?:shadow|gshadow|sudoers)\b",
            "ssh aws gnupg config kube docker azure gcloud store netrc credentials pgpass npmrc pypirc token env rsa dsa ecdsa ed25519 "
            "mcp claude shadow gshadow sudoers"),
    _phrase("conversation", "a request to move the conversation",
            rf"\b{_MOVE}\b[^.;!?\n]{{0,60}}?\b(?:(?:whole|entire|full|complete)\s+(?:conversation|chat|dialog(?:ue)?|transcript"
            r"|context)|(?:conversation|chat|message)\s+history|(?:all\s+)?(?:previous|prior|earlier)\s+messages"
            r"|your\s+(?:system\s+)?(?:instructions|prompt))\b",
            "conversation chat dialog dialogue transcript context history messages instructions prompt", " ".join(_MOVE_WORDS)),
    _phrase("secret", "a request to move secrets",
            rf"\b{_MOVE}\b\s+(?:[\w'’-]+\s+){{0,4}}?{_SECRET}\b|\b{_SECRET}\s*[:=—–-]+\s*{_MOVE}\b"
            rf"|\b{_SECRET}\b[^.;!?\n]{{0,40}}?\b(?:must|should|has\s+to|have\s+to|needs?\s+to|is\s+to|are\s+to)\s+(?:also\s+|always\s+)?"
            r"be\s+(?:sent|included|passed|appended|forwarded|uploaded|copied|pasted|posted|e-?mailed|transmitted|shared|embedded|leaked)\b",
            " ".join(_SECRET_WORDS)),
    _phrase("variable", "a request to move secrets from environment variables",
            rf"\b(?:{_MOVE}|read|give|provide|fetch|get)\b[^.;!?\n]{{0,40}}?{_SECRET_VARIABLE}",
            "key token secret password passwd pat credential credentials apikey",
            " ".join(_MOVE_WORDS | _words("read give provide fetch get"))),
    _phrase("system_prompt", "a reference to the system prompt", r"\bsystem\s+prompt\b", "prompt", "system"),
    _phrase("redirect", "tool-redirection text",
            r"\b(?:this|the)\s+tool\s+(?:has\s+(?:been\s+)?|is\s+(?:now\s+)?|was\s+)?(?:updated|changed|deprecated|replaced|moved|renamed"
            r"|disabled)\b.{0,60}?\b(?:use|call)\b",
            "updated changed deprecated replaced moved renamed disabled", "tool", "use call"),
)  # fmt: skip
_PHRASE_WORDS: Final = frozenset().union(*(words for phrase in _PHRASES for words in phrase.needs[:1]))
assert {mark for phrase in _PHRASES for mark in phrase.marks} <= {"<", "["}, "_phrase_matches looks for these two"
_NOT_WORD: Final = str.maketrans({c: " " for c in map(chr, range(128)) if not ("a" <= c <= "z" or "0" <= c <= "9")})
_NOT_WORD_RUN: Final = re.compile(r"[^a-z0-9]+")
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")

#: Latin look-alikes NFKC keeps apart (Cyrillic, Greek, IPA) and typographic punctuation.
_LOOKALIKES: Final = str.maketrans(
    "аеорсухіјѕԁԛԝһӏАВЕКМНОРСТХІЈЅҮοαινρκτυΑΒΕΖΗΙΚΜΝΟΡΤΥΧıɡɑ‘’‚‛′“”„‟″‐‑‒–—―",
    "aeopcyxijsdqwhlABEKMHOPCTXIJSYoaivpktuABEZHIKMNOPTYXiga'''''\"\"\"\"\"------",
)


class _Fold(dict[int, str]):
    """The folded form of each character, computed on first use (str.translate asks per code point)."""

    _LIMIT = 65536

    def __missing__(self, code: int) -> str:
        char = chr(code)
        if is_invisible(char):
            folded = ""
        else:
            decomposed = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", char))
            folded = "".join(c for c in decomposed if not unicodedata.combining(c)).translate(_LOOKALIKES)
        if len(self) < self._LIMIT:
            self[code] = folded
        return folded


_FOLD: Final = _Fold({code: chr(code) for code in range(128)})


def _fold_run(match: re.Match[str]) -> str:
    return match.group().translate(_FOLD)


def _phrase_matches(text: str) -> list[tuple[_Phrase, re.Match[str]]]:
    """Every phrase match in `text`, family by family (families may overlap)."""
    lower = text.lower()
    if lower.isascii():
        split = lower.translate(_NOT_WORD).split()
    elif lower.isalnum():  # every phrase holds a space, a punctuation mark or "_"
        return []
    else:
        split = _NOT_WORD_RUN.split(lower)
    if _PHRASE_WORDS.isdisjoint(split) and "<" not in text and "[" not in text:
        return []
    words = frozenset(split)
    found: list[tuple[_Phrase, re.Match[str]]] = []
    for phrase in _PHRASES:
        if phrase.marks:
            if not any(mark in text for mark in phrase.marks):
                continue
        else:
            for need in phrase.needs:  # rarest first: most phrases stop at the first
                if words.isdisjoint(need):
                    break
            else:
                found.extend((phrase, match) for match in phrase.pattern.finditer(text))
            continue
        found.extend((phrase, match) for match in phrase.pattern.finditer(text))
    return found


def _phrase_findings(out: list[Finding], text: str, path: str) -> None:
    if text.isascii():
        for phrase, match in _phrase_matches(text):
            start, end = match.span()
            out.append(Finding("hidden-instruction", path, start, end, _excerpt(text, start, end), phrase.reason))
        return
    folded = _NON_ASCII.sub(_fold_run, text)
    matches = _phrase_matches(folded)
    if not matches:
        return
    if folded == text:
        spans = [(phrase, *match.span()) for phrase, match in matches]
        reason = "{}"
    else:  # back to the original text: ends[i] is where text[i]'s folded form ends in `folded`
        ends = list(accumulate(len(_FOLD[ord(c)]) for c in text))
        spans = [(phrase, bisect_right(ends, match.start()), bisect_right(ends, match.end() - 1) + 1) for phrase, match in matches]
        reason = "{} (after Unicode folding)"
    for phrase, start, end in spans:
        out.append(Finding("hidden-instruction", path, start, end, _excerpt(text, start, end), reason.format(phrase.reason)))


# -- scanning -----------------------------------------------------------------------------------

_EXCERPT = 60


_HIDDEN_CHARACTER: Final = re.compile(
    _character_class([*range(0x20), *range(0x7F, 0xA0), *(c for low, high in INVISIBLE_RANGES for c in range(low, high + 1))])
)


def _show_code(match: re.Match[str]) -> str:
    return f"<U+{ord(match.group()):04X}>"


def _visible(text: str) -> str:
    """`text` with every control and invisible character written as <U+XXXX>."""
    return _HIDDEN_CHARACTER.sub(_show_code, text)


def _excerpt(text: str, start: int, end: int) -> str:
    return _visible(text[max(0, start - 10) : min(len(text), end + 10)])[: _EXCERPT * 2]


def _scan_into(out: list[Finding], text: str, path: str) -> None:
    if text.isascii():
        if text.isalnum():  # ASCII letters and digits only (most keys and enum values): nothing to find
            return
        printable = text.isprintable()  # printable ASCII has no control character at all
        if not printable:
            _terminal_findings(out, text, path)
    else:
        printable = text.isprintable()  # False for every control, format character and space but U+0020
        _invisible_findings(out, text, path, printable)
        if not printable and _CONTROL_CHARACTER.search(text):
            _terminal_findings(out, text, path)
    _phrase_findings(out, text, path)
    if len(text) >= 80 and (not printable or _SPACES in text):  # the only whitespace a printable string holds is U+0020
        for match in _PADDING.finditer(text):
            start, end = match.span()
            out.append(Finding("hidden-instruction", path, start, end, _excerpt(text, start, end),
                               f"{end - start} whitespace characters push text out of view"))  # fmt: skip


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
        findings.insert(0, Finding("tool-name", "name", 0, len(name), _visible(name)[:_EXCERPT], problem))
    key = normalise(name)
    names = siblings if type(siblings) is tuple else tuple(siblings)
    for sibling in _normalised_names(names).get(key, ()) if names else ():
        if sibling != name:
            findings.append(Finding("confusable-name", "name", 0, len(name), _visible(name)[:_EXCERPT],
                                    f"the name equals another tool's name {sibling!r} after normalisation"))  # fmt: skip
    if other_servers and key in other_servers:
        findings.append(Finding("shadowing", "name", 0, len(name), _visible(name)[:_EXCERPT],
                                f"server {other_servers[key]!r} already has a tool with this name"))  # fmt: skip
    return findings


# -- terminal escapes in forwarded text --------------------------------------------------------

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
