"""SSE resumability for `airlock serve`: each session's recent server-to-client events, so a
client whose stream broke can reconnect with `Last-Event-ID` and get what it missed.

One `SessionEvents` per HTTP session (never shared: an event id from one session means nothing
in another). Events are kept as their JSON text, bounded by count and by bytes, oldest evicted
first; a `Last-Event-ID` that was evicted, or never issued, replays nothing and is logged, so a
client is never handed a stream with a silent hole in the middle. Event ids are the session's
event counter in decimal, so "after" is a comparison, not a search.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import structlog
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage
from mcp_types.jsonrpc import jsonrpc_message_adapter

from gateway.fronts.http.settings import DEFAULT_MAX_EVENTS

log = structlog.get_logger("airlock.serve")

DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024


class SessionEvents(EventStore):
    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: deque[tuple[int, StreamId, str | None]] = deque()  # (id, stream, JSON text or None: priming)
        self._bytes = 0
        self._next = 1

    @property
    def oldest(self) -> int | None:
        return self._events[0][0] if self._events else None

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        number = self._next
        self._next += 1
        text = message.model_dump_json(by_alias=True, exclude_unset=True) if message is not None else None
        self._events.append((number, stream_id, text))
        self._bytes += len(text.encode()) if text is not None else 0
        while len(self._events) > self.max_events or self._bytes > self.max_bytes:
            _, _, dropped = self._events.popleft()
            self._bytes -= len(dropped.encode()) if dropped is not None else 0
        return str(number)

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        """Send the events of `last_event_id`'s stream that came after it, in order; the stream's
        id, or None when `last_event_id` is not one this session still holds."""
        if not (last_event_id.isascii() and last_event_id.isdigit()) or not self._events:
            log.warning("Last-Event-ID not issued by this session: nothing replayed", last_event_id=last_event_id[:40])
            return None
        after = int(last_event_id)
        first = self._events[0][0]
        if after < first or after >= self._next:
            reason = "evicted (older than the events kept)" if after < first else "never issued"
            log.warning(f"Last-Event-ID {reason}: nothing replayed; the client must start over", last_event_id=after, oldest_kept=first)
            return None
        stream = self._events[after - first][1]
        replayed = [(number, text) for number, stream_id, text in list(self._events)[after - first + 1 :] if stream_id == stream]
        for number, text in replayed:
            if text is not None:
                await send_callback(EventMessage(jsonrpc_message_adapter.validate_json(text), str(number)))
        return stream
