"""Newline-delimited JSON framing with a size limit. Pure: bytes in, callbacks out.

MCP's stdio transport sends one JSON-RPC message per line. `LineFramer` splits a byte stream
into lines without ever holding more than the limit (plus one read chunk) of a line that
never ends: an oversized line is discarded as it streams in, and only its first bytes are
kept so that its `id` can still be found.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from gateway.protocol.jsonrpc import ID_PROBE_BYTES

DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024

LineHandler = Callable[[bytes], None]
OversizeHandler = Callable[[bytes, int], None]


class LineFramer:
    """Feed it chunks; it calls `on_line(line)` per complete line (without the newline or a
    trailing CR; blank lines are skipped) and `on_oversize(prefix, size)` per line longer than
    `max_bytes`, where `size` is the full length seen."""

    __slots__ = ("_discarding", "_last", "_max", "_on_line", "_on_oversize", "_parts", "_prefix", "_size")

    def __init__(self, on_line: LineHandler, on_oversize: OversizeHandler, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        self._max = max_bytes
        self._on_line = on_line
        self._on_oversize = on_oversize
        self._parts: list[bytes] = []
        self._size = 0
        self._discarding = False
        self._prefix = b""
        self._last = b""
        self._last = b""  # last byte held, to see a CR that ended an earlier chunk

    def feed(self, data: bytes) -> None:
        start = 0
        end = len(data)
        while start < end:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._hold(data[start:] if start else data)
                return
            piece = data[start:nl]
            start = nl + 1
            if self._discarding:
                ends_in_cr = piece.endswith(b"\r") if piece else self._last == b"\r"
                size = self._size + len(piece) - ends_in_cr
                prefix = self._prefix
                self._reset()
                self._on_oversize(prefix, size)
                continue
            if self._parts:
                self._parts.append(piece)
                piece = b"".join(self._parts)
                self._parts = []
                self._size = 0
            self._emit(piece)

    def pending_bytes(self) -> int:
        """Bytes of an unfinished line held (or counted, when discarding)."""
        return self._size

    def _emit(self, line: bytes) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self._max:
            self._on_oversize(line[:ID_PROBE_BYTES], len(line))
        elif line and not line.isspace():
            self._on_line(line)

    def _hold(self, tail: bytes) -> None:
        self._size += len(tail)
        self._last = tail[-1:]
        if self._discarding:
            return
        self._parts.append(tail)
        # One byte of slack: a line of exactly the limit may still end in CR LF.
        if self._size > self._max + 1:
            # Keep only the probe prefix; count the rest as it streams past.
            self._prefix = b"".join(self._parts)[:ID_PROBE_BYTES]
            self._parts = []
            self._discarding = True

    def _reset(self) -> None:
        self._parts = []
        self._size = 0
        self._discarding = False
        self._prefix = b""
        self._last = b""
