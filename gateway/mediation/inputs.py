"""What an upstream asks of the client: sampling, elicitation and roots, sent as requests
(2025-11-25) or inside an `input_required` result (2026-07-28), mediated alike. Pure but for
the flight log it is handed.

Each ask is decided by `[server_requests]` (and recorded), its text labelled untrusted (in its
`params._meta` for the client and in the session's provenance, `Labelling.server_request`),
and the client's answer goes to the upstream through the flow rules as the arguments of
`SERVER.METHOD` (`SinkCheck.answer`; for a retried 2026-07-28 request, its `inputResponses`,
checked by `SinkCheck.check` with the method each key was asked for). A method an upstream may
not ask is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.errors import InvalidParams, MethodNotFound, PolicyDenied
from gateway.evidence.flightlog import FlightLog
from gateway.mediation.interface import Forward, Refuse, Verdict
from gateway.mediation.labelling import Labelling
from gateway.policy.engine import CompiledPolicy, Outcome, server_request_decision
from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import JsonObject

#: What an `input_required` result may ask for (the schema's `InputRequest`).
_INPUT_METHODS: Final = frozenset({methods.SAMPLING, methods.ELICITATION, methods.ROOTS_LIST})
_REMEMBERED: Final = 10_000


@dataclass(frozen=True, slots=True)
class ServerRequest:
    """An upstream's request let through: the client's answer is checked (`method`), and
    names the entry that decided it."""

    method: str
    entry_hash: str | None


class Inputs:
    """One session's asks from one server (`identity()`: its current name)."""

    def __init__(self, policy: CompiledPolicy, identity: Callable[[], str], labelling: Labelling, flight_log: FlightLog | None) -> None:
        self._policy = policy
        self._identity = identity
        self._labelling = labelling
        self._log = flight_log
        #: `inputRequests` keys of `input_required` results -> the method each asked for.
        self.asked: dict[str, str] = {}

    def request(self, method: str, message: JsonObject) -> Verdict:
        """A request from the upstream (see the module doc)."""
        known = method in methods.SERVER_REQUEST_METHODS
        if not known and self._policy.source.unknown_methods != "mediate":
            self._record(method, message.get("id"), message.get("params"), "deny", "methods.unknown", _unknown(method))
            return Refuse(MethodNotFound(_unknown(method)))
        decision = server_request_decision(method, self._identity(), self._policy)
        entry_hash = None
        if decision is not None:
            entry_hash = self._record(method, message.get("id"), message.get("params"), decision.outcome, decision.rule, decision.reason)
            if not decision.forward:
                return Refuse(PolicyDenied(decision.rule, decision.reason))
        params = message.get("params")
        context = ServerRequest(method, entry_hash)
        if type(params) is not dict or (known and method not in (methods.SAMPLING, methods.ELICITATION)):
            return Forward(context)  # roots, ping, tasks: nothing the model reads
        return Forward(context, self._labelling.server_request(method, message, params))

    def input_required(self, message: JsonObject, request_id: Any) -> JsonObject:
        """A 2026-07-28 `input_required` result: each of its `inputRequests` decided and labelled
        as the request it stands for. Raises the refusal when one may not be asked."""
        result: dict[str, Any] = message["result"]
        asks = result.get(methods.INPUT_REQUESTS_KEY)
        if asks is None:
            return message
        if type(asks) is not dict:
            raise InvalidParams("the upstream's input_required result has inputRequests that are not an object; withheld")
        out: dict[str, Any] = {}
        for key, ask in asks.items():
            method = ask.get("method") if type(ask) is dict else None
            if method not in _INPUT_METHODS:
                why = f"input request {str(key)[:60]!r}: " + _unknown(str(method)[:80])
                self._record(str(method)[:80], request_id, ask, "deny", "methods.unknown", why)
                raise MethodNotFound(why)
            verdict = self.request(method, {"jsonrpc": "2.0", "id": request_id, **ask})
            if isinstance(verdict, Refuse):
                raise verdict.error
            if len(self.asked) >= _REMEMBERED:
                self.asked.pop(next(iter(self.asked)))
            self.asked[str(key)] = method
            rewritten = verdict.message if isinstance(verdict, Forward) and verdict.message is not None else ask
            out[key] = {k: v for k, v in rewritten.items() if k not in ("jsonrpc", "id")}
        return {**message, "result": {**result, methods.INPUT_REQUESTS_KEY: out}}

    def _record(self, method: str, request_id: Any, params: Any, outcome: Outcome, rule: str, reason: str) -> str | None:
        if self._log is None:
            return None
        return self._log.record(
            kind="call",
            server=self._identity(),
            tool=method,
            request_id=log_request_id(request_id),
            args_hash=hashlib.sha256(jsonrpc.encode(params)).hexdigest(),
            decision=outcome,
            rule=rule,
            reason=reason,
            data={"direction": "server-to-client"},
        )


def _unknown(method: str) -> str:
    return f"an upstream may not send the client {method!r}: the gateway does not know that request, and refuses what it cannot class"


_SAFE_INT: Final = 2**53 - 1


def log_request_id(request_id: Any) -> Any:
    """JSON-RPC ids may be integers of any size; RFC 8785 only has exact integers up to 2**53.
    Larger ones are recorded as {"big_int": "<decimal>"}, so any id can be logged."""
    if type(request_id) is int and not -_SAFE_INT <= request_id <= _SAFE_INT:
        return {"big_int": str(request_id)}
    return request_id
