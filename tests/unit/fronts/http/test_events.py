"""gateway/fronts/http/events.py: the per-session SSE event store behind Last-Event-ID."""

from __future__ import annotations

import pytest
from mcp.server.streamable_http import EventMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter

from gateway.fronts.http.events import SessionEvents

pytestmark = pytest.mark.anyio


def _note(n: int, padding: str = "") -> object:
    return jsonrpc_message_adapter.validate_python(
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "t", "progress": n, "message": padding}}
    )


async def _replay(store: SessionEvents, last: str) -> tuple[str | None, list[tuple[str | None, int]]]:
    sent: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        sent.append(event)

    stream = await store.replay_events_after(last, send)
    return stream, [(e.event_id, e.message.params["progress"]) for e in sent]  # type: ignore[union-attr]


async def test_replay_sends_the_later_events_of_the_same_stream_only_in_order() -> None:
    store = SessionEvents()
    priming = await store.store_event("a", None)
    ids = [await store.store_event(stream, _note(n)) for n, stream in enumerate(["a", "b", "a", "a", "b"])]  # type: ignore[arg-type]
    assert await _replay(store, priming) == ("a", [(ids[0], 0), (ids[2], 2), (ids[3], 3)])
    assert await _replay(store, ids[2]) == ("a", [(ids[3], 3)])
    assert await _replay(store, ids[1]) == ("b", [(ids[4], 4)])
    assert await _replay(store, ids[4]) == ("b", [])  # up to date: the stream, nothing to send


@pytest.mark.parametrize("last", ["999", "0", "-1", "abc", "", "1" * 400])
async def test_an_id_never_issued_replays_nothing(last: str) -> None:
    store = SessionEvents()
    await store.store_event("a", _note(1))  # type: ignore[arg-type]
    assert await _replay(store, last) == (None, [])


async def test_events_are_bounded_by_count_and_an_evicted_id_replays_nothing() -> None:
    store = SessionEvents(max_events=3)
    ids = [await store.store_event("a", _note(n)) for n in range(5)]  # type: ignore[arg-type]
    assert await _replay(store, ids[0]) == (None, [])  # evicted: resuming from it would leave a hole
    assert await _replay(store, ids[2]) == ("a", [(ids[3], 3), (ids[4], 4)])


async def test_events_are_bounded_by_bytes() -> None:
    store = SessionEvents(max_bytes=2000)
    ids = [await store.store_event("a", _note(n, "x" * 600)) for n in range(6)]  # type: ignore[arg-type]
    assert store.oldest is not None and store.oldest > 1
    kept = [i for i in ids if int(i) >= store.oldest]
    assert 1 <= len(kept) <= 3
    assert (await _replay(store, kept[0]))[1] == [(i, int(i) - 1) for i in kept[1:]]


async def test_a_replayed_message_is_the_message_stored() -> None:
    store = SessionEvents()
    first = await store.store_event("a", None)
    message = _note(5, "with _meta and unicode: é")
    await store.store_event("a", message)  # type: ignore[arg-type]
    sent: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        sent.append(event)

    await store.replay_events_after(first, send)
    assert sent[0].message.model_dump_json(by_alias=True, exclude_unset=True) == message.model_dump_json(  # type: ignore[attr-defined]
        by_alias=True, exclude_unset=True
    )


async def test_a_non_ascii_digit_is_not_an_event_id() -> None:
    store = SessionEvents()
    await store.store_event("a", _note(1))  # type: ignore[arg-type]
    assert await _replay(store, "\u00b2") == (None, [])  # "²".isdigit() is true, int() of it is not


async def test_the_byte_bound_counts_bytes_not_characters() -> None:
    store = SessionEvents(max_bytes=3000)
    for n in range(4):
        await store.store_event("a", _note(n, "\u00e9" * 600))  # type: ignore[arg-type]  # 1200 bytes of UTF-8 each
    assert store.oldest is not None and store.oldest >= 3
