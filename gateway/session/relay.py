"""The relay: one client, one upstream, JSON-RPC messages in both directions. No I/O.

The transports feed it complete lines (`from_client`, `from_upstream`) and it writes lines
through the two callables it was given. Everything passes through unchanged at the message
level (unknown methods, notifications, server-to-client requests, `_meta`, fields this
version does not know), except what the mediator refuses or rewrites, what is malformed,
and responses that answer no open request. Terminal escapes (ESC and C1 controls) in what the
upstream sends are neutralised (`screening.neutralise.neutralise_line`): a tool result cannot drive the
terminal a user reads it in.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Final

import structlog

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    MessageTooLarge,
    ParseError,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from gateway.mediation.interface import Fetch, Forward, Mediator, Refuse, Verdict, ask
from gateway.protocol import jsonrpc, methods
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT, InFlightTable, Pending
from gateway.protocol.jsonrpc import Envelope, JsonObject, RequestId
from gateway.screening.neutralise import neutralise_line

LineSink = Callable[[bytes], None]

_PREVIEW_BYTES: Final = 120

log = structlog.get_logger("airlock.relay")


@dataclass(slots=True)
class RelayCounters:
    from_client: int = 0
    from_upstream: int = 0
    refused: int = 0
    malformed_from_client: int = 0
    malformed_from_upstream: int = 0
    unsolicited: int = 0


@dataclass(frozen=True, slots=True)
class _Fetched:
    """Marks the gateway's own request in the in-flight table."""

    context: Any


def _preview(line: bytes) -> str:
    return repr(line[:_PREVIEW_BYTES]) + ("..." if len(line) > _PREVIEW_BYTES else "")


