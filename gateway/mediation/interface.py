"""The seam between the relay and whatever decides (the policy mediator, `mediator.py`). Pure:
a mediator gets values and returns values; the relay does the I/O.

The relay calls the mediator synchronously, in message order, on the event-loop thread, so a
mediator needs no locking; it must not block. `ask` is how the relay consults it: an answer, or
the error to refuse with (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from gateway.errors import GatewayError
from gateway.protocol.jsonrpc import JsonObject

Answer = TypeVar("Answer")
log = structlog.get_logger("airlock.relay")


@dataclass(frozen=True, slots=True)
class Forward:
    """Let the request through. `context` is kept with the in-flight entry and handed back with
    the response; `message` replaces the request when the mediator rewrote it."""

    context: Any = None
    message: JsonObject | None = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """Answer the request with this error instead of forwarding it."""

    error: GatewayError


@dataclass(frozen=True, slots=True)
class Fetch:
    """Not yet: the gateway first asks the upstream `method` itself (its answer goes to
    `on_upstream_response` with `context`, never to the client), then decides the request again.
    For a call to a tool the client never listed: the gateway lists the tools itself."""

    method: str
    params: JsonObject
    context: Any = None


Verdict = Forward | Refuse | Fetch


class Mediator(Protocol):
    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        """Decide a message from the client (a request; or a notification, without an id)
        before it is forwarded upstream. A refused notification is dropped."""
        ...

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        """Inspect or rewrite the upstream's response to a request this mediator let through.
        May return the response already encoded (bytes, no newline): it is then sent as is."""
        ...

    def on_upstream_notification(self, method: str, message: JsonObject) -> JsonObject | None:
        """See a notification from the upstream before it is relayed (e.g. `list_changed`);
        return the message to relay instead (labelled), or None to relay it as it is."""
        ...

    def on_upstream_request(self, method: str, message: JsonObject) -> Verdict:
        """Decide a request from the upstream (sampling, elicitation, roots) before it reaches
        the client. A Forward with a context gets `on_client_response` for the answer."""
        ...

    def on_client_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        """Inspect or rewrite the client's answer to an upstream request this mediator let
        through (with the verdict's context). Raise a GatewayError to send the upstream an
        error instead."""
        ...


class PassThrough:
    """Mediates nothing: every request is forwarded, every response relayed unchanged."""

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        return _FORWARD

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject:
        return message

    def on_upstream_notification(self, method: str, message: JsonObject) -> JsonObject | None:
        return None

    def on_upstream_request(self, method: str, message: JsonObject) -> Verdict:
        return _FORWARD

    def on_client_response(self, method: str, context: Any, message: JsonObject) -> JsonObject | bytes:
        return message


_FORWARD = Forward()


def ask(question: Callable[..., Answer], method: str, *args: Any, not_done: str, undone: str) -> Answer | GatewayError:
    """The mediator's answer to `question(method, *args)`, or the error to answer with instead:
    the mediator's own (the flight log cannot be written, a malformed message), or for any other
    exception (a bug) an internal error saying the gateway could not `not_done` and `undone`.
    Every caller refuses or withholds on an error: what the mediator could not judge never
    passes (fail closed)."""
    try:
        return question(method, *args)
    except GatewayError as error:
        return error
    except Exception:
        log.exception(f"mediator failed: could not {not_done}; {undone}", method=method)
        return GatewayError(f"the gateway could not {not_done} (internal error); {undone}")
