"""Value provenance: which earlier results an argument's values came from.

Every labelled result leaves fingerprints of its values in the session's `Provenance`; an
argument that contains a fingerprinted value inherits that result's labels. Values are compared
in a normal form (NFKC, case-folded, invisible and format characters removed, whitespace
folded), so a value copied with a changed case, fullwidth digits or zero-width characters
inserted still matches. Three kinds of fingerprint:

- **exact**: the whole normalised value of a string field of `structuredContent` (at least 4
  characters): a short identifier the model copies as is;
- **token**: identifier-like tokens of any text (at least `min_token` characters, with a digit or
  one of ``@/:._-+=``: addresses, URLs, keys, IBANs, codes), and the parts of such a token
  between URL delimiters;
- **run**: winnowed 12-character windows of the text's letters and digits that hold at least
  two digits (a re-spaced IBAN or card number: one window in four is kept, so any shared run of
  15 letters and digits shares a kept window); and winnowed shingles of 6 consecutive words (a
  copied passage: any 9 shared consecutive words share a kept shingle).

The argument side checks every window and shingle, so the guarantee holds however the value is
embedded.

What a private or secret value also leaves (fingerprints.py), so that the argument that carries
it disguised still inherits its labels:

- **reversed**: its whole value and tokens, and its secret words, backwards;
- **pieces**: every 8-character piece holding a digit of a key-like run of 16 or more letters
  and digits (`sk-live-4f9a...`, not `report-2026-q1` and not an IBAN: one bank's IBANs share its
  code). A piece alone carries the labels, so a key split between two arguments or two calls
  is caught in each;
- **secret words**: letters-only words of 12 or more letters that are not prose (a passphrase
  like `CorrectHorseBatteryStaple`, in any case). Public results leave none of these three, so
  their prose never taints ordinary words.

And the argument is decoded before it is looked up (decoding.py): hex (any case, with or without
`0x`, `\\x`, spaces, colons, commas), base64 and base64url (padded or not, line-wrapped, inside a
URL), character codes (a JSON array of ints, or a string of decimal codes), percent-encoding
(fingerprints.py), to two layers (base64 of hex); a deeper one, or more than
`decoding.MAX_DECODED` decoded forms in one argument value, makes its taint coarse (fail closed).
Not seen through: paraphrase, translation, computation on a value, an encoding past the layers,
pieces shorter than 8 characters or without a digit.
Fingerprints are Python string hashes in one dict, mapping to the OR of the labels of every
result that had the value and the latest such result. The dict is bounded (`cap`): when a
result would pass it, the session is *saturated* and every later check is coarse (an argument
carries all the session has seen): fail closed, and logged by the caller.

This module is pure: no clock, no I/O; the caller passes times and hashes in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.labels.decoding import expand
from gateway.labels.fingerprints import (
    MAX_ARGUMENT_TEXT,
    MAX_RESULT_TEXT,
    MAX_TEXT,
    TOO_DEEP,
    argument_print_set,
    argument_prints,
    normalise_value,
    source_prints,
)
from gateway.labels.masks import CONFIDENTIAL, UNTRUSTED


@dataclass(frozen=True, slots=True)
class Source:
    """One labelled result: what an argument's labels are traced back to."""

    index: int
    server: str
    tool: str
    result_hash: str
    time: str
    mask: int
    readers: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "tool": self.tool, "result_hash": self.result_hash, "time": self.time}


@dataclass(frozen=True, slots=True)
class Taint:
    """The labels a value carries and the results they came from. `culprits`: for each label
    bit, a result whose value carried it; `reader_sets`: for each confidential value the
    argument contains, everyone who can already see it (the readers of every result that had
    it), so sending it to them leaks nothing."""

    mask: int
    sources: tuple[Source, ...]
    culprits: Mapping[int, Source] = field(default_factory=dict)
    reader_sets: tuple[frozenset[str], ...] = ()

    def culprit(self, bits: int) -> Source | None:
        for bit in (4, 2, 1, 8):
            if bits & bit and bit in self.culprits:
                return self.culprits[bit]
        return self.sources[-1] if self.sources else None


CLEAN: Final = Taint(0, ())
_SOURCES_PER_PRINT: Final = 8
_RECENT: Final = 256  # argument texts whose fingerprints are remembered (see `Provenance._recent`)
_RECENT_TEXT: Final = 4096  # characters: longer texts are not remembered


