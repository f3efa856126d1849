"""gateway/protocol/framing.py: LineFramer splits a byte stream into lines under a size limit."""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocol.framing import LineFramer
from gateway.protocol.jsonrpc import ID_PROBE_BYTES, probe_id


@dataclass
class Recorder:
    """Collects what the framer reports, in order."""

    events: list[tuple[str, bytes, int]] = field(default_factory=list)

    def line(self, line: bytes) -> None:
        self.events.append(("line", line, len(line)))

    def oversize(self, prefix: bytes, size: int) -> None:
        self.events.append(("oversize", prefix, size))

    @property
    def lines(self) -> list[bytes]:
        return [data for kind, data, _ in self.events if kind == "line"]


def _framer(max_bytes: int) -> tuple[LineFramer, Recorder]:
    recorder = Recorder()
    return LineFramer(recorder.line, recorder.oversize, max_bytes), recorder


def _feed_all(chunks: list[bytes], max_bytes: int) -> Recorder:
    framer, recorder = _framer(max_bytes)
    for chunk in chunks:
        framer.feed(chunk)
    return recorder


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"a\nb\n"], [b"a", b"b"], id="two-lines-one-chunk"),
        pytest.param([b"a", b"bc", b"\n"], [b"abc"], id="line-over-three-chunks"),
        pytest.param([b"ab", b"\nc", b"d\n"], [b"ab", b"cd"], id="newline-at-chunk-start"),
        pytest.param([b"a\r\nb\r\n"], [b"a", b"b"], id="crlf-stripped"),
        pytest.param([b"a\r", b"\n"], [b"a"], id="crlf-split-between-chunks"),
        pytest.param([b"a\r\rb\n"], [b"a\r\rb"], id="inner-cr-kept"),
        pytest.param([b"\n\n a \n"], [b" a "], id="blank-lines-skipped"),
        pytest.param([b" \t\n\r\n\x0b\x0c\nx\n"], [b"x"], id="whitespace-only-lines-skipped"),
        pytest.param([b"a\nunfinished"], [b"a"], id="unterminated-tail-held"),
        pytest.param([b""], [], id="empty-chunk"),
    ],
)
def test_framer_delivers_complete_lines_without_terminator(chunks: list[bytes], expected: list[bytes]) -> None:
    assert _feed_all(chunks, 1024).lines == expected


def test_framer_holds_an_unfinished_line_until_its_newline() -> None:
    framer, recorder = _framer(1024)
    framer.feed(b'{"id":1')
    assert recorder.events == []
    assert framer.pending_bytes() == 7
    framer.feed(b"}\n")
    assert recorder.lines == [b'{"id":1}']
    assert framer.pending_bytes() == 0


def test_framer_refuses_a_non_positive_limit() -> None:
    with pytest.raises(ValueError):
        LineFramer(lambda line: None, lambda prefix, size: None, 0)


@pytest.mark.parametrize(
    ("line", "max_bytes"),
    [
        pytest.param(b"x" * 11, 10, id="one-byte-over"),
        pytest.param(b'{"jsonrpc":"2.0","id":42,"params":{"d":"' + b"y" * 200_000 + b'"}}', 1024, id="far-over-probe-window"),
    ],
)
def test_line_over_limit_in_one_chunk_reports_full_size_and_a_prefix(line: bytes, max_bytes: int) -> None:
    recorder = _feed_all([line + b"\nnext\n"], max_bytes)
    (kind, prefix, size), after = recorder.events
    assert kind == "oversize"
    assert size == len(line)
    assert line.startswith(prefix)
    assert len(prefix) == min(len(line), ID_PROBE_BYTES)
    assert after == ("line", b"next", 4)


def test_line_of_exactly_the_limit_is_delivered() -> None:
    assert _feed_all([b"x" * 10 + b"\n"], 10).lines == [b"x" * 10]


