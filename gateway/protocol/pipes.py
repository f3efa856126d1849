"""Native asyncio pipe plumbing for the stdio hot path.

The SDK's `stdio_server()` hops to a worker thread per line and caps a relay near 1,000
calls/s. Here the event loop's own pipe transports call back with whole chunks; every line in
a chunk is relayed synchronously and each side gets one `write` per chunk.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol

import structlog

from gateway.protocol.framing import LineFramer

log = structlog.get_logger("airlock.pipes")

#: Write-buffer high-water mark of each side: above it, the opposite side stops reading.
HIGH_WATER: Final = 1024 * 1024
LOW_WATER: Final = 256 * 1024
_READ_CHUNK: Final = 256 * 1024


class Writable(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class Pausable(Protocol):
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class LineWriter:
    """Collects lines and writes them in one call per flush; drops them once the peer is gone."""

    __slots__ = ("_buffer", "_transport", "dropped", "name", "written")

    def __init__(self, name: str) -> None:
        self.name = name
        self._buffer: list[bytes] = []
        self._transport: Writable | None = None
        self.dropped = 0
        self.written = 0

    def attach(self, transport: Writable) -> None:
        self._transport = transport

    def add(self, line: bytes) -> None:
        self._buffer.append(line)
        self._buffer.append(b"\n")

    def discard(self, line_ids: set[int]) -> None:
        """Drop buffered lines by identity (`id()`), e.g. what `Relay.withdraw` takes back."""
        if line_ids and self._buffer:
            kept = [line for line in self._buffer[::2] if id(line) not in line_ids]
            self._buffer.clear()
            for line in kept:
                self.add(line)

    def flush(self) -> None:
        if not self._buffer:
            return
        transport = self._transport
        if transport is None:
            return  # not attached yet; kept until it is
        lines = len(self._buffer) // 2
        if transport.is_closing():
            self.dropped += lines
        else:
            transport.write(b"".join(self._buffer))
            self.written += lines
        self._buffer.clear()

    def buffered(self) -> int:
        transport = self._transport
        return 0 if transport is None or transport.is_closing() else transport.get_write_buffer_size()

    async def drain(self, timeout: float) -> None:
        """Flush, then wait (at most `timeout` seconds) for the OS to take the bytes."""
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.buffered() and loop.time() < deadline:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        self.flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class FlowLink:
    """Back-pressure between a writer and the reader that feeds it: when the writer's buffer
    passes the high-water mark, the reader is paused until the buffer drains."""

    def __init__(self) -> None:
        self.reader: Pausable | None = None
        self.paused = False

    def pause(self) -> None:
        if self.reader is not None and not self.paused:
            self.paused = True
            self.reader.pause_reading()

    def resume(self) -> None:
        if self.reader is not None and self.paused:
            self.paused = False
            self.reader.resume_reading()


class FramedReader(asyncio.Protocol):
    """Read side of a pipe: frames lines, then runs `after_chunk` once per chunk."""

    def __init__(self, framer: LineFramer, after_chunk: Callable[[], None], on_eof: Callable[[], None]) -> None:
        self._framer = framer
        self._after_chunk = after_chunk
        self._on_eof = on_eof
        self._eof = False

    def data_received(self, data: bytes) -> None:
        try:
            self._framer.feed(data)
        finally:
            self._after_chunk()

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if not self._eof:
            self._eof = True
            self._on_eof()


class WriterProtocol(asyncio.BaseProtocol):
    """Write side of a pipe: forwards flow control to a `FlowLink`, reports the peer leaving."""

    def __init__(self, link: FlowLink, on_lost: Callable[[Exception | None], None]) -> None:
        self._link = link
        self._on_lost = on_lost

    def pause_writing(self) -> None:
        self._link.pause()

    def resume_writing(self) -> None:
        self._link.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost(exc)


class _BlockingFileWriter:
    """For a stdout that is a regular file (asyncio pipes refuse those): plain writes."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def get_write_buffer_size(self) -> int:
        return 0


class _ThreadReader:
    """For a stdin that asyncio cannot poll (a regular file, /dev/null): a reader thread."""

    def __init__(self, fd: int, protocol: asyncio.Protocol, loop: asyncio.AbstractEventLoop) -> None:
        self._fd = fd
        self._protocol = protocol
        self._loop = loop
        self._resume = threading.Event()
        self._resume.set()
        self._thread = threading.Thread(target=self._run, name="airlock-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._resume.wait()
            try:
                chunk = os.read(self._fd, _READ_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                self._loop.call_soon_threadsafe(self._protocol.eof_received)
                return
            self._loop.call_soon_threadsafe(self._protocol.data_received, chunk)

    def pause_reading(self) -> None:
        self._resume.clear()

    def resume_reading(self) -> None:
        self._resume.set()


def _pollable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)


async def open_read_fd(fd: int, protocol: asyncio.Protocol) -> Pausable:
    """Connect `protocol` to a readable file descriptor (pipe, socket, tty, or file)."""
    loop = asyncio.get_running_loop()
    if _pollable(fd):
        try:
            transport, _ = await loop.connect_read_pipe(lambda: protocol, os.fdopen(fd, "rb", buffering=0, closefd=False))
            return transport
        except (ValueError, OSError):
            pass  # e.g. /dev/null cannot be polled
    return _ThreadReader(fd, protocol, loop)


async def open_write_fd(fd: int, protocol: WriterProtocol) -> Writable:
    """Connect a writable file descriptor; regular files get plain blocking writes."""
    loop = asyncio.get_running_loop()
    if _pollable(fd):
        try:
            transport: Any
            transport, _ = await loop.connect_write_pipe(lambda: protocol, os.fdopen(fd, "wb", buffering=0, closefd=False))
            transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
            return transport  # type: ignore[no-any-return]
        except (ValueError, OSError):
            pass
    return _BlockingFileWriter(fd)


class QueueSink:
    """A `LineWriter` target for message transports (HTTP, SSE): each line goes onto a queue
    that a sender task drains; `close` puts None to end it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed = False

    def write(self, data: bytes) -> None:
        for line in data.split(b"\n"):
            if line:
                self.queue.put_nowait(line)

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return self.queue.qsize()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
