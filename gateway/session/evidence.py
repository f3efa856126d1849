"""Write-ahead for a session: nothing a flight-log entry decides leaves the gateway before that
entry is written.

The mediator records entries as it decides; with a flight log, the log defers them
(`FlightLog.defer_writes`) and every relay remembers what it passed on since the last commit
(`Relay.track_uncommitted`). `WriteAhead.commit`, once per chunk of input, writes the entries and
only then lets out what they decide; if they cannot be written, each relay withdraws what it
passed on since (fail closed) and the withdrawn lines are dropped from the outgoing buffers
before anything flushes. A front that re-encodes what its relays send (the hub) traces which of
its client lines were made from which relay line (`LineTrace`), so those are dropped too.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.errors import EvidenceUnavailable
from gateway.evidence.flightlog import FlightLog
from gateway.protocol.pipes import LineWriter
from gateway.session.relay import Relay

LineSink = Callable[[bytes], None]

log = structlog.get_logger("airlock.run")


class LineTrace:
    """Which client lines were made from which relay line, by identity (`id()`), between two
    commits. Only a flight log can make a relay withdraw, so without one nothing is traced."""

    __slots__ = ("_produced", "_producing", "_to_client", "enabled")

    def __init__(self, to_client: LineSink, *, enabled: bool) -> None:
        self._to_client = to_client
        self.enabled = enabled
        self._producing: list[int] = []  # the relay lines being delivered, innermost last
        self._produced: dict[int, list[int]] = {}  # relay line id -> the ids of the client lines made from it

    def from_relay(self, deliver: LineSink) -> LineSink:
        """`deliver` (what turns a relay's line into client lines), tracing what it makes."""
        producing = self._producing

        def traced(line: bytes) -> None:
            producing.append(id(line))
            try:
                deliver(line)
            finally:
                producing.pop()

        return traced

    def to_client(self, line: bytes) -> None:
        """A client line, made from the relay line being delivered (if any)."""
        self._to_client(line)
        if self._producing and self.enabled:
            self._produced.setdefault(self._producing[-1], []).append(id(line))

    def client_lines(self, withdrawn: set[int]) -> set[int]:
        """The ids of the client lines made from the relay lines `withdrawn`."""
        return {client for line in withdrawn for client in self._produced.get(line, ())}

    def clear(self) -> None:
        """What was sent so far is committed: its trace is not needed any more."""
        self._produced.clear()


class WriteAhead:
    """The commit point of one session: its flight log (or None), its relays with their upstream
    writers, and the client's writer."""

    __slots__ = ("_sides", "_to_client", "_trace", "flight_log")

    def __init__(self, flight_log: FlightLog | None, to_client: LineWriter, *, trace: LineTrace | None = None) -> None:
        """With a flight log, its hot-path entries are deferred from now on (one write per chunk)."""
        self.flight_log = flight_log
        self._to_client = to_client
        self._trace = trace
        self._sides: list[tuple[Relay, LineWriter]] = []
        if flight_log is not None:
            flight_log.defer_writes()

    def track(self, relay: Relay, to_upstream: LineWriter) -> None:
        """`relay` writes to the upstream through `to_upstream`: commit it with the rest."""
        if self.flight_log is not None:
            relay.track_uncommitted()
        self._sides.append((relay, to_upstream))

    def commit(self) -> None:
        """Write the flight-log entries decided since the last call, then let out what they
        decide (each relay's upstream writer, then the client's). If the entries cannot be
        written, every relay withdraws what it passed on since (fail closed): requests are
        refused, responses replaced by the error, and the withdrawn lines are dropped from the
        writers before they flush."""
        flight_log, sides, to_client = self.flight_log, self._sides, self._to_client
        if flight_log is not None:
            try:
                flight_log.flush()
            except EvidenceUnavailable as error:
                withheld = 0
                for relay, to_upstream in sides:
                    withdrawn = relay.withdraw(error)
                    if withdrawn:
                        withheld += len(withdrawn)
                        to_upstream.discard(withdrawn)
                        to_client.discard(self._trace.client_lines(withdrawn) if self._trace is not None else withdrawn)
                log.error("flight log write failed; what it would record was withheld", messages=withheld, error=error.message)
            for relay, _ in sides:
                relay.commit()
        for _, to_upstream in sides:
            to_upstream.flush()
        to_client.flush()
        if self._trace is not None:
            self._trace.clear()
