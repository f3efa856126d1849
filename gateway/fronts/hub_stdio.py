"""`airlock run --all`: one stdio client, every configured upstream, one session (see `hub`).

The I/O shell around `Hub`: one child (or remote connection) and one `Relay` per upstream, the
client's pipes, signals and the shutdown order. As in `runner`, entries decided while handling
one chunk of input are written to the flight log (one log for the whole session) before
anything they decide leaves. An upstream that dies is left out of the session (its open
requests answered with -32031); the gateway stops when the client's input ends, on SIGTERM or
SIGINT, or when every upstream is gone.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from gateway.errors import EXIT_OK, EXIT_UPSTREAM, MessageTooLarge
from gateway.evidence.flightlog import FlightLog
from gateway.fronts import DRAIN_TIMEOUT
from gateway.fronts.stdio import RunSettings
from gateway.mediation.interface import Mediator
from gateway.protocol import jsonrpc
from gateway.protocol.framing import LineFramer
from gateway.protocol.pipes import FlowLink, FramedReader, LineWriter, WriterProtocol, open_read_fd, open_write_fd
from gateway.session.evidence import LineTrace, WriteAhead
from gateway.session.hub import Hub
from gateway.session.wiring import wire_session
from gateway.upstream import Upstream

log = structlog.get_logger("airlock.hub")

#: How long `initialize` and lists wait for every upstream before answering without the silent ones.
GATHER_TIMEOUT: Final = 30.0


@dataclass(frozen=True, slots=True)
class HubUpstream:
    name: str
    settings: RunSettings  # its command (or URL) and limits
    mediator: Mediator


class _AllChildren:
    """Pauses and resumes reading every upstream at once (the client's output backed up)."""

    def __init__(self, children: Sequence[Upstream]) -> None:
        self._children = children

    def pause_reading(self) -> None:
        for child in self._children:
            child.pause_reading()

    def resume_reading(self) -> None:
        for child in self._children:
            child.resume_reading()


async def run_hub_stdio(
    upstreams: Sequence[HubUpstream], *, flight_log: FlightLog | None = None, max_message_bytes: int, stdin_fd: int = 0, stdout_fd: int = 1
) -> int:
    """Serve every upstream as one server on this process's stdin/stdout until the client ends.
    Returns 0 after a requested shutdown, 3 when every upstream was lost."""
    loop = asyncio.get_running_loop()
    to_client = LineWriter("client")
    # Fail closed across the hub: the hub re-encodes what a relay sends, so the client lines made
    # from the lines a relay withdraws are traced (see `LineTrace`).
    trace = LineTrace(to_client.add, enabled=flight_log is not None)
    write_ahead = WriteAhead(flight_log, to_client, trace=trace)

    def upstream_output(index: int) -> Callable[[bytes], None]:
        return trace.from_relay(lambda line: hub.from_upstream(index, line))

    def flush() -> None:
        write_ahead.commit()
        hub.commit()

    sessions = [
        wire_session(
            upstream.mediator,
            upstream.settings.upstream,
            to_client=upstream_output(index),
            write_ahead=write_ahead,
            after_upstream_chunk=flush,
            max_message_bytes=max_message_bytes,
            max_in_flight=upstream.settings.max_in_flight,
            name=f"upstream {upstream.name}",
        )
        for index, upstream in enumerate(upstreams)
    ]
    relays = [session.relay for session in sessions]
    children = [session.upstream for session in sessions]
    hub = Hub([u.name for u in upstreams], trace.to_client, [session.from_client for session in sessions])
    started: list[Upstream] = []
    try:
        for session in sessions:
            await session.start()
            started.append(session.upstream)
    except BaseException:
        for child in started:
            await child.terminate(grace=0.0)
        raise

    stop = asyncio.Event()
    reason: list[str] = []

    def stop_because(why: str) -> None:
        if not reason:
            reason.append(why)
        stop.set()

    client_flow = FlowLink()
    client_flow.reader = _AllChildren(children)
    stdout = await open_write_fd(stdout_fd, WriterProtocol(client_flow, lambda exc: stop_because("client closed its output")))
    to_client.attach(stdout)

    def client_line_too_large(prefix: bytes, size: int) -> None:
        error = MessageTooLarge(f"message of {size} bytes exceeds the limit of {max_message_bytes} bytes")
        to_client.add(jsonrpc.error_response(jsonrpc.probe_id(prefix), error))
        log.error("client message too large; refused", bytes=size)

    client_framer = LineFramer(hub.from_client, client_line_too_large, max_message_bytes)
    reader = FramedReader(client_framer, flush, lambda: stop_because("client closed its input"))
    client_reader = await open_read_fd(stdin_fd, reader)
    for child in children:
        child.stdin_flow.reader = client_reader
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_because, f"received {signal.Signals(sig).name}")

    lost: set[int] = set()

    async def watch(index: int, child: Upstream) -> None:
        await child.exited.wait()
        if stop.is_set():
            return  # ended by the shutdown
        await child.wait_output_done(1.0)
        why = child.ended_because()
        log.error("an upstream is gone; the session goes on without it", server=upstreams[index].name, reason=why)
        relays[index].upstream_lost(why)
        hub.upstream_lost(index, why)
        flush()
        lost.add(index)
        if len(lost) == len(children):
            stop_because("every upstream is gone")

    watchers = [asyncio.ensure_future(watch(i, child)) for i, child in enumerate(children)]

    async def expire_gathers() -> None:
        while True:
            await asyncio.sleep(1.0)
            hub.expire(GATHER_TIMEOUT)
            flush()

    watchers.append(asyncio.ensure_future(expire_gathers()))
    try:
        await stop.wait()
        log.info("shutting down", reason=reason[0] if reason else "stopped")
        if reason and reason[0] == "client closed its input" and any(r.pending_client_requests for r in relays):
            deadline = loop.time() + DRAIN_TIMEOUT
            while any(r.pending_client_requests for r in relays) and loop.time() < deadline and len(lost) < len(children):
                await asyncio.sleep(0.02)
        for index, child in enumerate(children):
            if index not in lost:
                await child.terminate(grace=upstreams[index].settings.shutdown_grace)
        await to_client.drain(2.0)
        if flight_log is not None:
            await flight_log.aclose(f"clean shutdown ({reason[0] if reason else 'stopped'})")
        return EXIT_UPSTREAM if len(lost) == len(children) else EXIT_OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for watcher in watchers:
            watcher.cancel()
        for child in children:
            if child.returncode is None:
                await child.terminate(grace=0.0)
