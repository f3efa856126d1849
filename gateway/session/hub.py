"""The hub: one client, several upstream servers behind one gateway, one label state. No I/O.

Wrapping each server in its own gateway gives each its own label state, so a secret read from
one server (a filesystem) can be sent out through another (a fetch tool) without any flow rule
seeing both. The hub puts several upstreams behind one client session: each upstream keeps its
own `Relay` and `PolicyMediator` (its pins, its rules, its flight-log entries under its own
server name), and every mediator shares one `Provenance`, so the flow rules see everything the
session has read, from any server.

The hub speaks MCP to the client as one server, and to each relay as its client:

- `initialize` goes to every upstream; the answer merges their capabilities and instructions.
  An upstream that fails to initialise is left out (logged); if all fail, the error is returned.
- Lists (`tools/list`, `prompts/list`, `resources/list`, `resources/templates/list`) go to every
  upstream that offers them, every page, and come back as one list. Tool and prompt names are
  prefixed `SERVER__NAME`; resources keep their URIs (the hub remembers which server listed
  which).
- `tools/call`, `prompts/get`, `completion/complete` go to the server their name (or resource)
  names, with the prefix removed; `resources/read`, `resources/subscribe` and
  `resources/unsubscribe` to the server that listed the URI. `ping` is answered by the hub;
  `logging/setLevel` goes to every upstream. A name no upstream has is refused (-32602), never
  guessed; methods the hub cannot route (tasks, `server/discover`) are refused (-32601).
- Ids are rewritten both ways (the hub's own ids towards the upstreams; server-to-client requests
  get hub ids towards the client), so two upstreams' ids can never collide; cancellations
  follow their request. Progress tokens are the client's own and pass through unchanged.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from gateway.errors import (
    FlowDenied,
    GatewayError,
    InvalidParams,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    ParseError,
    PolicyDenied,
    UpstreamUnavailable,
)
from gateway.protocol import jsonrpc, methods
from gateway.protocol.methods import LIST_METHODS
from gateway.session.directory import SEPARATOR, Directory
from gateway.session.server_requests import ServerRequests

LineSink = Callable[[bytes], None]

_CAPABILITY: Final = {"tools": "tools", "prompts": "prompts", "resources": "resources", "resourceTemplates": "resources"}
_BY_NAME: Final = frozenset({methods.TOOLS_CALL, methods.PROMPTS_GET})
_BY_URI: Final = frozenset({methods.RESOURCES_READ, methods.RESOURCES_SUBSCRIBE, methods.RESOURCES_UNSUBSCRIBE})
_BROADCAST: Final = frozenset({methods.SET_LEVEL})
_MAX_PAGES: Final = 1000
_REFUSALS: Final = frozenset({FlowDenied.code, PolicyDenied.code})

log = structlog.get_logger("airlock.hub")


@dataclass(slots=True)
class _Gather:
    """A client request answered from several upstreams (initialize, a list, setLevel)."""

    method: str
    client_id: Any
    params: dict[str, Any]
    waiting: set[int]
    results: dict[int, Any] = field(default_factory=dict)
    errors: dict[int, Any] = field(default_factory=dict)
    pages: dict[int, int] = field(default_factory=dict)
    started: float = 0.0

    def add_page(self, index: int, result: dict[str, Any]) -> str | None:
        """Upstream `index`'s page of a list; the cursor of its next page, None after its last
        (or after `_MAX_PAGES`: a server that pages forever does not hold the session)."""
        kind = LIST_METHODS[self.method]
        items = result.get(kind) if type(result.get(kind)) is list else []
        self.results.setdefault(index, []).extend(items)
        cursor = result.get("nextCursor")
        self.pages[index] = self.pages.get(index, 0) + 1
        return cursor if type(cursor) is str and cursor and self.pages[index] < _MAX_PAGES else None


def _gathered_answer(gather: _Gather, directory: Directory) -> dict[str, Any]:
    """The client's response to a gathered request, from what its upstreams answered: merged
    lists (an upstream that failed a list is left out), the merged `initialize`, else the first
    error if no upstream succeeded."""
    reply: dict[str, Any] = {"jsonrpc": "2.0", "id": gather.client_id}
    if gather.method == methods.INITIALIZE:
        merged = directory.initialized(gather.results, gather.errors, gather.params.get("protocolVersion"))
        return {**reply, "error": merged.to_error_object()} if isinstance(merged, GatewayError) else {**reply, "result": merged}
    if gather.method in LIST_METHODS:
        kind = LIST_METHODS[gather.method]
        items: list[Any] = []
        for index in sorted(gather.results):
            items.extend(directory.exported(index, kind, item) for item in gather.results[index] if type(item) is dict)
        for index, error in sorted(gather.errors.items()):
            log.warning(
                "an upstream failed a list; its items are left out",
                server=directory.names[index],
                method=gather.method,
                error=str(error)[:200],
            )
        return {**reply, "result": {kind: items}}
    refused = [e for e in gather.errors.values() if type(e) is dict and e.get("code") in _REFUSALS]
    if refused:  # a broadcast one upstream's gateway refused (a flow rule): the client must know
        return {**reply, "error": refused[0]}
    if gather.errors and not gather.results:
        return {**reply, "error": next(iter(gather.errors.values()))}
    return {**reply, "result": {}}


@dataclass(frozen=True, slots=True)
class _Route:
    """Where an answer from upstream `index` to the hub's request goes."""

    index: int
    client_id: Any = None  # forwarded: the client's own id
    gather: _Gather | None = None  # gathered: the collecting request


