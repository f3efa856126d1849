"""The in-flight tables: which requests each side is still waiting on. Pure, no I/O.

Two namespaces, because each peer picks its own ids: requests the client sent to the
upstream, and requests the upstream sent to the client (sampling, elicitation, roots, ping).
A response is only relayed when it answers a request that is still open in the opposite
direction; anything else is unsolicited and dropped by the relay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from gateway.errors import InvalidRequest, TooManyInFlight
from gateway.protocol.jsonrpc import RequestId

DEFAULT_MAX_IN_FLIGHT: Final = 4096


@dataclass(slots=True)
class Pending:
    """One open request. `context` is what the mediator attached when it let it through."""

    id: RequestId
    method: str
    context: Any = None
    cancelled: bool = False


def _key(request_id: RequestId) -> tuple[bool, RequestId]:
    # 1 and "1" are different JSON-RPC ids; so are they as dict keys, but make it explicit.
    return (type(request_id) is str, request_id)


@dataclass(slots=True)
class InFlightTable:
    """Open requests of one direction, bounded in size."""

    limit: int = DEFAULT_MAX_IN_FLIGHT
    _open: dict[tuple[bool, RequestId], Pending] = field(default_factory=dict)

    def open(self, request_id: RequestId, method: str, context: Any = None) -> Pending:
        """Record a request that is about to be forwarded.

        Raises:
            InvalidRequest: the id is already open (JSON-RPC forbids reusing it while pending).
            TooManyInFlight: the table is full.
        """
        key = _key(request_id)
        if key in self._open:
            raise InvalidRequest(
                f"request id {request_id!r} is already in flight; ids must be unique among open requests",
                data={"id": request_id},
            )
        if len(self._open) >= self.limit:
            raise TooManyInFlight(
                f"{len(self._open)} requests are already in flight (limit {self.limit}); wait for answers",
                data={"limit": self.limit},
            )
        pending = Pending(request_id, method, context)
        self._open[key] = pending
        return pending

    def close(self, request_id: RequestId) -> Pending | None:
        """Remove and return the open request with this id, or None if there is none."""
        return self._open.pop(_key(request_id), None)

    def get(self, request_id: RequestId) -> Pending | None:
        return self._open.get(_key(request_id))

    def drain(self) -> list[Pending]:
        """Remove and return every open request, oldest first."""
        pending = list(self._open.values())
        self._open.clear()
        return pending

    def __len__(self) -> int:
        return len(self._open)
