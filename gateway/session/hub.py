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

from gateway.errors import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, UPSTREAM_UNAVAILABLE
from gateway.protocol import jsonrpc
from gateway.session.catalogue import HUB_NAME, SEPARATOR, Catalogue

__all__ = ["HUB_NAME", "SEPARATOR", "Hub"]

LineSink = Callable[[bytes], None]

_LISTS: Final = {"tools/list": "tools", "prompts/list": "prompts", "resources/list": "resources",
                 "resources/templates/list": "resourceTemplates"}  # fmt: skip
_CAPABILITY: Final = {"tools": "tools", "prompts": "prompts", "resources": "resources", "resourceTemplates": "resources"}
_BY_NAME: Final = frozenset({"tools/call", "prompts/get"})
_BY_URI: Final = frozenset({"resources/read", "resources/subscribe", "resources/unsubscribe"})
_BROADCAST: Final = frozenset({"logging/setLevel"})
_MAX_PAGES: Final = 1000

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


@dataclass(frozen=True, slots=True)
class _Route:
    """Where an answer from upstream `index` to the hub's request goes."""

    index: int
    client_id: Any = None  # forwarded: the client's own id
    gather: _Gather | None = None  # gathered: the collecting request


class Hub:
    def __init__(self, names: Sequence[str], to_client: LineSink, to_upstreams: Sequence[LineSink], *,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """`names[i]`: upstream i's server name (its prefix); `to_upstreams[i]`: feeds a line to
        upstream i's relay as if the client sent it."""
        for name in names:
            if not name or SEPARATOR in name or name.endswith("_"):
                raise ValueError(f"server name {name!r}: must be non-empty, without {SEPARATOR!r} and not end in '_'")
        if len(set(names)) != len(names):
            raise ValueError("server names must be distinct")
        self.names = list(names)
        self._clock = clock
        self._index = {name: i for i, name in enumerate(names)}
        self._to_client = to_client
        self._to_upstreams = list(to_upstreams)
        self._ids = itertools.count(1)
        self._routes: dict[str, _Route] = {}  # hub request id -> where its answer goes
        self._client_calls: dict[Any, tuple[int, str]] = {}  # client id -> (upstream, hub id): for cancellation
        self._gathering: set[Any] = set()  # client ids of gathered requests not answered yet
        self._server_requests: dict[str, tuple[int, Any, Any]] = {}  # hub id -> (upstream, its own id, its progress token)
        self._server_progress: dict[Any, int] = {}  # progress token of an upstream's request -> that upstream
        #: Forwarded requests answered since the last `commit`: a relay that withdraws an answer (its
        #: flight-log entry could not be written) answers again, with an error, under the same id.
        self._answered: dict[str, Any] = {}
        self._live: set[int] = set(range(len(names)))  # upstreams initialised (or not yet tried)
        self._catalogue = Catalogue(names)

    # -- client -> upstreams ------------------------------------------------------------------

    def from_client(self, line: bytes) -> None:
        try:
            message = jsonrpc.decode(line)
        except Exception:
            self._error(None, PARSE_ERROR, "parse error: the line is not valid JSON")
            return
        if type(message) is not dict:
            why = "batches are not supported" if type(message) is list else "a JSON-RPC message must be an object"
            self._error(None, INVALID_REQUEST, why)
            return
        method = message.get("method")
        if "id" in message and method is None:
            self._client_response(message)
        elif type(method) is not str:
            self._error(message.get("id"), INVALID_REQUEST, "a request needs a method name")
        elif "id" not in message:
            self._client_notification(method, message)
        elif not jsonrpc.is_valid_id(message["id"]) or message["id"] is None:
            self._error(None, INVALID_REQUEST, "the id must be a string or an integer")
        else:
            self._client_request(method, message)

    def _client_request(self, method: str, message: dict[str, Any]) -> None:
        client_id = message["id"]
        params = jsonrpc.members(message.get("params"))
        if client_id in self._client_calls or client_id in self._gathering:
            self._error(client_id, INVALID_REQUEST, f"request id {str(client_id)[:40]!r} is already in use by an open request")
            return
        if method == "ping":
            self._send({"jsonrpc": "2.0", "id": client_id, "result": {}})
        elif method == "initialize":
            self._gather(method, client_id, params, set(range(len(self.names))))
        elif method in _LISTS:
            capability = _CAPABILITY[_LISTS[method]]
            self._gather(method, client_id, params, {i for i in self._live if self._catalogue.offers(i, capability)})
        elif method in _BROADCAST:
            self._gather(method, client_id, params, set(self._live))
        elif method in _BY_NAME:
            target = self._split(params.get("name"))
            if target is None:
                self._error(client_id, INVALID_PARAMS, f"unknown name {str(params.get('name'))[:200]!r}: through Airlock, names are "
                            f"SERVER{SEPARATOR}NAME with SERVER one of {', '.join(self.names)} (list them again)")  # fmt: skip
                return
            self._forward(target[0], client_id, {**message, "params": {**params, "name": target[1]}})
        elif method in _BY_URI:
            owner = self._catalogue.uri_owner(params.get("uri"), self._live)
            if owner is None:
                uri = str(params.get("uri"))[:200]
                self._error(client_id, INVALID_PARAMS, f"no upstream listed the resource {uri!r} (list resources first)")
                return
            self._forward(owner, client_id, message)
        elif method == "completion/complete":
            self._complete(client_id, message, params)
        else:
            self._error(client_id, METHOD_NOT_FOUND, f"{method!r} cannot be routed to one of several upstream servers")

    def _complete(self, client_id: Any, message: dict[str, Any], params: dict[str, Any]) -> None:
        ref = jsonrpc.members(params.get("ref"))
        if ref.get("type") == "ref/prompt":
            target = self._split(ref.get("name"))
            if target is not None:
                self._forward(target[0], client_id, {**message, "params": {**params, "ref": {**ref, "name": target[1]}}})
                return
        elif ref.get("type") == "ref/resource":
            index = self._catalogue.uri_owner(ref.get("uri"), self._live)
            if index is not None:
                self._forward(index, client_id, message)
                return
        self._error(client_id, INVALID_PARAMS, "completion/complete: the ref names no prompt or resource of a listed upstream")

    def _client_notification(self, method: str, message: dict[str, Any]) -> None:
        if method == "notifications/cancelled":
            params = jsonrpc.members(message.get("params"))
            request_id = params.get("requestId")
            found = self._client_calls.pop(request_id, None) if type(request_id) in (int, str) else None
            if found is not None:
                index, hub_id = found
                self._routes.pop(hub_id, None)  # no answer is expected any more (and the relay drops a late one)
                self._to_upstreams[index](jsonrpc.encode({**message, "params": {**params, "requestId": hub_id}}))
            return
        if method == "notifications/progress":  # about an upstream's request (sampling, elicitation): to that upstream only
            token = jsonrpc.members(message.get("params")).get("progressToken")
            owner = self._server_progress.get(token) if type(token) in (int, str) else None
            if owner is not None and owner in self._live:
                self._to_upstreams[owner](jsonrpc.encode(message))
            return
        for index in sorted(self._live):  # initialized, roots/list_changed...
            self._to_upstreams[index](jsonrpc.encode(message))

    def _client_response(self, message: dict[str, Any]) -> None:
        key = message["id"]
        found = self._server_requests.pop(key, None) if type(key) is str else None
        if found is not None and found[2] is not None:
            self._server_progress.pop(found[2], None)
        if found is None:
            log.warning("a response from the client to no request of an upstream; dropped", id=str(key)[:40])
            return
        index, upstream_id, _ = found
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
            token = token if type(token) in (int, str) else None
            self._server_requests[hub_id] = (index, message["id"], token)
            if token is not None:
                self._server_progress[token] = index
            self._send({**message, "id": hub_id})
        else:
            if message["method"] == "notifications/cancelled":  # the upstream gives up on its own request
                params = jsonrpc.members(message.get("params"))
                mine = [h for h, (i, own, _) in self._server_requests.items() if i == index and own == params.get("requestId")]
                if not mine:
                    return
                token = self._server_requests.pop(mine[0])[2]
                if token is not None:
                    self._server_progress.pop(token, None)
                message = {**message, "params": {**params, "requestId": mine[0]}}
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
        elif gather.method in _LISTS:
            result = jsonrpc.members(message.get("result"))
            kind = _LISTS[gather.method]
            items = result.get(kind) if type(result.get(kind)) is list else []
            gather.results.setdefault(index, []).extend(items)
            cursor = result.get("nextCursor")
            gather.pages[index] = gather.pages.get(index, 0) + 1
            if type(cursor) is str and cursor and gather.pages[index] < _MAX_PAGES:
                self._ask(index, gather, {**gather.params, "cursor": cursor})
                return
        else:
            gather.results[index] = message.get("result")
        gather.waiting.discard(index)
        if not gather.waiting:
            self._answer(gather)

    def upstream_lost(self, index: int, reason: str) -> None:
        """Upstream `index` is gone: its open requests are answered with errors; the others go on."""
        self._live.discard(index)
        for hub_id, route in [(h, r) for h, r in self._routes.items() if r.index == index]:
            del self._routes[hub_id]
            error = {"code": UPSTREAM_UNAVAILABLE, "message": f"{self.names[index]}: {reason}"}
            if route.gather is None:
                self._client_calls.pop(route.client_id, None)
                self._send({"jsonrpc": "2.0", "id": route.client_id, "error": error})
            else:
                route.gather.errors[index] = error
                route.gather.waiting.discard(index)
                if not route.gather.waiting:
                    self._answer(route.gather)
        for hub_id in [h for h, (i, _, _) in self._server_requests.items() if i == index]:
            del self._server_requests[hub_id]
        for token in [t for t, i in self._server_progress.items() if i == index]:
            del self._server_progress[token]

    # -- answers ------------------------------------------------------------------------------

    def _answer(self, gather: _Gather) -> None:
        self._gathering.discard(gather.client_id)
        if gather.method == "initialize":
            self._answer_initialize(gather)
        elif gather.method in _LISTS:
            kind = _LISTS[gather.method]
            merged: list[Any] = []
            for index in sorted(gather.results):
                merged.extend(self._catalogue.exported(index, kind, item) for item in gather.results[index] if type(item) is dict)
            for index, error in sorted(gather.errors.items()):
                log.warning("an upstream failed a list; its items are left out", server=self.names[index], method=gather.method,
                            error=str(error)[:200])  # fmt: skip
            self._send({"jsonrpc": "2.0", "id": gather.client_id, "result": {kind: merged}})
        elif gather.errors and not gather.results:
            self._send({"jsonrpc": "2.0", "id": gather.client_id, "error": next(iter(gather.errors.values()))})
        else:
            self._send({"jsonrpc": "2.0", "id": gather.client_id, "result": {}})

    def _answer_initialize(self, gather: _Gather) -> None:
        for index, error in gather.errors.items():
            self._live.discard(index)
            log.error("an upstream failed to initialise; it is left out of this session", server=self.names[index],
                      error=str(error)[:300])  # fmt: skip
        results = {i: r for i, r in gather.results.items() if type(r) is dict}
        if not results:
            reasons = "; ".join(f"{self.names[i]}: {str(e)[:200]}" for i, e in sorted(gather.errors.items()))
            self._error(gather.client_id, UPSTREAM_UNAVAILABLE, f"no upstream server could be initialised ({reasons})")
            return
        merged = self._catalogue.initialized(results, gather.params.get("protocolVersion"))
        self._send({"jsonrpc": "2.0", "id": gather.client_id, "result": merged})

    # -- helpers ------------------------------------------------------------------------------

    def _split(self, name: object) -> tuple[int, str] | None:
        if type(name) is not str:
            return None
        server, sep, rest = name.partition(SEPARATOR)
        index = self._index.get(server)
        if not sep or not rest or index is None or index not in self._live:
            return None
        return index, rest

    def expire(self, timeout: float) -> None:
        """Answer every gathered request (initialize, a list) that has waited more than `timeout`
        seconds without the upstreams still silent: one hung upstream must not hold the session.
        An upstream that does not answer `initialize` in time is left out of the session."""
        now = self._clock()
        late = {id(r.gather): r.gather for r in self._routes.values() if r.gather is not None and now - r.gather.started > timeout}
        for gather in late.values():
            for hub_id in [h for h, r in self._routes.items() if r.gather is gather]:
                index = self._routes.pop(hub_id).index
                gather.errors[index] = {"code": UPSTREAM_UNAVAILABLE, "message": f"{self.names[index]}: no answer within {timeout:g} s"}
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

    def _error(self, request_id: Any, code: int, message: str) -> None:
        self._send({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}})

    def _send(self, message: dict[str, Any]) -> None:
        self._to_client(jsonrpc.encode(message))
