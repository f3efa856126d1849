"""`airlock run`: one stdio client, one stdio upstream, the relay between them.

This is the thin I/O shell around `Relay`: it owns the pipes, the child process, signals and
the shutdown order. Shutdown order matters for "nothing acknowledged is lost": on end of
input, open requests are given time to be answered before the upstream is ended; when the
upstream dies, every open request is answered with an error before the gateway exits.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.errors import EXIT_OK, EXIT_UPSTREAM
from gateway.evidence.flightlog import FlightLog
from gateway.evidence.rotation import rotate_key
from gateway.fronts import DRAIN_TIMEOUT
from gateway.mediation.interface import Mediator
from gateway.protocol.framing import DEFAULT_MAX_MESSAGE_BYTES, LineFramer
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT
from gateway.protocol.pipes import FlowLink, FramedReader, LineWriter, WriterProtocol, open_read_fd, open_write_fd
from gateway.recording.cassette import CassetteWriter
from gateway.session.evidence import WriteAhead
from gateway.session.relay import Relay
from gateway.session.wiring import wire_session
from gateway.upstream import Upstream, UpstreamSpec

log = structlog.get_logger("airlock.run")


@dataclass(frozen=True, slots=True)
class RunSettings:
    #: A command to start as a child process, or a remote server (streamable HTTP or SSE).
    upstream: UpstreamSpec
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    #: Seconds the upstream gets to exit by itself after its stdin closes, before SIGTERM.
    shutdown_grace: float = 1.0


class _Stop:
    """Why the gateway is stopping; the first reason wins."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason: str | None = None

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self.event.set()


async def run_stdio(
    settings: RunSettings,
    mediator: Mediator,
    *,
    flight_log: FlightLog | None = None,
    key_path: Path | None = None,
    recorder: CassetteWriter | None = None,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
) -> int:
    """Relay between this process's stdin/stdout and a child MCP server until one side ends.

    Returns the process exit status (0 after a requested shutdown, 3 when the upstream
    failed). Raises `UpstreamStartFailed` when the child cannot be started.
    """
    loop = asyncio.get_running_loop()
    to_client = LineWriter("client")
    stop = _Stop()
    drained = asyncio.Event()
    draining = False
    # One log write per chunk of input, always before what it decides leaves (write-ahead).
    write_ahead = WriteAhead(flight_log, to_client)

    def flush() -> None:
        write_ahead.commit()
        if draining and relay.pending_client_requests == 0:
            drained.set()

    session = wire_session(
        mediator,
        settings.upstream,
        to_client=to_client.add,
        write_ahead=write_ahead,
        after_upstream_chunk=flush,
        max_message_bytes=settings.max_message_bytes,
        max_in_flight=settings.max_in_flight,
        recorder=recorder,
    )
    relay, child = session.relay, session.upstream
    await session.start()

    client_flow = FlowLink()  # stdout backs up -> stop reading the upstream
    client_flow.reader = child
    stdout = await open_write_fd(stdout_fd, WriterProtocol(client_flow, lambda exc: stop.set("client closed its output")))
    to_client.attach(stdout)
    flush()  # anything the upstream said before stdout was attached

    client_framer = LineFramer(session.from_client, relay.client_line_too_large, settings.max_message_bytes)
    reader = FramedReader(client_framer, flush, lambda: stop.set("client closed its input"))
    child.stdin_flow.reader = await open_read_fd(stdin_fd, reader)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set, f"received {signal.Signals(sig).name}")
    rotations: set[asyncio.Task[None]] = set()
    if flight_log is not None and key_path is not None:
        log_, path = flight_log, key_path

        def on_hangup() -> None:
            task = asyncio.ensure_future(rotate_key(log_, path))
            rotations.add(task)
            task.add_done_callback(rotations.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
    child_exit = asyncio.ensure_future(child.exited.wait())
    stop_wait = asyncio.ensure_future(stop.event.wait())
    try:
        await asyncio.wait({child_exit, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not stop.event.is_set():
            exit_status = await _upstream_died(child, relay, to_client)
            if flight_log is not None:
                await flight_log.aclose(f"upstream exited (status {child.returncode})")
            return exit_status
        log.info("shutting down", reason=stop.reason, **relay.describe())
        if stop.reason == "client closed its input" and relay.pending_client_requests and not child.exited.is_set():
            draining = True
            flush()
            try:
                await asyncio.wait_for(_first(drained.wait(), child.exited.wait()), DRAIN_TIMEOUT)
            except TimeoutError:
                log.warning("open requests unanswered at shutdown", pending=relay.pending_client_requests)
        status = await child.terminate(grace=settings.shutdown_grace)
        log.info("upstream ended", status=status)
        await to_client.drain(2.0)
        if flight_log is not None:
            await flight_log.aclose(f"clean shutdown ({stop.reason})")
            log.info("flight log sealed", path=str(flight_log.path), entries=flight_log.entries_written)
        return EXIT_OK
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for task in rotations:
            await task
        for waiter in (child_exit, stop_wait):
            waiter.cancel()
        if child.returncode is None:
            await child.terminate(grace=0.0)


async def _upstream_died(child: Upstream, relay: Relay, to_client: LineWriter) -> int:
    await child.wait_output_done(1.0)
    reason = child.ended_because()
    answered = relay.upstream_lost(reason)
    to_client.flush()
    log.error(reason + "; check its output above", answered_with_error=len(answered), **relay.describe())
    await child.terminate(grace=0.0)  # the rest of its process group
    await to_client.drain(2.0)
    return EXIT_UPSTREAM


async def _first(*waits: Coroutine[Any, Any, Any]) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