class Hub:
    def __init__(
        self, names: Sequence[str], to_client: LineSink, to_upstreams: Sequence[LineSink], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """`names[i]`: upstream i's server name (its prefix); `to_upstreams[i]`: feeds a line to
        upstream i's relay as if the client sent it."""
        self.directory = Directory(names)
        self.names = self.directory.names
        self._clock = clock
        self._to_client = to_client
        self._to_upstreams = list(to_upstreams)
        self._ids = itertools.count(1)
        self._routes: dict[str, _Route] = {}  # hub request id -> where its answer goes
        self._client_calls: dict[Any, tuple[int, str]] = {}  # client id -> (upstream, hub id): for cancellation
        self._gathering: set[Any] = set()  # client ids of gathered requests not answered yet
        self._server_requests = ServerRequests()
        #: Forwarded requests answered since the last `commit`: a relay that withdraws an answer (its
        #: flight-log entry could not be written) answers again, with an error, under the same id.
        self._answered: dict[str, Any] = {}

    # -- client -> upstreams ------------------------------------------------------------------

    def from_client(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line)
        except Exception as error:  # not JSON; or nested past the limit, answered under its id if readable
            deep = error if isinstance(error, MessageTooLarge) else None
            self._error(jsonrpc.probe_id(line) if deep else None, deep or ParseError("parse error: the line is not valid JSON"))
            return
        if type(message) is not dict:
            why = "batches are not supported" if type(message) is list else "a JSON-RPC message must be an object"
            self._error(None, InvalidRequest(why))
            return
        method = message.get("method")
        if "id" in message and method is None:
            self._client_response(message)
        elif type(method) is not str:
            self._error(message.get("id"), InvalidRequest("a request needs a method name"))
        elif "id" not in message:
            self._client_notification(method, message)
        elif not jsonrpc.is_valid_id(message["id"]) or message["id"] is None:
            self._error(None, InvalidRequest("the id must be a string or an integer"))
        else:
            self._client_request(method, message)

    def _client_request(self, method: str, message: dict[str, Any]) -> None:
        client_id = message["id"]
        params = jsonrpc.members(message.get("params"))
        if client_id in self._client_calls or client_id in self._gathering:
            self._error(client_id, InvalidRequest(f"request id {str(client_id)[:40]!r} is already in use by an open request"))
            return
        if method == methods.PING:
            self._send({"jsonrpc": "2.0", "id": client_id, "result": {}})
        elif method == methods.INITIALIZE:
            self._gather(method, client_id, params, set(range(len(self.names))))
        elif method in LIST_METHODS:
            capability = _CAPABILITY[LIST_METHODS[method]]
            self._gather(method, client_id, params, self.directory.offering(capability))
        elif method in _BROADCAST:
            self._gather(method, client_id, params, set(self.directory.live))
        elif method in _BY_NAME:
            target = self.directory.split(params.get("name"))
            if target is None:
                self._error(
                    client_id,
                    InvalidParams(
                        f"unknown name {str(params.get('name'))[:200]!r}: through Airlock, names are "
                        f"SERVER{SEPARATOR}NAME with SERVER one of {', '.join(self.names)} (list them again)"
                    ),
                )
                return
            self._forward(target[0], client_id, {**message, "params": {**params, "name": target[1]}})
        elif method in _BY_URI:
            owner = self.directory.owner_of(params.get("uri"))
            if owner is None:
                uri = str(params.get("uri"))[:200]
                self._error(client_id, InvalidParams(f"no upstream listed the resource {uri!r} (list resources first)"))
                return
            self._forward(owner, client_id, message)
        elif method == methods.COMPLETE:
            self._complete(client_id, message, params)
        else:
            self._error(client_id, MethodNotFound(f"{method!r} cannot be routed to one of several upstream servers"))

    def _complete(self, client_id: Any, message: dict[str, Any], params: dict[str, Any]) -> None:
        ref = jsonrpc.members(params.get("ref"))
        if ref.get("type") == "ref/prompt":
            target = self.directory.split(ref.get("name"))
            if target is not None:
                self._forward(target[0], client_id, {**message, "params": {**params, "ref": {**ref, "name": target[1]}}})
                return
        elif ref.get("type") == "ref/resource":
            index = self.directory.owner_of(ref.get("uri"))
            if index is not None:
                self._forward(index, client_id, message)
                return
        self._error(client_id, InvalidParams("completion/complete: the ref names no prompt or resource of a listed upstream"))

    def _client_notification(self, method: str, message: dict[str, Any]) -> None:
        if method == methods.CANCELLED:
            params = jsonrpc.members(message.get("params"))
            request_id = params.get("requestId")
            found = self._client_calls.pop(request_id, None) if type(request_id) in (int, str) else None
            if found is not None:
                index, hub_id = found
                self._routes.pop(hub_id, None)  # no answer is expected any more (and the relay drops a late one)
                self._to_upstreams[index](jsonrpc.encode({**message, "params": {**params, "requestId": hub_id}}))
            return
        if method == methods.PROGRESS:  # about an upstream's request (sampling, elicitation): to that upstream only
            token = jsonrpc.members(message.get("params")).get("progressToken")
            owner = self._server_requests.progress_owner(token)
            if owner is not None and owner in self.directory.live:
                self._to_upstreams[owner](jsonrpc.encode(message))
            return
        for index in sorted(self.directory.live):  # initialized, roots/list_changed...
            self._to_upstreams[index](jsonrpc.encode(message))

    def _client_response(self, message: dict[str, Any]) -> None:
        key = message["id"]
        found = self._server_requests.close(key)
        if found is None:
            log.warning("a response from the client to no request of an upstream; dropped", id=str(key)[:40])
            return
        index, upstream_id = found
        self._to_upstreams[index](jsonrpc.encode({**message, "id": upstream_id}))

    # -- upstreams -> client ------------------------------------------------------------------

    def from_upstream(self, index: int, line: bytes) -> None:
        """A line upstream `index`'s relay sends towards the client."""
        message = jsonrpc.decode(line)  # as the relay wrote it (lone surrogates, big integers included)
        if type(message) is not dict:
            return
        if "method" not in message:
            self._upstream_response(index, message)
        elif "id" in message:  # a server-to-client request: a hub id towards the client
            hub_id = self._new_id()
            token = jsonrpc.members(jsonrpc.members(message.get("params")).get("_meta")).get("progressToken")
            self._server_requests.open(hub_id, index, message["id"], token)
            self._send({**message, "id": hub_id})
        else:
            if message["method"] == methods.CANCELLED:  # the upstream gives up on its own request
                params = jsonrpc.members(message.get("params"))
                known = self._server_requests.cancel(index, params.get("requestId"))
                if known is None:
                    return
                message = {**message, "params": {**params, "requestId": known}}
            self._send(message)

    def _upstream_response(self, index: int, message: dict[str, Any]) -> None:
        key = message.get("id")
        if type(key) is not str:
            return
        route = self._routes.pop(key, None)
        if route is None:
            if key in self._answered and "error" in message:  # the relay withdrew its answer
                self._send({**message, "id": self._answered.pop(key)})
            return  # the relay answers only what it was sent: nothing else can arrive here
        if route.gather is None:
            self._client_calls.pop(route.client_id, None)
            self._answered[key] = route.client_id
            self._send({**message, "id": route.client_id})
            return
        gather = route.gather
        if "error" in message:
            gather.errors[index] = message["error"]
        elif gather.method in LIST_METHODS:
            cursor = gather.add_page(index, jsonrpc.members(message.get("result")))
            if cursor is not None:
                self._ask(index, gather, {**gather.params, "cursor": cursor})
                return
        else:
            gather.results[index] = message.get("result")
        gather.waiting.discard(index)
        if not gather.waiting:
            self._answer(gather)

    def upstream_lost(self, index: int, reason: str) -> None:
        """Upstream `index` is gone: its open requests are answered with errors; the others go on."""
        self.directory.live.discard(index)
        for hub_id, route in [(h, r) for h, r in self._routes.items() if r.index == index]:
            del self._routes[hub_id]
            error = UpstreamUnavailable(f"{self.names[index]}: {reason}").to_error_object()
            if route.gather is None:
                self._client_calls.pop(route.client_id, None)
                self._send({"jsonrpc": "2.0", "id": route.client_id, "error": error})
            else:
                route.gather.errors[index] = error
                route.gather.waiting.discard(index)
                if not route.gather.waiting:
                    self._answer(route.gather)
        self._server_requests.forget(index)

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, gather: _Gather) -> None:
        self._gathering.discard(gather.client_id)
        self._send(_gathered_answer(gather, self.directory))

    def expire(self, timeout: float) -> None:
        """Answer every gathered request (initialize, a list) that has waited more than `timeout`
        seconds without the upstreams still silent: one hung upstream must not hold the session.
        An upstream that does not answer `initialize` in time is left out of the session."""
        now = self._clock()
        late = {id(r.gather): r.gather for r in self._routes.values() if r.gather is not None and now - r.gather.started > timeout}
        for gather in late.values():
            for hub_id in [h for h, r in self._routes.items() if r.gather is gather]:
                index = self._routes.pop(hub_id).index
                gather.errors[index] = UpstreamUnavailable(f"{self.names[index]}: no answer within {timeout:g} s").to_error_object()
                gather.waiting.discard(index)
            self._answer(gather)

    def commit(self) -> None:
        """What was sent to the client so far is final (its flight-log entries are written)."""
        self._answered.clear()

    def _new_id(self, client_id: Any = None) -> str:
        """A hub id, unique in the session. A request made for a client request starts with the
        client's id (`7~hub-12`), so the flight log, which sees the hub's ids, names the client's."""
        number = next(self._ids)
        return f"{str(client_id)[:64]}~hub-{number}" if client_id is not None else f"airlock-hub-{number}"

    def _gather(self, method: str, client_id: Any, params: dict[str, Any], targets: set[int]) -> None:
        gather = _Gather(method, client_id, params, set(targets), started=self._clock())
        self._gathering.add(client_id)
        if not targets:
            self._answer(gather)
            return
        for index in sorted(targets):
            self._ask(index, gather, params)

    def _ask(self, index: int, gather: _Gather, params: dict[str, Any]) -> None:
        hub_id = self._new_id(gather.client_id)
        self._routes[hub_id] = _Route(index, gather=gather)
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": hub_id, "method": gather.method}
        if params:
            request["params"] = params
        self._to_upstreams[index](jsonrpc.encode(request))

    def _forward(self, index: int, client_id: Any, message: dict[str, Any]) -> None:
        hub_id = self._new_id(client_id)
        self._routes[hub_id] = _Route(index, client_id=client_id)
        self._client_calls[client_id] = (index, hub_id)
        self._to_upstreams[index](jsonrpc.encode({**message, "id": hub_id}))

    def _error(self, request_id: Any, error: GatewayError) -> None:
        self._to_client(jsonrpc.error_response(request_id, error))

    def _send(self, message: dict[str, Any]) -> None:
        self._to_client(jsonrpc.encode(message))