def test_oversized_line_streamed_over_many_chunks_is_discarded_as_it_streams() -> None:
    max_bytes = 1024
    chunk = b"z" * 4096
    chunks = 2000  # 8 MiB of one line that the framer must not keep
    head = b'{"jsonrpc":"2.0","id":"big-1","method":"tools/call","params":{"blob":"'
    framer, recorder = _framer(max_bytes)
    framer.feed(head)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in range(chunks):
            framer.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    streamed = len(head) + chunks * len(chunk)
    assert framer.pending_bytes() == streamed
    assert recorder.events == []
    # Whatever the framer holds stays within the limit plus one chunk (and some slack for
    # interpreter bookkeeping); holding the line would need all 8 MiB.
    assert peak < 4 * (max_bytes + len(chunk) + len(head))

    framer.feed(b'"}}\n{"jsonrpc":"2.0","id":2,"method":"ping"}\n')
    (kind, prefix, size), after = recorder.events
    assert kind == "oversize"
    assert size == streamed + 3
    assert len(prefix) <= ID_PROBE_BYTES
    assert (head + chunk * chunks).startswith(prefix)
    assert probe_id(prefix) == "big-1"
    assert after[:2] == ("line", b'{"jsonrpc":"2.0","id":2,"method":"ping"}')
    assert framer.pending_bytes() == 0


def test_oversized_prefix_is_capped_at_the_probe_window_when_the_limit_is_larger() -> None:
    max_bytes = 2 * ID_PROBE_BYTES
    framer, recorder = _framer(max_bytes)
    for _ in range(max_bytes // 1000 + 2):
        framer.feed(b"q" * 1000)
    framer.feed(b"\n")
    ((kind, prefix, size),) = recorder.events
    assert kind == "oversize"
    assert prefix == b"q" * ID_PROBE_BYTES
    assert size == (max_bytes // 1000 + 2) * 1000


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"abcd\r\n"], id="one-chunk"),
        pytest.param([b"abcd\r", b"\n"], id="split-between-cr-and-lf"),
        pytest.param([b"ab", b"cd\r", b"\n"], id="split-three-ways"),
    ],
)
def test_line_of_exactly_the_limit_ending_in_crlf_is_delivered_whatever_the_chunking(chunks: list[bytes]) -> None:
    assert _feed_all(chunks, 4).events == [("line", b"abcd", 4)]


# -- property: chunk boundaries do not matter ----------------------------------------------

_line_bytes = st.lists(st.sampled_from([b"a", b"{", b"}", b" ", b"\r", b"\t", b"\xff"]), max_size=24).map(b"".join)


@st.composite
def _stream_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    lines = draw(st.lists(_line_bytes, max_size=8))
    endings = draw(st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=len(lines), max_size=len(lines)))
    stream = b"".join(line + end for line, end in zip(lines, endings, strict=True))
    stream += draw(_line_bytes)  # an unfinished tail
    cuts = sorted(draw(st.sets(st.integers(0, len(stream)), max_size=12)))
    return stream, cuts


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=300, deadline=None)
@given(_stream_and_cuts(), st.integers(1, 16))
def test_any_chunking_of_a_stream_gives_the_same_lines_and_oversize_reports(case: tuple[bytes, list[int]], max_bytes: int) -> None:
    stream, cuts = case
    whole = _feed_all([stream], max_bytes)
    chunked = _feed_all(_split(stream, cuts), max_bytes)
    assert [(kind, size) for kind, _, size in chunked.events] == [(kind, size) for kind, _, size in whole.events]
    assert chunked.lines == whole.lines
    for kind, data, _ in chunked.events:
        if kind == "oversize":
            assert len(data) <= ID_PROBE_BYTES
            assert data in stream


@settings(max_examples=200, deadline=None)
@given(st.lists(_line_bytes.filter(lambda b: b"\r" not in b), max_size=8), st.data())
def test_lines_within_the_limit_come_out_as_they_went_in(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(stream)), max_size=12)))
    expected = [line for line in lines if line and not line.isspace()]
    assert _feed_all(_split(stream, cuts), 64).lines == expected
