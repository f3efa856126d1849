"""One function wires a session, for every front: the relay between the client's sink and the
upstream's, the cassette taps around it, the write-ahead bookkeeping, the framer that cuts the
upstream's output into lines, and the upstream itself (`wire_session`). `airlock replay`, whose
upstream is the cassette, uses the relay half (`wire_relay`).

Who calls what: the front owns the client's side (its pipes or HTTP transport, its framer for
client input) and its `WriteAhead`; it feeds client lines to `WiredSession.from_client` and
commits after every chunk of input. Upstream output is committed here, after every chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.mediation.interface import Mediator
from gateway.protocol.framing import LineFramer
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT
from gateway.protocol.pipes import LineWriter
from gateway.session.evidence import WriteAhead
from gateway.session.relay import Relay
from gateway.upstream import Upstream, UpstreamSpec, open_upstream

LineSink = Callable[[bytes], None]
#: Which way a line goes: client to gateway, gateway to upstream, and back.
Direction = Literal["c2g", "g2u", "u2g", "g2c"]


class Recorder(Protocol):
    """What records a session (`recording.cassette.CassetteWriter`)."""

    def tee(self, direction: Direction, sink: LineSink) -> LineSink:
        """`sink`, recording every line passed to it first."""
        ...


@dataclass(frozen=True, slots=True)
class WiredRelay:
    """A relay and its two entry points, tapped: lines from the client, lines from the upstream."""

    relay: Relay
    from_client: LineSink
    from_upstream: LineSink


@dataclass(frozen=True, slots=True)
class WiredSession:
    """A session ready to start: its relay, its upstream (not started), the writer that feeds the
    upstream, and where the front hands client lines in."""

    relay: Relay
    upstream: Upstream
    to_upstream: LineWriter
    from_client: LineSink

    async def start(self) -> None:
        """Start the upstream and connect the relay's output to it.

        Raises:
            UpstreamStartFailed: it cannot be started or reached.
        """
        await self.upstream.start()
        self.to_upstream.attach(self.upstream.stdin)


def wire_relay(
    mediator: Mediator,
    to_client: LineSink,
    to_upstream: LineSink,
    *,
    recorder: Recorder | None = None,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> WiredRelay:
    """The relay between `to_client` and `to_upstream`; with `recorder`, every line in and out of
    it is recorded, in the direction it goes."""

    def tap(direction: Direction, sink: LineSink) -> LineSink:
        return recorder.tee(direction, sink) if recorder is not None else sink

    relay = Relay(mediator, tap("g2c", to_client), tap("g2u", to_upstream), max_in_flight=max_in_flight)
    return WiredRelay(relay, tap("c2g", relay.from_client), tap("u2g", relay.from_upstream))


def wire_session(
    mediator: Mediator,
    upstream: UpstreamSpec,
    *,
    to_client: LineSink,
    write_ahead: WriteAhead,
    after_upstream_chunk: Callable[[], None],
    max_message_bytes: int,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    recorder: Recorder | None = None,
    name: str = "upstream",
) -> WiredSession:
    """One session between the client's sink `to_client` and the upstream `upstream` names.

    The relay's lines to the upstream are buffered in a `LineWriter` (called `name`) that
    `write_ahead` releases on commit. Each chunk the upstream writes is cut into lines for the
    relay, then `after_upstream_chunk` runs (it must commit `write_ahead`), even if the framer
    raised.
    """
    writer = LineWriter(name)
    wired = wire_relay(mediator, to_client, writer.add, recorder=recorder, max_in_flight=max_in_flight)
    write_ahead.track(wired.relay, writer)
    framer = LineFramer(wired.from_upstream, wired.relay.upstream_line_too_large, max_message_bytes)

    def on_upstream_chunk(data: bytes) -> None:
        try:
            framer.feed(data)
        finally:
            after_upstream_chunk()

    return WiredSession(wired.relay, open_upstream(upstream, on_upstream_chunk), writer, wired.from_client)
