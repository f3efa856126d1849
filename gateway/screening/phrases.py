"""The phrase technique of the poisoning scan: text addressed to the model rather than describing
the tool, matched on a folded copy of non-ASCII text (NFKC, accents dropped, look-alikes mapped
to Latin, invisible characters removed) and reported at the span of the original text. Pure."""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Final

from gateway.protocol.names import is_invisible
from gateway.screening.findings import Finding, excerpt

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
_READ_TARGET = (
    r"[^.;!?\n]{0,40}?(?:[~$%]|/[\w.]|\b(?:files?|keys?|secrets?|credentials?|tokens?|passwords?|config(?:uration)?"
    r"|env(?:ironment)?|history|conversation)\b)"
)
_HOME = r"(?:~|\$\{?HOME\}?|%USERPROFILE%|/home/[^/\s]+|/Users/[^/\s]+|/root)"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_MOVE_WORDS: Final = _words(
    "send include pass append forward upload copy paste post email e mail transmit share embed leak exfiltrate dump reveal disclose"
)
_SECRET_WORDS: Final = _words(
    "key keys apikey apikeys password passwords passphrase passphrases passwd secret secrets credential "
    "credentials token tokens cookie cookies phrase phrases mnemonic mnemonics"
)


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
PHRASES: Final = (
    _phrase(
        "tag",
        "a tag addressed to the model",
        r"<\s*/?\s*(?:important|critical|urgent|system(?:[\s_-]?(?:reminder|prompt|message|instructions?|note|notice|override"
        r"|directive))?|instructions?|secret|hidden|admin|assistant|sys|s|reminder)(?:\s[^<>]{0,200})?\s*/?\s*>",
        marks="<",
    ),
    _phrase(
        "template",
        "chat-template control markup",
        r"\[/?(?:inst|system|sys)\]|<<\s*/?\s*sys\s*>>"
        r"|<\|\s*(?:im_start|im_end|im_sep|system|user|assistant|endoftext|start_header_id|end_header_id|eot_id|begin_of_text)\s*\|>",
        marks="[<",
    ),
    _phrase("comment", "an HTML comment (hidden when rendered)", r"<!--", marks="<"),
    _phrase(
        "ignore",
        "an instruction to ignore other instructions",
        r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}?\b(?:previous|prior|above|earlier|all|any|other|system|preceding"
        r"|your)\b.{0,20}?\b(?:instructions?|prompts?|rules?|messages?|directives?|guidelines?|guardrails?)\b",
        "ignore disregard forget override bypass",
        "instruction instructions prompt prompts rule rules message messages directive directives guideline guidelines guardrail "
        "guardrails",
    ),
    _phrase(
        "conceal",
        "an instruction to keep something from the user",
        r"\b(?:do\s+not|don['’]?t|never|must\s+not)\b.{0,30}?\b(?:tell|mention|inform|reveal|show|notify|alert|disclose)\b.{0,30}?"
        r"\b(?:user|human|anyone)\b|\bwithout\s+(?:telling|informing|notifying|alerting)\s+(?:the\s+)?(?:user|human|anyone)\b",
        "tell mention inform reveal show notify alert disclose telling informing notifying alerting",
        "do don dont never must without",
        "user human anyone",
    ),
    _phrase(
        "tool_use",
        "an instruction about other tool use",
        r"\b(?:before|prior\s+to|after|when(?:ever)?|each\s+time)\s+(?:you\s+)?(?:use|using|call|calling|run|running|invoke"
        r"|invoking|execute|executing)\s+(?:this|any|the|every|each|another)\s+(?:other\s+)?tools?\b[\s,]*(?:(?:you\s+)?(?:must"
        r"|should|need\s+to|have\s+to|always|first|also|please|make\s+sure\s+(?:to|you)|be\s+sure\s+to|remember\s+to)\s+)*"
        r"(?:read|call|send|include|pass|upload|forward|copy|paste|fetch|open|cat|append|e-?mail|post|share|invoke|get|retrieve"
        r"|collect|gather|write|delete|attach)\b",
        "before prior after when whenever each",
        "tool tools",
    ),
    _phrase(
        "imperative",
        "an imperative addressed to the model",
        r"\byou\s+(?:must|should|have\s+to|need\s+to|are\s+required\s+to)\s+(?:(?:first|also|always|now|immediately)\s+)*"
        rf"(?:{_MOVE}\b|read\b(?={_READ_TARGET}))",
        "you",
        "must should have need required",
        " ".join(_MOVE_WORDS | {"read"}),
    ),
    _phrase(
        "credentials",
        "a reference to credential files",
        rf"{_HOME}[/\\]\.(?:ssh|aws|gnupg|config|kube|docker|azure|gcloud|password-store)\b"
        r"|(?<![\w.-])\.(?:netrc|git-credentials|pgpass|npmrc|pypirc|vault-token|env(?:\.[\w-]+)?)\b"
        r"|\.aws[/\\](?:credentials|config)\b|\.docker[/\\]config\.json\b|\.kube[/\\]config\b|\.ssh[/\\]"
        r"|\bid_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?\b|\bmcp\.json\b|\bclaude_desktop_config\.json\b|/etc/(?:shadow|gshadow|sudoers)\b",
        "ssh aws gnupg config kube docker azure gcloud store netrc credentials pgpass npmrc pypirc token env rsa dsa ecdsa ed25519 "
        "mcp claude shadow gshadow sudoers",
    ),
    _phrase(
        "conversation",
        "a request to move the conversation",
        rf"\b{_MOVE}\b[^.;!?\n]{{0,60}}?\b(?:(?:whole|entire|full|complete)\s+(?:conversation|chat|dialog(?:ue)?|transcript"
        r"|context)|(?:conversation|chat|message)\s+history|(?:all\s+)?(?:previous|prior|earlier)\s+messages"
        r"|your\s+(?:system\s+)?(?:instructions|prompt))\b",
        "conversation chat dialog dialogue transcript context history messages instructions prompt",
        " ".join(_MOVE_WORDS),
    ),
    _phrase(
        "secret",
        "a request to move secrets",
        rf"\b{_MOVE}\b\s+(?:[\w'’-]+\s+){{0,4}}?{_SECRET}\b|\b{_SECRET}\s*[:=—–-]+\s*{_MOVE}\b"
        rf"|\b{_SECRET}\b[^.;!?\n]{{0,40}}?\b(?:must|should|has\s+to|have\s+to|needs?\s+to|is\s+to|are\s+to)\s+(?:also\s+|always\s+)?"
        r"be\s+(?:sent|included|passed|appended|forwarded|uploaded|copied|pasted|posted|e-?mailed|transmitted|shared|embedded|leaked)\b",
        " ".join(_SECRET_WORDS),
    ),
    _phrase(
        "variable",
        "a request to move secrets from environment variables",
        rf"\b(?:{_MOVE}|read|give|provide|fetch|get)\b[^.;!?\n]{{0,40}}?{_SECRET_VARIABLE}",
        "key token secret password passwd pat credential credentials apikey",
        " ".join(_MOVE_WORDS | _words("read give provide fetch get")),
    ),
    _phrase("system_prompt", "a reference to the system prompt", r"\bsystem\s+prompt\b", "prompt", "system"),
    _phrase(
        "redirect",
        "tool-redirection text",
        r"\b(?:this|the)\s+tool\s+(?:has\s+(?:been\s+)?|is\s+(?:now\s+)?|was\s+)?(?:updated|changed|deprecated|replaced|moved|renamed"
        r"|disabled)\b.{0,60}?\b(?:use|call)\b",
        "updated changed deprecated replaced moved renamed disabled",
        "tool",
        "use call",
    ),
)
_PHRASE_WORDS: Final = frozenset().union(*(words for phrase in PHRASES for words in phrase.needs[:1]))
assert {mark for phrase in PHRASES for mark in phrase.marks} <= {"<", "["}, "_phrase_matches looks for these two"
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
    for phrase in PHRASES:
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


def phrase_findings(out: list[Finding], text: str, path: str) -> None:
    if text.isascii():
        for phrase, match in _phrase_matches(text):
            start, end = match.span()
            out.append(Finding("hidden-instruction", path, start, end, excerpt(text, start, end), phrase.reason))
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
        out.append(Finding("hidden-instruction", path, start, end, excerpt(text, start, end), reason.format(phrase.reason)))
