"""The seam between a front and the server it relays to: what every upstream implementation
(`child.ChildProcess`, `http.HttpUpstream`) offers the session that drives it.

Lines go in through `stdin` (a `Writable`, so a `LineWriter` can attach to it), raw output comes
back through the `on_output` callable the upstream was opened with, and `exited` is set once
the upstream is gone, for whatever reason `ended_because` then gives.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.protocol.pipes import FlowLink, Writable


class Upstream(Protocol):
    """A running (or about to be started) upstream MCP server."""

    #: Set when the upstream is gone (the child exited, the connection ended).
    exited: asyncio.Event
    #: Paused when the upstream's input backs up; the reader that feeds it is attached here.
    stdin_flow: FlowLink

    @property
    def stdin(self) -> Writable:
        """Where the relay's lines to the upstream are written (after `start`)."""
        ...

    @property
    def returncode(self) -> int | None:
        """The exit status once the upstream is gone, else None."""
        ...

    async def start(self) -> None:
        """Start the child or connect.

        Raises:
            UpstreamStartFailed: it cannot be started or reached.
        """
        ...

    def pause_reading(self) -> None:
        """Stop reading the upstream's output (the client's side backed up)."""
        ...

    def resume_reading(self) -> None: ...

    def ended_because(self) -> str:
        """Why the upstream is gone, for the errors that answer its open requests."""
        ...

    async def wait_output_done(self, timeout: float) -> None:
        """After `exited`: wait (bounded) until the output it wrote is all delivered."""
        ...

    async def terminate(self, grace: float = 1.0) -> int | None:
        """End it (given `grace` seconds to finish by itself); returns its exit status."""
        ...