@dataclass(slots=True)
class Provenance:
    """One session's label state: the coarse join and the value fingerprints."""

    cap: int = 100_000
    min_token: int = 6
    precise: bool = True  # False: the policy has no precise flow rule, so nothing is fingerprinted
    #: False: arguments are not decoded and their pieces and letter runs not looked up. For
    #: measuring what that costs (benchmarks/flow_bench.py) only: it misses encoded secrets.
    trace_encodings: bool = True
    mask: int = 0  # the join of every result's labels (coarse)
    saturated: bool = False
    sources: dict[int, Source] = field(default_factory=dict)  # the fingerprinted results, by index
    results: int = 0  # every result seen
    #: hash -> (the join of its labels, (source index << 4 | the value's labels there), ...),
    #: the latest `_SOURCES_PER_PRINT` results that had it
    _prints: dict[int, tuple[int, tuple[int, ...]]] = field(default_factory=dict)
    _by_bit: dict[int, Source] = field(default_factory=dict)  # the latest source that set each label bit
    _reader_meet: frozenset[str] | None = None  # who can see every confidential result so far (coarse)
    #: normal form -> its argument fingerprints, for the texts of the latest arguments: `taint`
    #: computes them and `prints_of` (the same call's arguments, for echoes) reuses them. Pure
    #: function of the text, so never stale; bounded.
    _recent: dict[str, frozenset[int]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self._prints)

    def add(
        self,
        server: str,
        tool: str,
        result_hash: str,
        time: str,
        mask: int,
        values: list[tuple[str, int, bool]],
        readers: frozenset[str] = frozenset(),
        own: frozenset[int] = frozenset(),
    ) -> tuple[Source, bool]:
        """Record a result with labels `mask`; `values` are its (text, its own labels, is a
        structured field) triples. `own`: fingerprints of the arguments of the call this result
        answers; a value the result merely echoes came from the client: the echo does not make it
        untrusted (a send tool repeating its recipient), though a confidentiality the policy
        declares for the result still holds.
        Returns the result's Source, and False when this result saturated the session (the
        caller logs that)."""
        joined = mask
        for value in values:
            joined |= value[1]
        source = Source(self.results, server, tool, result_hash, time, joined, readers)
        self.results += 1
        self.mask |= joined
        if joined & CONFIDENTIAL:
            self._reader_meet = readers if self._reader_meet is None else self._reader_meet & readers
        for bit in (1, 2, 4, 8):
            if joined & bit:
                self._by_bit[bit] = source
        if not self.precise or self.saturated or not (joined or readers) or not values:
            return source, True
        if len(self.sources) >= self.cap:
            return source, self._saturate()
        if sum(len(v[0]) for v in values) > MAX_RESULT_TEXT:
            return source, self._saturate()  # too much to fingerprint: the session turns coarse (fail closed)
        self.sources[source.index] = source
        prints = self._prints
        for text, labels, exact in values:
            if len(text) > MAX_TEXT:
                return source, self._saturate()
            echoed_labels = labels & CONFIDENTIAL
            confidential = bool(echoed_labels)
            for fp in source_prints(normalise_value(text), self.min_token, exact=exact, confidential=confidential, text=text):
                value_labels = labels
                if fp in own:  # echoed: not made untrusted by the echo, but what the policy declares holds
                    value_labels = echoed_labels
                    if not value_labels:
                        continue
                entry = source.index << 4 | value_labels
                old = prints.get(fp)
                if old is None:
                    prints[fp] = (value_labels, (entry,))
                elif entry not in old[1]:
                    prints[fp] = (value_labels | old[0], (*old[1][1 - _SOURCES_PER_PRINT :], entry))
            if len(prints) > self.cap:
                return source, self._saturate()
        return source, True

    def _saturate(self) -> bool:
        self.saturated = True
        self._prints.clear()
        self.sources.clear()  # checks are coarse from now on: the fingerprints would not be consulted
        return False

    def prints_of(self, value: Any) -> frozenset[int]:
        """Every fingerprint an argument value could share with a result (see `add`'s `own`)."""
        if not self.precise or self.saturated:
            return frozenset()
        out: set[int] = set()
        for text in _strings(value):
            norm = normalise_value(text)
            if norm:
                known = self._candidates(norm, True)
                out.update(known if known is not None else argument_prints(norm, self.min_token))
        return frozenset(out)

    def _candidates(self, norm: str, pieces: bool) -> frozenset[int] | None:
        """`argument_print_set` of `norm`, remembered for `prints_of` (short texts only)."""
        found = self._recent.get(norm) if pieces else None
        if found is not None:
            return found
        computed = argument_print_set(norm, self.min_token, pieces=pieces)
        if computed is None:
            return None
        found = frozenset(computed)
        if pieces and len(norm) <= _RECENT_TEXT:
            if len(self._recent) >= _RECENT:
                self._recent.clear()
            self._recent[norm] = found
        return found

    def taint(self, value: Any) -> Taint:
        """The labels an argument value carries (precise mode); coarse when saturated."""
        if self.saturated or not self.precise:
            return self.coarse()
        if not self._prints:
            return CLEAN
        texts = list(_strings(value))
        if sum(len(t) for t in texts) > MAX_ARGUMENT_TEXT:
            return self.coarse()  # too long to trace value by value: it carries everything seen (fail closed)
        mask = 0
        found: dict[int, Source] = {}
        culprits: dict[int, Source] = {}
        reader_sets: set[frozenset[str]] = set()
        encodings = self.trace_encodings
        prints = self._prints
        for text in expand(texts, _code_lists(value)) if encodings else texts:
            if text is TOO_DEEP:
                return self.coarse()  # more encoded forms, or layers, than are traced (fail closed)
            norm = normalise_value(text)
            if not norm:
                continue
            candidates = self._candidates(norm, encodings)
            if candidates is None:
                return self.coarse()
            for fp in prints.keys() & candidates:  # the lookups at C speed: most fingerprints miss
                hit = prints[fp]
                mask |= hit[0]
                readers: set[str] = set()
                for entry in hit[1]:
                    source = self.sources[entry >> 4]
                    found.setdefault(source.index, source)
                    readers |= source.readers
                    for bit in (1, 2, 4, 8):
                        if entry & bit:
                            culprits[bit] = source
                if hit[0] & CONFIDENTIAL:
                    reader_sets.add(frozenset(readers))
        if not mask:
            return CLEAN
        return Taint(mask, tuple(found.values()), culprits, tuple(reader_sets))

    def coarse(self) -> Taint:
        """Everything the session has seen, traced to the latest result that set each label;
        a confidential result's readers count only if every confidential result had them."""
        if not self.mask:
            return CLEAN
        sources = {s.index: s for s in self._by_bit.values()}
        readers = self._reader_meet if self._reader_meet is not None else frozenset()
        return Taint(self.mask, tuple(sources.values()), dict(self._by_bit), (readers,) if self.mask & CONFIDENTIAL else ())