class Relay:
    """Correlates, mediates and forwards messages between one client and one upstream."""

    def __init__(
        self,
        mediator: Mediator,
        to_client: LineSink,
        to_upstream: LineSink,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self._mediator = mediator
        self._to_client = to_client
        self._to_upstream = to_upstream
        self._client_requests = InFlightTable(max_in_flight)
        self._upstream_requests = InFlightTable(max_in_flight)
        self._upstream_lost: str | None = None
        self._held: list[Envelope] = []  # client requests waiting for the gateway's own request
        self._fetching: RequestId | None = None
        #: With a deferred flight log: what was passed on since the last `commit`, as
        #: (side, id, line); see `withdraw`. None when not tracking.
        self._uncommitted: list[tuple[str, RequestId | None, bytes]] | None = None
        self.counters = RelayCounters()

    # -- deferred evidence -----------------------------------------------------------------

    def track_uncommitted(self) -> None:
        """Remember every mediated message passed on until `commit`, so that a flight log that
        fails to write the entries deciding them can have them `withdraw`n before they leave."""
        self._uncommitted = []

    def commit(self) -> None:
        """The entries deciding everything passed on so far are written."""
        if self._uncommitted:
            self._uncommitted.clear()

    def withdraw(self, error: GatewayError) -> set[int]:
        """The entries deciding what was passed on since `commit` could not be written: take
        it all back (fail closed). Forwarded requests are closed and refused with `error`;
        relayed responses are replaced by `error`. Returns the `id()`s of the lines the
        caller must drop from its outgoing buffers (they were not written yet)."""
        withdrawn: set[int] = set()
        held, self._uncommitted = self._uncommitted or [], [] if self._uncommitted is not None else None
        for side, request_id, line in held:
            withdrawn.add(id(line))
            if request_id is None:
                continue
            if side == "upstream" and self._client_requests.close(request_id) is None:
                continue  # already answered in this chunk: its response is withdrawn below
            self.counters.refused += 1
            log.error("withdrawn: its flight-log entry could not be written", side=side, id=request_id)
            self._refuse(request_id, error)
        return withdrawn

    @property
    def pending_client_requests(self) -> int:
        return len(self._client_requests)

    # -- client -> upstream -------------------------------------------------------------

    def from_client(self, line: bytes) -> None:
        """Handle one line the client sent."""
        self.counters.from_client += 1
        try:
            decoded = jsonrpc.decode(line)
        except (ParseError, MessageTooLarge) as error:  # not JSON, or nested past the limit
            self._reject_client_line(line, error, jsonrpc.probe_id(line))
            return
        if type(decoded) is list and decoded:
            self._reject_batch(line, decoded)
            return
        try:
            envelope = jsonrpc.classify(decoded)
        except InvalidRequest as error:
            self._reject_client_line(line, error, (error.data or {}).get("id"))
            return
        if envelope.kind == "request":
            self._client_request(envelope)
        elif envelope.kind == "notification":
            self._client_notification(envelope)
        else:
            self._client_response(envelope)

    def client_line_too_large(self, prefix: bytes, size: int) -> None:
        """The client sent a line over the size limit; only its first bytes are known."""
        self.counters.from_client += 1
        error = MessageTooLarge(
            f"message of {size} bytes exceeds the gateway's limit; raise --max-message-bytes to accept it",
            data={"size": size},
        )
        self._reject_client_line(prefix, error, jsonrpc.probe_id(prefix))

    def _reject_batch(self, line: bytes, batch: list[Any]) -> None:
        """MCP removed JSON-RPC batches (2025-06-18): every request in one is refused."""
        self.counters.malformed_from_client += 1
        error = InvalidRequest("JSON-RPC batches are not supported: MCP sends one message per line")
        log.warning("client batch rejected", code=error.code, preview=_preview(line))
        self._to_client(jsonrpc.batch_error_response(batch, error))

    def _reject_client_line(self, line: bytes, error: GatewayError, request_id: RequestId | None) -> None:
        self.counters.malformed_from_client += 1
        log.warning("client message rejected", code=error.code, error=error.message, id=request_id, preview=_preview(line))
        self._to_client(jsonrpc.error_response(request_id, error))

    def _client_request(self, envelope: Envelope) -> None:
        request_id = envelope.id
        method = envelope.method
        assert request_id is not None and method is not None
        if self._upstream_lost is not None:
            self._refuse(request_id, UpstreamUnavailable(self._upstream_lost))
            return
        # Claim the id first: a request refused for a reused id or a full table is never
        # decided, so the flight log never records an "allow" for a call that was not sent.
        try:
            pending = self._client_requests.open(request_id, method)
        except GatewayError as error:
            self._refuse(request_id, error)
            return
        verdict = self._decide(method, envelope.message, request_id)
        if isinstance(verdict, Fetch):
            self._held.append(envelope)  # its id stays claimed; decided again once the fetch is answered
            self._fetch(verdict)
            return
        if isinstance(verdict, Refuse):
            self._client_requests.close(request_id)
            self.counters.refused += 1
            self._refuse(request_id, verdict.error)
            return
        pending.context = verdict.context
        line = jsonrpc.encode(verdict.message if verdict.message is not None else envelope.message)
        if self._uncommitted is not None:
            self._uncommitted.append(("upstream", request_id, line))
        self._to_upstream(line)

    def _fetch(self, fetch: Fetch) -> None:
        """Send the gateway's own request upstream (one at a time), under an id of its own."""
        if self._fetching is not None:
            return
        request_id = f"airlock-fetch-{secrets.token_hex(8)}"
        self._client_requests.open(request_id, fetch.method, _Fetched(fetch.context))
        self._fetching = request_id
        message = {"jsonrpc": "2.0", "id": request_id, "method": fetch.method, "params": fetch.params}
        line = jsonrpc.encode(message)
        if self._uncommitted is not None:
            self._uncommitted.append(("upstream", None, line))
        self._to_upstream(line)

    def _fetched(self, pending: Pending, message: JsonObject) -> None:
        """The answer to the gateway's own request: the mediator learns from it, the client
        never sees it; then the requests held for it are decided again."""
        self._fetching = None
        try:
            self._mediator.on_upstream_response(pending.method, pending.context.context, message)
        except Exception:
            log.exception("mediator failed on the gateway's own request; held requests will be refused", method=pending.method)
        held, self._held = self._held, []
        for envelope in held:
            assert envelope.id is not None
            if self._client_requests.close(envelope.id) is None:
                continue  # cancelled by the client while it waited: dropped, as a cancelled request is
            self._client_request(envelope)

    def _client_notification(self, envelope: Envelope) -> None:
        """A notification is mediated as a request is (a method call without an id, e.g.
        `tools/call` sent as a notification, is still a call: some servers dispatch on the method
        alone); refused, or not decidable yet (a notification cannot wait), it is dropped."""
        method = envelope.method
        assert method is not None
        verdict = self._decide(method, envelope.message, None)
        if not isinstance(verdict, Forward):
            self.counters.refused += 1
            return
        if method == methods.CANCELLED and not self._cancel(self._client_requests, envelope):
            return
        line = jsonrpc.encode(verdict.message if verdict.message is not None else envelope.message)
        if self._uncommitted is not None and not method.startswith(methods.NOTIFICATION_PREFIX):
            self._uncommitted.append(("upstream", None, line))  # a call: its entry decides it
        self._to_upstream(line)

    def _decide(self, method: str, message: JsonObject, request_id: RequestId | None) -> Verdict:
        asked = ask(self._mediator.on_client_request, method, message, not_done="decide this request", undone="it was not forwarded")
        verdict = Refuse(asked) if isinstance(asked, GatewayError) else asked
        if isinstance(verdict, Refuse):
            log.info("request refused", method=method, id=request_id, code=verdict.error.code, error=verdict.error.message)
        return verdict

    def _client_response(self, envelope: Envelope) -> None:
        pending = self._upstream_requests.close(envelope.id) if envelope.id is not None else None
        if pending is None:
            self._unsolicited("client", envelope)
            return
        message = ask(self._mediator.on_client_response, pending.method, pending.context, envelope.message,
                      not_done="check this response", undone="it was withheld")  # fmt: skip
        if isinstance(message, GatewayError):
            log.info("client response withheld from the upstream", method=pending.method, id=pending.id, error=message.message)
            message = jsonrpc.error_response(pending.id, message)
        self._to_upstream(message if type(message) is bytes else jsonrpc.encode(message))

    def _decide_upstream(self, method: str, message: JsonObject, request_id: RequestId) -> Verdict:
        """The mediator's verdict on a request from the upstream (sampling, elicitation, roots)."""
        asked = ask(self._mediator.on_upstream_request, method, message, not_done="decide this request", undone="it was not relayed")
        return Refuse(asked) if isinstance(asked, GatewayError) else asked

    def _refuse(self, request_id: RequestId, error: GatewayError) -> None:
        self._to_client(jsonrpc.error_response(request_id, error))

    # -- upstream -> client -------------------------------------------------------------

    def from_upstream(self, line: bytes) -> None:
        """Handle one line the upstream wrote to its stdout."""
        self.counters.from_upstream += 1
        try:
            envelope = jsonrpc.classify(jsonrpc.decode(line))
        except MessageTooLarge as error:  # nested past the limit: the request it answers gets the error
            self._upstream_unrelayable(line, error.message, error)
            return
        except GatewayError as error:
            self._upstream_garbage(line, error.message)
            return
        if envelope.kind == "response":
            self._upstream_response(envelope)
        elif envelope.kind == "request":
            assert envelope.id is not None and envelope.method is not None
            verdict = self._decide_upstream(envelope.method, envelope.message, envelope.id)
            if isinstance(verdict, Fetch):
                verdict = Refuse(GatewayError("the gateway cannot hold a request from the upstream"))
            if isinstance(verdict, Refuse):
                self._to_upstream(jsonrpc.error_response(envelope.id, verdict.error))
                return
            try:
                self._upstream_requests.open(envelope.id, envelope.method, verdict.context)
            except GatewayError as error:
                self._to_upstream(jsonrpc.error_response(envelope.id, error))
                return
            outgoing = verdict.message if verdict.message is not None else envelope.message
            self._to_client(neutralise_line(jsonrpc.encode(outgoing)))
        else:
            assert envelope.method is not None
            if envelope.method == methods.CANCELLED and not self._cancel(self._upstream_requests, envelope):
                return
            seen = ask(self._mediator.on_upstream_notification, envelope.method, envelope.message,
                       not_done="label this notification", undone="it was not relayed")  # fmt: skip
            if isinstance(seen, GatewayError):  # fail closed: what could not be labelled is not relayed
                return
            self._to_client(neutralise_line(jsonrpc.encode(seen if seen is not None else envelope.message)))

    def upstream_line_too_large(self, prefix: bytes, size: int) -> None:
        """The upstream wrote a line over the size limit: answer the request it was for."""
        self.counters.from_upstream += 1
        why = f"the upstream's response of {size} bytes exceeds the gateway's limit"
        self._upstream_unrelayable(prefix, why, MessageTooLarge(f"{why}; raise --max-message-bytes to accept it", data={"size": size}))

    def _upstream_unrelayable(self, line: bytes, why: str, error: GatewayError) -> None:
        """An upstream line the gateway cannot relay: the request it answers (its id read from
        the line's first bytes) is answered with `error`, so no caller waits forever."""
        request_id = jsonrpc.probe_id(line)
        pending = self._client_requests.close(request_id) if request_id is not None else None
        self._upstream_garbage(line, why)
        if pending is not None:
            self._refuse(pending.id, error)

    def _upstream_garbage(self, line: bytes, why: str) -> None:
        self.counters.malformed_from_upstream += 1
        log.warning(
            "upstream wrote an invalid message to stdout; not relayed",
            code=UpstreamProtocolError.code,
            error=why,
            preview=_preview(line),
        )

    def _upstream_response(self, envelope: Envelope) -> None:
        if envelope.id is None:
            # id null: the upstream could not read some request. Not relayable to anyone
            # specific; report it.
            self._upstream_garbage(jsonrpc.encode(envelope.message), "error response with id null")
            return
        pending = self._client_requests.close(envelope.id)
        if pending is None:
            self._unsolicited("upstream", envelope)
            return
        if type(pending.context) is _Fetched:
            self._fetched(pending, envelope.message)
            return
        # Fail closed: an unmediated response might show what the policy hides.
        message = ask(self._mediator.on_upstream_response, pending.method, pending.context, envelope.message,
                       not_done="check this response", undone="it was withheld")  # fmt: skip
        if isinstance(message, GatewayError):
            log.error("response withheld", method=pending.method, id=pending.id, error=message.message)
            self._refuse(pending.id, message)
            return
        line = message if type(message) is bytes else neutralise_line(jsonrpc.encode(message))
        if self._uncommitted is not None:
            self._uncommitted.append(("client", pending.id, line))
        self._to_client(line)

    # -- both ---------------------------------------------------------------------------

    def _cancel(self, own_requests: InFlightTable, envelope: Envelope) -> bool:
        """A `notifications/cancelled` closes the sender's own open request: no answer is owed
        after it (MCP 2025-11-25, cancellation). Returns whether to forward it, which is only
        when that request was open: cancelling what the gateway itself answered, or an id
        never sent, concerns nobody downstream."""
        params = envelope.message.get("params")
        request_id = params.get("requestId") if type(params) is dict else None
        if (type(request_id) is int or type(request_id) is str) and own_requests.close(request_id) is not None:
            return True
        log.info("cancellation of no open request dropped", id=request_id)
        return False

    def _unsolicited(self, side: str, envelope: Envelope) -> None:
        self.counters.unsolicited += 1
        log.info("response to no open request dropped", side=side, id=envelope.id)

    def upstream_lost(self, reason: str) -> list[RequestId]:
        """The upstream is gone: answer every open client request with an error, refuse all
        later ones. Returns the ids that were answered."""
        self._upstream_lost = reason
        answered = []
        self._held, self._fetching = [], None
        for pending in self._client_requests.drain():
            if type(pending.context) is _Fetched:
                continue  # the gateway's own request: nobody to answer
            answered.append(pending.id)
            self._refuse(pending.id, UpstreamUnavailable(reason, data={"method": pending.method}))
        self._upstream_requests.drain()
        return answered

    def describe(self) -> dict[str, Any]:
        """Counters for the shutdown summary."""
        return {"pending_client_requests": len(self._client_requests), **asdict(self.counters)}
