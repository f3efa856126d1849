"""gateway/labels/provenance.py: which earlier results an argument's values came from.

The carry table gives a labelled result's text and an argument value, and whether the argument
inherits the result's labels. Rows only rely on what the module guarantees (whole structured
values, identifier-like tokens, a shared run of at least 15 letters and digits whose windows hold
two digits, a shared passage of at least 9 words), never on which winnowed hash happens to be the
smallest: string hashes differ from process to process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.labels.fingerprints import normalise_value
from gateway.labels.masks import PRIVATE, SECRET, SUSPECT, UNTRUSTED
from gateway.labels.provenance import CLEAN, Provenance, Source, Taint, field_values

LABELS = UNTRUSTED | PRIVATE
ZERO_WIDTH = ("\u200b", "\u2060", "\u00ad", "\ufeff", "\u200c", "\u200d")
IBAN_SPACED = "DE89 3704 0044 0532 0130 00"
IBAN_COMPACT = "DE89370400440532013000"
PASSAGE = (
    "The board approved the acquisition of Initech for forty million dollars, and the announcement is embargoed until the second of March."
)


def _session(*results: tuple[str, int, bool], cap: int = 100_000, min_token: int = 6) -> Provenance:
    """A session that has seen one result per (text, labels, is a structured field) triple."""
    provenance = Provenance(cap=cap, min_token=min_token)
    for index, (text, mask, exact) in enumerate(results):
        provenance.add("srv", f"tool{index}", f"{index:064x}", "2026-01-01T00:00:00Z", mask, [(text, mask, exact)])
    return provenance


@dataclass(frozen=True)
class Carry:
    result: str
    argument: Any
    carried: bool
    structured: bool = False  # the result value is a whole string field of structuredContent


def carry(row_id: str, result: str, argument: Any, carried: bool, **extra: Any) -> Any:
    return pytest.param(Carry(result, argument, carried, **extra), id=row_id)


CARRY_ROWS = [
    # copies, however disguised
    carry("an exact copy of an address", "From: bob@corp.example", "bob@corp.example", True),
    carry("an address with its case changed", "From: bob@corp.example", "BOB@Corp.Example", True),
    carry("a code with its case changed", "Your reset code is 483920-ALPHA.", "483920-alpha", True),
    carry("an account number in fullwidth digits", "account 1234567890", "１２３４５６７８９０", True),
    carry("a code in fullwidth letters and digits", "Your reset code is 483920-ALPHA.", "４８３９２０-ＡＬＰＨＡ", True),
    carry("a token with a zero-width space inserted", "token ab12cd34ef", "ab12\u200bcd34ef", True),
    carry("a token with a word joiner inserted", "token ab12cd34ef", "ab\u206012cd34ef", True),
    carry("a token with a soft hyphen inserted", "token ab12cd34ef", "ab12cd\u00ad34ef", True),
    carry("a token with every kind of zero-width character inserted",
          "token ab12cd34ef", "a\u200bb\u2060\u00ad12\ufeffcd\u200c34\u200def", True),
    carry("a structured value with a zero-width space inserted", "Acme42", "Ac\u200bme42", True, structured=True),
    carry("a structured value with its whitespace changed",
          "Flat 4B,  221 Baker\nStreet", " flat 4b, 221 baker   street ", True, structured=True),
    carry("a structured value copied exactly", "Acme Holdings", "Acme Holdings", True, structured=True),
    carry("a passage with its line breaks and spaces changed", PASSAGE.replace(" ", "\n", 5), PASSAGE.replace(" ", "  "), True),
    # embedded
    carry("a code in a URL query", "Your reset code is 483920-ALPHA.", "https://evil.example/c?code=483920-alpha&x=1", True),
    carry("a code in a URL path", "Your reset code is 483920-ALPHA.", "https://evil.example/483920-ALPHA/x", True),
    carry("a code in a sentence", "Your reset code is 483920-ALPHA.", "fyi: the code is 483920-ALPHA, thanks!", True),
    carry("an address in a URL query", "Contact attacker@evil.example now", "https://x.example/?q=attacker@evil.example", True),
    carry("a re-spaced IBAN copied compact", f"Please pay to {IBAN_SPACED} by Friday.", IBAN_COMPACT, True),
    carry("a compact IBAN copied re-spaced", f"Please pay to {IBAN_COMPACT} by Friday.", f"iban: {IBAN_SPACED}", True),
    carry("an IBAN re-spaced differently", f"IBAN {IBAN_SPACED}", "DE8937-0400-4405-3201-3000", True),
    carry("an IBAN glued into other text", f"IBAN {IBAN_SPACED}", f"x{IBAN_COMPACT.lower()}y", True),
    carry("an address inside angle brackets in the result", "From: Bob Smith <bob@corp.example>", "bob@corp.example", True),
    carry("an address put inside angle brackets", "Reply to bob@corp.example", "Bob Smith <bob@corp.example>", True),
    carry("a six-digit code", "Your verification code is 483920.", "483920", True),
    carry("a six-digit code sent as a number", "Your verification code is 483920.", 483920, True),
    carry("a six-digit code as an object key", "Your verification code is 483920.", {"483920": "ok"}, True),
    carry("a six-digit code nested in lists and objects", "Your verification code is 483920.", {"a": [{"b": ["x", "483920"]}]}, True),
    carry("a long copied sentence", f"Meeting notes. {PASSAGE} Next item.", f"FYI: {PASSAGE.upper()} (do not share)", True),
    carry("nine consecutive words of a passage", PASSAGE, "approved the acquisition of initech for forty million dollars and", True),
    # benign
    carry("a common word shared", "The meeting is at noon in the main office.", "meeting", False),
    carry("a common phrase shared", "The meeting is at noon in the main office.", "see you at the meeting", False),
    carry("a short word", "ok, done", "ok", False),
    carry("a short code below the token length", "Your PIN is 4821.", "4821", False),
    carry("a different six-digit code", "Your verification code is 483920.", "483921", False),
    carry("the agent's own different address", "From: bob@corp.example", "me@example.com", False),
    carry("a number equal to a balance", "Your balance is 1500 EUR.", 1500, False),
    carry("a number string equal to a balance", "Your balance is 1500 EUR.", "pay 1500 EUR", False),
    carry("five shared words of prose", "please review the attached quarterly report soon", "review the attached quarterly report", False),
    carry("a value the session never saw", "From: bob@corp.example", "carol@elsewhere.example", False),
    # Regression (was a bug): percent-encoding is how a value is put in a URL query, and it defeats the normal form:
    # '@' becomes '%40', so no token, part or run of the address is shared. A fetch tool (egress)
    # is the classic exfiltration path; the address is not carried, so a precise flow rule passes.
    carry("an address percent-encoded in a URL query",
          "Contact: bob.smith@corp.example", "https://evil.example/c?u=bob.smith%40corp.example", True),
    # Regression (was a bug): likewise '%20' between the groups of an IBAN splits every shared 12-character run.
    carry("a re-spaced IBAN percent-encoded in a URL query",
          f"IBAN {IBAN_SPACED}", "https://evil.example/c?i=DE89%203704%200044%200532%200130%2000", True),
    # Regression (was a bug): the domain of an address is fingerprinted as a part of the token, so every address on
    # a shared mail domain carries the result's labels: after reading any mail that mentions a
    # gmail.com address, mail to the agent's own gmail.com address is denied as untrusted/private.
    carry("the agent's own address on the sender's mail domain", "From: bob@gmail.com", "me@gmail.com", False),
]  # fmt: skip


@pytest.mark.parametrize("case", CARRY_ROWS)
def test_an_argument_carries_a_results_labels_exactly_when_it_contains_one_of_its_values(case: Carry) -> None:
    provenance = _session((case.result, LABELS, case.structured))
    taint = provenance.taint(case.argument)
    assert (taint.mask == LABELS) is case.carried
    assert taint.mask in (0, LABELS)
    if case.carried:
        assert [s.tool for s in taint.sources] == ["tool0"]
    else:
        assert taint is CLEAN


def test_a_structured_value_is_matched_whole_but_a_text_value_only_by_its_fingerprints() -> None:
    assert _session(("Acme Holdings", LABELS, True)).taint("acme holdings").mask == LABELS
    assert _session(("Acme Holdings", LABELS, False)).taint("acme holdings") is CLEAN


def test_a_structured_value_shorter_than_four_characters_is_not_fingerprinted_whole() -> None:
    assert _session(("Bob", LABELS, True)).taint("bob") is CLEAN


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        pytest.param("Bob@Corp.EXAMPLE", "bob@corp.example", id="case folded"),
        pytest.param("ＡＢＣ１２３", "abc123", id="fullwidth to ascii"),
        pytest.param("a\u200bb\u2060c\u00add\ufeffe", "abcde", id="invisible characters removed"),
        pytest.param("  a \t b\n\nc  ", "a b c", id="whitespace folded and trimmed"),
        pytest.param("Straße", "strasse", id="sharp s folded"),
        pytest.param("ﬁle", "file", id="ligature expanded"),
        pytest.param("\u200b", "", id="only invisible is empty"),
    ],
)
def test_values_are_compared_in_a_normal_form(text: str, normal: str) -> None:
    assert normalise_value(text) == normal


# -- structured fields: per-field confidentiality and trusted fields -----------------------------

MAIL = {
    "from": "bob@corp.example",
    "to": ["me@example.com", "carol@corp.example"],
    "subject": "Quarterly numbers 2026-Q1",
    "body": "The password is hunter2-XY9 and the meeting moved.",
    "account": {"iban": IBAN_COMPACT, "owner": "Bob Smith", "balance": 1500},
    "attachments": [{"name": "report-2026.pdf", "note": "draft 7781-AB"}],
}


def _by_text(values: list[tuple[str, int, bool]]) -> dict[str, int]:
    return {text: labels for text, labels, _ in values}


def test_field_values_give_each_string_leaf_the_base_labels_and_its_declared_level() -> None:
    levels = {"body": PRIVATE, "account": SECRET, "attachments.*.note": PRIVATE}
    values, matched = field_values(MAIL, levels, UNTRUSTED)
    labels = _by_text(values)
    assert labels["bob@corp.example"] == UNTRUSTED
    assert labels["me@example.com"] == UNTRUSTED
    assert labels["Quarterly numbers 2026-Q1"] == UNTRUSTED
    assert labels[MAIL["body"]] == UNTRUSTED | PRIVATE
    assert labels[IBAN_COMPACT] == UNTRUSTED | SECRET  # a declared object covers everything below it
    assert labels["Bob Smith"] == UNTRUSTED | SECRET
    assert labels["draft 7781-AB"] == UNTRUSTED | PRIVATE
    assert labels["report-2026.pdf"] == UNTRUSTED
    assert all(exact for _, _, exact in values)
    assert matched == {"body": PRIVATE, "account": SECRET, "attachments.*.note": PRIVATE}


def test_numbers_in_structured_content_are_not_fingerprinted() -> None:
    values, _ = field_values(MAIL, {}, UNTRUSTED)
    assert 1500 not in [text for text, _, _ in values]
    assert "1500" not in _by_text(values)
    provenance = Provenance()
    provenance.add("bank", "balance", "0" * 64, "t", UNTRUSTED, values)
    assert provenance.taint({"amount": 1500}) is CLEAN
    assert provenance.taint({"amount": "1500"}) is CLEAN


def test_trusted_fields_lose_untrusted_only_for_those_fields() -> None:
    values, _ = field_values(MAIL, {"from": PRIVATE}, UNTRUSTED | SUSPECT, ("from", "to", "account"))
    labels = _by_text(values)
    assert labels["bob@corp.example"] == PRIVATE | SUSPECT  # untrusted removed, its declared level and the flag kept
    assert labels["me@example.com"] == SUSPECT  # a trusted list covers its members
    assert labels["carol@corp.example"] == SUSPECT
    assert labels[IBAN_COMPACT] == SUSPECT  # a trusted object covers everything below it
    assert labels["Quarterly numbers 2026-Q1"] == UNTRUSTED | SUSPECT
    assert labels[MAIL["body"]] == UNTRUSTED | SUSPECT
    assert labels["report-2026.pdf"] == UNTRUSTED | SUSPECT


def test_a_trusted_field_pattern_must_match_the_whole_path() -> None:
    values, _ = field_values({"headers": {"from": "bob@corp.example"}, "from": "x@evil.example"}, {}, UNTRUSTED, ("headers.from",))
    labels = _by_text(values)
    assert labels["bob@corp.example"] == 0
    assert labels["x@evil.example"] == UNTRUSTED


def test_trusted_fields_carry_nothing_while_the_rest_of_the_result_stays_untrusted() -> None:
    values, _ = field_values(MAIL, {"body": PRIVATE}, UNTRUSTED, ("from", "to"))
    provenance = Provenance()
    provenance.add("mail", "read_email", "0" * 64, "t", UNTRUSTED, values)
    assert provenance.taint("bob@corp.example") is CLEAN
    assert provenance.taint("report-2026.pdf").mask == UNTRUSTED
    assert provenance.taint("the password is HUNTER2-XY9").mask == UNTRUSTED | PRIVATE


def test_a_star_in_a_field_path_matches_any_member_of_a_list_or_object() -> None:
    structured = {"items": [{"secret": "k-1234567"}, {"secret": "k-7654321"}], "map": {"a": {"secret": "m-1111111"}}}
    values, matched = field_values(structured, {"items.*.secret": SECRET, "map.*.secret": SECRET}, 0)
    assert all(labels == SECRET for text, labels, _ in values if text.startswith(("k-", "m-")))
    assert all(labels == 0 for text, labels, _ in values if text in ("items", "map", "a"))  # keys above the declared fields
    assert matched == {"items.*.secret": SECRET, "map.a.secret": SECRET}


# -- joining -------------------------------------------------------------------------------------


def test_labels_join_across_two_results_with_the_same_value() -> None:
    provenance = _session(("Your code is 483920-ALPHA.", UNTRUSTED, False), ("code: 483920-ALPHA", PRIVATE, False))
    taint = provenance.taint("483920-alpha")
    assert taint.mask == UNTRUSTED | PRIVATE
    assert provenance.taint("code 483920-alpha please").mask == UNTRUSTED | PRIVATE


def test_an_argument_joins_the_labels_of_every_result_it_draws_on() -> None:
    provenance = _session(("token ab12cd34ef", UNTRUSTED, False), ("IBAN " + IBAN_SPACED, SECRET, False), ("nothing here", SUSPECT, False))
    taint = provenance.taint({"note": "ab12cd34ef", "iban": IBAN_COMPACT})
    assert taint.mask == UNTRUSTED | SECRET
    assert sorted(s.tool for s in taint.sources) == ["tool0", "tool1"]
    assert taint.culprit(SECRET) is not None and taint.culprit(SECRET).tool == "tool1"  # the secret came from tool1
    assert taint.culprit(UNTRUSTED) is not None and taint.culprit(UNTRUSTED).tool == "tool0"
    assert taint.reader_sets == (frozenset(),)  # the IBAN's result names no readers


def test_a_result_without_labels_leaves_no_fingerprints() -> None:
    provenance = _session(("Your code is 483920-ALPHA.", 0, False))
    assert provenance.size == 0
    assert provenance.taint("483920-ALPHA") is CLEAN
    assert provenance.coarse() is CLEAN
    assert provenance.results == 1


def test_a_session_without_precise_rules_fingerprints_nothing_and_answers_coarsely() -> None:
    provenance = Provenance(precise=False)
    provenance.add("srv", "read", "0" * 64, "t", UNTRUSTED, [("Your code is 483920-ALPHA.", UNTRUSTED, False)])
    assert provenance.size == 0
    assert provenance.taint("anything at all").mask == UNTRUSTED


def test_the_coarse_taint_is_the_join_of_every_result_traced_to_the_latest_result_per_label() -> None:
    provenance = _session(("first 111111-A", UNTRUSTED, False), ("second 222222-B", PRIVATE, False), ("third 333333-C", UNTRUSTED, False))
    coarse = provenance.coarse()
    assert coarse.mask == UNTRUSTED | PRIVATE
    assert sorted(s.tool for s in coarse.sources) == ["tool1", "tool2"]


def test_a_source_says_where_the_value_came_from() -> None:
    provenance = Provenance()
    source, ok = provenance.add("mail", "read_email", "ab" * 32, "2026-01-01T00:00:00Z", UNTRUSTED, [("x 483920-ALPHA", PRIVATE, False)])
    assert ok
    assert source.mask == UNTRUSTED | PRIVATE
    assert source.to_json() == {"server": "mail", "tool": "read_email", "result_hash": "ab" * 32, "time": "2026-01-01T00:00:00Z"}
    assert provenance.taint("483920-alpha").sources == (source,)


# -- the cap: saturated, then coarse (fail closed) ------------------------------------------------


def _tokens(count: int, start: int = 0) -> str:
    return " ".join(f"id-{n:08d}" for n in range(start, start + count))


def test_a_result_that_passes_the_cap_saturates_the_session() -> None:
    provenance = Provenance(cap=100)
    _, ok = provenance.add("srv", "a", "0" * 64, "t", PRIVATE, [(_tokens(3), PRIVATE, False)])
    assert ok
    assert not provenance.saturated
    _, ok = provenance.add("srv", "b", "1" * 64, "t", UNTRUSTED, [(_tokens(200, 1000), UNTRUSTED, False)])
    assert not ok
    assert provenance.saturated
    assert provenance.size == 0
    assert provenance.sources == {}


def test_a_saturated_session_answers_every_taint_with_the_coarse_join() -> None:
    provenance = Provenance(cap=100)
    provenance.add("srv", "a", "0" * 64, "t", PRIVATE, [(_tokens(3), PRIVATE, False)])
    provenance.add("srv", "b", "1" * 64, "t", UNTRUSTED, [(_tokens(200, 1000), UNTRUSTED, False)])
    provenance.add("srv", "c", "2" * 64, "t", SUSPECT, [("later", SUSPECT, False)])
    for argument in ("lunch at noon?", "", 7, {"k": "v"}, _tokens(1)):
        taint = provenance.taint(argument)
        assert taint.mask == PRIVATE | UNTRUSTED | SUSPECT
        assert taint == provenance.coarse()
    assert sorted(s.tool for s in provenance.coarse().sources) == ["a", "b", "c"]


def test_a_saturated_session_keeps_no_fingerprints_of_later_results() -> None:
    provenance = Provenance(cap=100)
    provenance.add("srv", "b", "1" * 64, "t", UNTRUSTED, [(_tokens(200), UNTRUSTED, False)])
    _, ok = provenance.add("srv", "c", "2" * 64, "t", PRIVATE, [(_tokens(50, 5000), PRIVATE, False)])
    assert ok  # only the result that saturated the session reports it
    assert provenance.size == 0
    assert provenance.mask == UNTRUSTED | PRIVATE


def test_a_value_longer_than_the_text_limit_saturates_the_session() -> None:
    provenance = Provenance()
    _, ok = provenance.add("srv", "big", "0" * 64, "t", UNTRUSTED, [("a" * ((1 << 20) + 1), UNTRUSTED, False)])
    assert not ok
    assert provenance.saturated
    assert provenance.taint("hello").mask == UNTRUSTED


def test_more_results_than_the_cap_saturate_the_session() -> None:
    provenance = Provenance(cap=100)
    saturated_at = None
    for index in range(150):
        _, ok = provenance.add("srv", "r", f"{index:064x}", "t", UNTRUSTED, [("same 483920-ALPHA", UNTRUSTED, False)])
        if not ok:
            saturated_at = index
            break
    assert saturated_at is not None
    assert provenance.size <= provenance.cap
    assert len(provenance.sources) <= provenance.cap


def test_results_that_leave_no_fingerprints_are_not_kept_beyond_the_cap() -> None:
    # Regression (was a bug): `Provenance.add` records every labelled result in `sources` before it looks at its
    # values, and checks the cap only inside the loop over them. A result with no string values
    # (an image-only or empty content list) is kept forever: `sources` grows by one per call,
    # without bound, though the session's memory is meant to be bounded by `cap`.
    provenance = Provenance(cap=100)
    for index in range(1000):
        provenance.add("srv", "screenshot", f"{index:064x}", "t", UNTRUSTED, [])
    assert provenance.size <= provenance.cap
    assert len(provenance.sources) <= provenance.cap


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(min_size=0, max_size=400), st.sampled_from([UNTRUSTED, PRIVATE, SECRET, SUSPECT, UNTRUSTED | PRIVATE])),
        min_size=1,
        max_size=30,
    ),
    st.text(max_size=200),
)
def test_the_fingerprints_never_outgrow_the_cap_and_a_precise_taint_never_exceeds_the_coarse_one(
    results: list[tuple[str, int]], argument: str
) -> None:
    provenance = Provenance(cap=100, min_token=3)
    for index, (text, mask) in enumerate(results):
        provenance.add("srv", "t", f"{index:064x}", "t", mask, [(text, mask, index % 2 == 0), (text[::-1], mask, False)])
        assert provenance.size <= provenance.cap
        taint = provenance.taint(argument)
        assert taint.mask & ~provenance.coarse().mask == 0
        assert {s.index for s in taint.sources} <= set(range(index + 1))


# -- the guarantee, as a property ---------------------------------------------------------------

_ALNUM = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGIT = st.sampled_from("0123456789")
_SEPARATOR = st.text(st.characters(min_codepoint=32, max_codepoint=126).filter(lambda c: not c.isalnum()), max_size=2)


_PIECE = st.tuples(_ALNUM, _SEPARATOR)


@st.composite
def identifier_runs(draw: st.DrawFn) -> str:
    """A printable string of at least 20 characters and at least 2 digits whose letters and
    digits form a run the module promises to follow: 16 or more letters and digits, with two
    digits among the 4th to 12th of them (so each of the run's first four 12-character windows
    holds them), separated by any punctuation and spaces (a re-spaced IBAN, card number, key)."""
    pieces = draw(st.lists(_PIECE, min_size=16, max_size=32))
    first, second = draw(st.lists(st.integers(3, 11), min_size=2, max_size=2, unique=True))
    for index in (first, second):
        pieces[index] = (draw(_DIGIT), pieces[index][1])
    out = "".join(char + separator for char, separator in pieces)
    return out.ljust(20)


@st.composite
def disguised(draw: st.DrawFn, value: str) -> str:
    """`value` with random case changes and zero-width characters inserted."""
    changes = draw(st.lists(st.tuples(st.booleans(), st.sampled_from(("", "", *ZERO_WIDTH))), min_size=len(value), max_size=len(value)))
    return "".join((c.swapcase() if swap else c) + inserted for c, (swap, inserted) in zip(value, changes, strict=True))


@settings(max_examples=200, deadline=None)
@given(st.data(), identifier_runs(), st.text(max_size=30), st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_an_argument_that_embeds_an_identifier_run_of_a_labelled_result_carries_its_label(
    data: st.DataObject, run: str, before: str, after: str, prefix: str, suffix: str
) -> None:
    assert len(run) >= 20 and sum(c.isdigit() for c in run) >= 2
    provenance = _session((f"{before} {run} {after}", PRIVATE, False))
    argument = prefix + data.draw(disguised(run)) + suffix
    assert provenance.taint(argument).mask == PRIVATE
    assert provenance.taint({"nested": [argument]}).mask == PRIVATE


@settings(max_examples=100, deadline=None)
@given(st.data(), st.lists(st.sampled_from(PASSAGE.split()), min_size=9, max_size=20), st.text(max_size=30), st.text(max_size=30))
def test_an_argument_that_embeds_nine_words_of_a_labelled_passage_carries_its_label(
    data: st.DataObject, words: list[str], prefix: str, suffix: str
) -> None:
    passage = " ".join(words)
    provenance = _session((f"Minutes: {passage}. End.", SECRET, False))
    argument = f"{prefix} {data.draw(disguised(passage))} {suffix}"
    assert provenance.taint(argument).mask == SECRET


def test_the_taint_of_nothing_seen_is_clean() -> None:
    assert Provenance().taint("483920-ALPHA") is CLEAN
    assert Taint(0, ()) == CLEAN
    assert isinstance(Source(0, "s", "t", "h", "now", 0).readers, frozenset)


@pytest.mark.parametrize(
    ("labels", "carried"),
    [
        pytest.param(UNTRUSTED, 0, id="an-untrusted-echo-adds-nothing"),
        pytest.param(UNTRUSTED | SECRET, SECRET, id="a-declared-confidentiality-still-holds"),
        pytest.param(UNTRUSTED | SUSPECT | PRIVATE, PRIVATE, id="suspect-and-untrusted-dropped-private-kept"),
    ],
)
def test_a_result_echoing_the_calls_own_argument_does_not_make_it_untrusted(labels: int, carried: int) -> None:
    provenance = Provenance(cap=1000)
    own = provenance.prints_of({"to": "carol@partner.example"})
    provenance.add("mail", "send_email", "0" * 64, "t", labels, [("sent to carol@partner.example", labels, False)], own=own)
    assert provenance.taint("carol@partner.example").mask == carried
    # a value the call did not send is labelled as usual
    provenance.add("mail", "send_email", "1" * 64, "t", labels, [("reply from dave@evil.example", labels, False)], own=own)
    assert provenance.taint("dave@evil.example").mask == labels
