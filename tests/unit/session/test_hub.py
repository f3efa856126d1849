"""gateway/session/hub.py: routing one client's messages to several upstream relays and back (pure; the
relays are stand-ins that record what they are sent)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.errors import INVALID_PARAMS, METHOD_NOT_FOUND, UPSTREAM_UNAVAILABLE
from gateway.session.hub import Hub


class Wiring:
    def __init__(self, *names: str) -> None:
        self.client: list[dict[str, Any]] = []
        self.upstreams: list[list[dict[str, Any]]] = [[] for _ in names]
        self.hub = Hub(list(names), lambda line: self.client.append(orjson.loads(line)),
                       [lambda line, i=i: self.upstreams[i].append(orjson.loads(line)) for i in range(len(names))])  # fmt: skip

    def send(self, message: dict[str, Any]) -> None:
        self.hub.from_client(orjson.dumps(message))

    def reply(self, index: int, message: dict[str, Any]) -> None:
        self.hub.from_upstream(index, orjson.dumps(message))

    def last(self, index: int) -> dict[str, Any]:
        return self.upstreams[index][-1]

    def answer_last(self, index: int, result: Any) -> None:
        self.reply(index, {"jsonrpc": "2.0", "id": self.last(index)["id"], "result": result})


def _request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def _initialised(*names: str) -> Wiring:
    wiring = Wiring(*names)
    wiring.send(_request(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}))
    for i in range(len(names)):
        wiring.answer_last(i, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {"listChanged": i == 1}},
                               "serverInfo": {"name": names[i]}, "instructions": f"use {names[i]} well"})  # fmt: skip
    wiring.client.clear()
    return wiring


def test_initialize_goes_to_every_upstream_and_the_answers_merge() -> None:
    wiring = Wiring("a", "b")
    wiring.send(_request(1, "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}}))
    assert [u[-1]["method"] for u in wiring.upstreams] == ["initialize", "initialize"]
    assert wiring.upstreams[0][-1]["id"] != wiring.upstreams[1][-1]["id"] != 1  # the hub's own ids
    wiring.answer_last(0, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "a"}})
    assert wiring.client == []  # waits for every upstream
    wiring.answer_last(1, {"protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": True}, "prompts": {}},
                           "serverInfo": {"name": "b"}, "instructions": "be careful"})  # fmt: skip
    [answer] = wiring.client
    assert answer["id"] == 1
    result = answer["result"]
    assert result["protocolVersion"] == "2025-06-18"  # the lowest any upstream speaks
    assert result["capabilities"] == {"tools": {"listChanged": True}, "prompts": {}}
    assert result["serverInfo"]["name"] == "mcp-airlock" and result["instructions"] == "## b\nbe careful"


def test_an_upstream_that_fails_to_initialise_is_left_out_and_one_that_all_fail_is_an_error() -> None:
    wiring = Wiring("a", "b")
    wiring.send(_request(1, "initialize", {"protocolVersion": "2025-11-25"}))
    wiring.reply(0, {"jsonrpc": "2.0", "id": wiring.last(0)["id"], "error": {"code": -32603, "message": "boom"}})
    wiring.answer_last(1, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}})
    assert "result" in wiring.client[-1]
    wiring.send(_request(2, "tools/list"))
    assert wiring.upstreams[0][-1]["method"] == "initialize"  # the failed upstream is asked nothing more
    assert wiring.upstreams[1][-1]["method"] == "tools/list"
    lonely = Wiring("a")
    lonely.send(_request(1, "initialize", {}))
    lonely.reply(0, {"jsonrpc": "2.0", "id": lonely.last(0)["id"], "error": {"code": -32603, "message": "boom"}})
    assert lonely.client[-1]["error"]["code"] == UPSTREAM_UNAVAILABLE and "a:" in lonely.client[-1]["error"]["message"]


def test_lists_gather_every_page_of_every_upstream_and_prefix_names() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(5, "tools/list"))
    wiring.reply(0, {"jsonrpc": "2.0", "id": wiring.last(0)["id"], "result": {"tools": [{"name": "x"}], "nextCursor": "p2"}})
    assert wiring.last(0)["params"] == {"cursor": "p2"}  # the hub follows the upstream's pages itself
    wiring.answer_last(0, {"tools": [{"name": "y"}]})
    wiring.answer_last(1, {"tools": [{"name": "x", "description": "b's x"}]})
    [answer] = wiring.client
    assert answer["id"] == 5
    assert [t["name"] for t in answer["result"]["tools"]] == ["a__x", "a__y", "b__x"]
    assert "nextCursor" not in answer["result"]


def test_a_call_goes_to_the_server_its_name_names_without_the_prefix_and_comes_back_with_the_clients_id() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request("c-1", "tools/call", {"name": "b__x", "arguments": {"k": 1}}))
    sent = wiring.last(1)
    assert sent["params"] == {"name": "x", "arguments": {"k": 1}} and sent["id"] != "c-1"
    assert len(wiring.upstreams[0]) == 1  # only the initialize
    wiring.answer_last(1, {"content": []})
    assert wiring.client[-1] == {"jsonrpc": "2.0", "id": "c-1", "result": {"content": []}}


@pytest.mark.parametrize("name", ["x", "c__x", "a__", "__x", "a_x", 7, None])
def test_a_name_no_upstream_has_is_refused_not_guessed(name: Any) -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(3, "tools/call", {"name": name}))
    assert wiring.client[-1]["error"]["code"] == INVALID_PARAMS
    assert all(len(u) == 1 for u in wiring.upstreams)


def test_resources_are_read_from_the_server_that_listed_them() -> None:
    wiring = Wiring("a", "b")
    wiring.send(_request(1, "initialize", {}))
    wiring.answer_last(0, {"capabilities": {"resources": {}}})
    wiring.answer_last(1, {"capabilities": {"resources": {}}})
    wiring.send(_request(2, "resources/list"))
    wiring.answer_last(0, {"resources": [{"uri": "file:///a.txt", "name": "a"}]})
    wiring.answer_last(1, {"resources": [{"uri": "mem://b", "name": "b"}]})
    wiring.send(_request(3, "resources/read", {"uri": "mem://b"}))
    assert wiring.last(1)["method"] == "resources/read"
    wiring.send(_request(4, "resources/read", {"uri": "mem://never-listed"}))
    assert wiring.client[-1]["error"]["code"] == INVALID_PARAMS


def test_server_requests_get_hub_ids_and_the_clients_answer_goes_back_with_the_upstreams_id() -> None:
    wiring = _initialised("a", "b")
    wiring.reply(1, _request(1, "sampling/createMessage", {"messages": []}))
    wiring.reply(0, _request(1, "roots/list"))  # the same id from another upstream: no collision
    to_client = wiring.client[-2:]
    assert to_client[0]["id"] != to_client[1]["id"]
    wiring.send({"jsonrpc": "2.0", "id": to_client[0]["id"], "result": {"role": "assistant"}})
    assert wiring.last(1) == {"jsonrpc": "2.0", "id": 1, "result": {"role": "assistant"}}
    wiring.send({"jsonrpc": "2.0", "id": "forged", "result": {}})
    assert len(wiring.upstreams[0]) == 1 and wiring.last(1)["id"] == 1  # an answer to nothing goes nowhere


def test_a_cancellation_follows_its_request_to_its_upstream() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(9, "tools/call", {"name": "a__slow"}))
    hub_id = wiring.last(0)["id"]
    wiring.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9, "reason": "user"}})
    assert wiring.last(0) == {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": hub_id, "reason": "user"}}
    assert len(wiring.upstreams[1]) == 1


def test_a_lost_upstream_answers_its_open_requests_and_the_others_go_on() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(1, "tools/call", {"name": "a__x"}))
    wiring.send(_request(2, "tools/list"))
    wiring.hub.upstream_lost(0, "it exited")
    errors = [m for m in wiring.client if "error" in m]
    assert [(m["id"], m["error"]["code"]) for m in errors] == [(1, UPSTREAM_UNAVAILABLE)]
    wiring.answer_last(1, {"tools": [{"name": "t"}]})
    assert wiring.client[-1]["result"]["tools"] == [{"name": "b__t"}]
    wiring.send(_request(3, "tools/call", {"name": "a__x"}))
    assert wiring.client[-1]["error"]["code"] == INVALID_PARAMS


def test_ping_is_answered_by_the_hub_and_unroutable_methods_are_refused() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(1, "ping"))
    wiring.send(_request(2, "tasks/get", {"taskId": "t"}))
    wiring.send(_request(3, "server/discover"))
    assert wiring.client[0] == {"jsonrpc": "2.0", "id": 1, "result": {}}
    assert [m["error"]["code"] for m in wiring.client[1:]] == [METHOD_NOT_FOUND, METHOD_NOT_FOUND]
    assert all(len(u) == 1 for u in wiring.upstreams)


@pytest.mark.parametrize("line", [b"{nope", b"[1]", b"3", b'{"jsonrpc": "2.0", "id": [1], "method": "ping"}'])
def test_malformed_client_lines_get_an_error_and_reach_no_upstream(line: bytes) -> None:
    wiring = _initialised("a", "b")
    wiring.hub.from_client(line)
    assert "error" in wiring.client[-1]
    assert all(len(u) == 1 for u in wiring.upstreams)


def test_server_names_must_be_distinct_and_not_contain_the_separator() -> None:
    for names in (["a", "a"], ["a__b"], [""]):
        with pytest.raises(ValueError):
            Hub(names, lambda line: None, [lambda line: None for _ in names])


def test_an_unlisted_resource_goes_to_the_only_upstream_with_resources_and_is_refused_when_several_have_them() -> None:
    wiring = Wiring("a", "b")
    wiring.send(_request(1, "initialize", {}))
    wiring.answer_last(0, {"capabilities": {"tools": {}}})
    wiring.answer_last(1, {"capabilities": {"resources": {}}})
    wiring.send(_request(2, "resources/read", {"uri": "mem://linked-from-a-result"}))
    assert wiring.last(1)["method"] == "resources/read"
    both = Wiring("a", "b")
    both.send(_request(1, "initialize", {}))
    both.answer_last(0, {"capabilities": {"resources": {}}})
    both.answer_last(1, {"capabilities": {"resources": {}}})
    both.send(_request(2, "resources/read", {"uri": "mem://linked-from-a-result"}))
    assert both.client[-1]["error"]["code"] == INVALID_PARAMS


def test_a_client_id_still_open_is_refused_not_forwarded_twice() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(7, "tools/call", {"name": "a__x"}))
    wiring.send(_request(7, "tools/call", {"name": "b__y"}))
    assert wiring.client[-1]["error"]["code"] == -32600 and len(wiring.upstreams[1]) == 1
    wiring.answer_last(0, {"content": []})
    wiring.send(_request(7, "tools/call", {"name": "b__y"}))  # answered: the id is free again
    assert wiring.last(1)["params"]["name"] == "y"


def test_a_cancelled_call_leaves_no_route_behind() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(9, "tools/call", {"name": "a__slow"}))
    wiring.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 9}})
    assert wiring.hub._routes == {} and wiring.hub._client_calls == {}
    wiring.send(_request(9, "tools/call", {"name": "a__slow"}))  # the id may be reused
    assert wiring.last(0)["method"] == "tools/call"


def test_an_answer_the_relay_withdraws_is_replaced_by_its_error_under_the_clients_id() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request("c", "tools/call", {"name": "a__x"}))
    hub_id = wiring.last(0)["id"]
    wiring.answer_last(0, {"content": [{"type": "text", "text": "SECRET"}]})
    wiring.reply(0, {"jsonrpc": "2.0", "id": hub_id, "error": {"code": -32035, "message": "flight log full"}})
    assert wiring.client[-1] == {"jsonrpc": "2.0", "id": "c", "error": {"code": -32035, "message": "flight log full"}}
    wiring.hub.commit()
    wiring.reply(0, {"jsonrpc": "2.0", "id": hub_id, "error": {"code": -32035, "message": "again"}})
    assert wiring.client[-1]["error"]["message"] == "flight log full"  # after a commit, nothing more for that id


def test_client_progress_about_an_upstreams_request_goes_to_that_upstream_only() -> None:
    wiring = _initialised("a", "b")
    wiring.reply(1, _request(1, "sampling/createMessage", {"messages": [], "_meta": {"progressToken": "tok"}}))
    progress = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "tok", "progress": 1}}
    wiring.send(progress)
    wiring.send({**progress, "params": {"progressToken": "unknown", "progress": 1}})
    assert wiring.last(1) == progress and len(wiring.upstreams[0]) == 1


def test_a_resource_two_upstreams_list_is_refused_and_the_most_specific_template_wins() -> None:
    wiring = Wiring("a", "b")
    wiring.send(_request(1, "initialize", {}))
    wiring.answer_last(0, {"capabilities": {"resources": {}}})
    wiring.answer_last(1, {"capabilities": {"resources": {}}})
    wiring.send(_request(2, "resources/list"))
    wiring.answer_last(0, {"resources": [{"uri": "file:///shared", "name": "s"}]})
    wiring.answer_last(1, {"resources": [{"uri": "file:///shared", "name": "s"}]})
    wiring.send(_request(3, "resources/read", {"uri": "file:///shared"}))
    assert wiring.client[-1]["error"]["code"] == INVALID_PARAMS
    wiring.send(_request(4, "resources/templates/list"))
    wiring.answer_last(0, {"resourceTemplates": [{"uriTemplate": "file:///{path}", "name": "any"}]})
    wiring.answer_last(1, {"resourceTemplates": [{"uriTemplate": "file:///home/u/{path}", "name": "home"}]})
    wiring.send(_request(5, "resources/read", {"uri": "file:///home/u/.env"}))
    assert wiring.last(1)["params"]["uri"] == "file:///home/u/.env"


def test_capabilities_the_hub_cannot_route_are_not_offered() -> None:
    wiring = Wiring("a")
    wiring.send(_request(1, "initialize", {}))
    wiring.answer_last(0, {"capabilities": {"tools": {}, "tasks": {"list": {}}, "experimental": {"x": {}}}})
    assert wiring.client[-1]["result"]["capabilities"] == {"tools": {}}


def test_a_server_name_ending_in_an_underscore_is_refused() -> None:
    with pytest.raises(ValueError):
        Hub(["fs_"], lambda line: None, [lambda line: None])


def test_a_silent_upstream_is_left_out_after_the_gather_timeout() -> None:
    now = [0.0]
    client: list[dict[str, Any]] = []
    sent: list[list[dict[str, Any]]] = [[], []]
    hub = Hub(["a", "b"], lambda line: client.append(orjson.loads(line)),
              [lambda line, i=i: sent[i].append(orjson.loads(line)) for i in range(2)], clock=lambda: now[0])  # fmt: skip
    hub.from_client(orjson.dumps(_request(1, "initialize", {})))
    hub.from_upstream(0, orjson.dumps({"jsonrpc": "2.0", "id": sent[0][-1]["id"], "result": {"capabilities": {"tools": {}}}}))
    hub.expire(30)
    assert client == []  # not late yet
    now[0] = 31
    hub.expire(30)
    assert client[-1]["id"] == 1 and client[-1]["result"]["capabilities"] == {"tools": {}}
    hub.from_upstream(1, orjson.dumps({"jsonrpc": "2.0", "id": sent[1][-1]["id"], "result": {}}))  # too late: ignored
    assert len(client) == 1
    hub.from_client(orjson.dumps(_request(2, "tools/call", {"name": "b__x"})))
    assert client[-1]["error"]["code"] == INVALID_PARAMS  # b was left out


def test_a_client_id_still_gathering_is_refused_and_free_again_once_answered() -> None:
    wiring = _initialised("a", "b")
    wiring.send(_request(4, "tools/list"))
    wiring.send(_request(4, "tools/call", {"name": "a__x"}))
    assert wiring.client[-1]["error"]["code"] == -32600 and wiring.last(0)["method"] == "tools/list"
    wiring.answer_last(0, {"tools": []})
    wiring.answer_last(1, {"tools": []})
    wiring.send(_request(4, "tools/call", {"name": "a__x"}))
    assert wiring.last(0)["method"] == "tools/call"