def _strings(value: Any) -> Iterator[str]:
    """The strings in an argument value: strings and numbers (as text), and the keys
    and members of arrays and objects, recursively."""
    kind = type(value)
    if kind is str:
        yield value
    elif kind is int or kind is float:
        yield str(value)
    elif kind is list:
        for member in value:
            yield from _strings(member)
    elif kind is dict:
        for key, member in value.items():
            yield key
            yield from _strings(member)


def _code_lists(value: Any) -> Iterator[list[int]]:
    """The lists of integers in an argument value (character codes, perhaps)."""
    kind = type(value)
    if kind is list:
        if value and all(type(member) is int for member in value):
            yield value
            return
        for member in value:
            yield from _code_lists(member)
    elif kind is dict:
        for member in value.values():
            yield from _code_lists(member)


def field_values(
    structured: Any, levels: Mapping[str, int], base: int, trusted: tuple[str, ...] = ()
) -> tuple[list[tuple[str, int, bool]], dict[str, int]]:
    """The string leaves and object keys of `structuredContent` with their labels (numbers
    only under a field the policy declares confidential: an amount equal to a balance is not a
    copy of it): `base` joined with the
    confidentiality the policy declares for their field path (dotted; `*` matches any member;
    a declared object path covers everything below it), and without `untrusted` under a path
    the policy trusts (a mail header the mail system sets, not the sender). Also returns the
    declared levels that matched, by path, for the client's `_meta`."""
    out: list[tuple[str, int, bool]] = []
    matched: dict[str, int] = {}

    def walk(value: Any, path: list[str], inherited: int, vouched: bool) -> None:
        here = inherited
        dotted = ".".join(path)
        for pattern, level in levels.items():
            if _path_matches(pattern, path):
                here |= level
                matched[dotted] = matched.get(dotted, 0) | level
        vouched = vouched or any(_path_matches(p, path) for p in trusted)
        kind = type(value)
        labels = (base & ~UNTRUSTED if vouched else base) | here
        if kind is str:
            out.append((value, labels, True))
        elif (kind is int or kind is float) and here:
            out.append((str(value), labels, True))  # a number under a declared field (a card number)
        elif kind is dict:
            for key, member in value.items():
                out.append((str(key), labels, True))  # a key is a value the model reads too
                walk(member, [*path, str(key)], here, vouched)
        elif kind is list:
            for member in value:
                walk(member, [*path, "*"], here, vouched)

    walk(structured, [], 0, False)
    return out, matched


def _path_matches(pattern: str, path: list[str]) -> bool:
    parts = pattern.split(".")
    return len(parts) == len(path) and all(p == "*" or p == q for p, q in zip(parts, path, strict=True))
