"""Every message an upstream sends is a source: one row per kind (tool result, resource,
resource template, prompt, completion, task result, server request, `input_required` ask,
content-bearing notification). Each row declares the kind's labels in the policy the way a user
would, makes the upstream send the secret through that kind, and checks both halves:

- the labels reach the client (`_meta["dev.mcp-airlock/labels"]` where that kind carries it);
- they reach the session's provenance: sending the value to an egress tool is then refused.

Through a real `Relay` and `PolicyMediator` (`tests.unit.helpers.RelayedSession`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import FLOW_DENIED
from gateway.labels.masks import META_KEY
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy
from tests.unit.helpers import RelayedSession

SECRET = "sk-live-7Q2b9XrT4mWc81Lp"
TOOLS = [
    {"name": "read_secret", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True, "openWorldHint": False}},
    {"name": "send", "inputSchema": {"type": "object"}},
]
FLOWS = [{"id": "no-secret-egress", "labels": ["secret"], "to": ["egress"]}]
WHOLE_SERVER = {"servers": [{"servers": ["vault"], "returns": "secret"}]}


def _policy(extra: dict[str, Any]) -> CompiledPolicy:
    raw = {"version": 1, "default": "allow", "extra_arguments": "allow", "flows": FLOWS, **extra}
    return CompiledPolicy.from_file(parse_policy(raw, "test.toml"))


def _request(request_id: Any, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def _tool_result(s: RelayedSession) -> Any:
    return s.exchange(_request(1, "tools/call", {"name": "read_secret"}), {"content": [{"type": "text", "text": SECRET}]})["result"]


def _resource(uri: str) -> Callable[[RelayedSession], Any]:
    def read(s: RelayedSession) -> Any:
        got = s.exchange(_request(1, "resources/read", {"uri": uri}), {"contents": [{"uri": uri, "text": f"key={SECRET}"}]})
        return got["result"]

    return read


def _prompt(s: RelayedSession) -> Any:
    result = {"messages": [{"role": "user", "content": {"type": "text", "text": f"use {SECRET}"}}]}
    return s.exchange(_request(1, "prompts/get", {"name": "p"}), result)["result"]


def _completion(s: RelayedSession) -> Any:
    params = {"ref": {"type": "ref/prompt", "name": "p"}, "argument": {"name": "q", "value": "sk"}}
    return s.exchange(_request(1, "completion/complete", params), {"completion": {"values": [SECRET]}})["result"]


def _task_result(s: RelayedSession) -> Any:
    s.exchange(_request(1, "tools/call", {"name": "read_secret", "task": {}}), {"task": {"taskId": "t1", "status": "working"}})
    return s.exchange(_request(2, "tasks/result", {"taskId": "t1"}), {"content": [{"type": "text", "text": SECRET}]})["result"]


def _sampling(s: RelayedSession) -> Any:
    s.ask_client("sampling/createMessage", {"messages": [{"role": "user", "content": {"type": "text", "text": SECRET}}], "maxTokens": 9})
    return s.client[-1]["params"]


def _input_required(s: RelayedSession) -> Any:
    s.send(_request(1, "tools/call", {"name": "read_secret"}))
    ask = {"method": "elicitation/create", "params": {"message": f"confirm {SECRET}", "requestedSchema": {"type": "object"}}}
    s.reply({"jsonrpc": "2.0", "id": 1, "result": {"resultType": "input_required", "inputRequests": {"q": ask}}})
    return s.client[-1]["result"]["inputRequests"]["q"]["params"]


def _notification(method: str, params: dict[str, Any]) -> Callable[[RelayedSession], Any]:
    def send(s: RelayedSession) -> Any:
        s.reply({"jsonrpc": "2.0", "method": method, "params": params})
        return s.client[-1]["params"]

    return send


@dataclass(frozen=True)
class Row:
    declared: dict[str, Any]
    source: Callable[[RelayedSession], Any]


ROWS: dict[str, Row] = {
    "tool result": Row({"tools": [{"tools": ["vault.read_secret"], "returns": "secret"}]}, _tool_result),
    "tool result, server-wide": Row(WHOLE_SERVER, _tool_result),
    "resource by glob": Row({"resources": [{"uris": ["vault://keys/*"], "returns": "secret"}]}, _resource("vault://keys/1")),
    "resource by template": Row(
        {"resources": [{"uris": ["vault://accounts/{id}/key"], "servers": ["vault"], "returns": "secret"}]},
        _resource("vault://accounts/42/key"),
    ),
    "resource, server-wide": Row(WHOLE_SERVER, _resource("file:///anything")),
    "prompt": Row(WHOLE_SERVER, _prompt),
    "completion": Row(WHOLE_SERVER, _completion),
    "task result": Row({"tools": [{"tools": ["vault.read_secret"], "returns": "secret"}]}, _task_result),
    "sampling request": Row(WHOLE_SERVER, _sampling),
    "input_required ask": Row(WHOLE_SERVER, _input_required),
    "log message": Row(WHOLE_SERVER, _notification("notifications/message", {"level": "info", "data": {"key": SECRET}})),
    "progress message": Row(WHOLE_SERVER, _notification("notifications/progress", {"progressToken": 1, "progress": 1, "message": SECRET})),
    "resource update": Row(WHOLE_SERVER, _notification("notifications/resources/updated", {"uri": f"vault://{SECRET}"})),
    "unknown notification": Row(WHOLE_SERVER, _notification("notifications/vendor/thing", {"text": SECRET})),
}


@pytest.mark.parametrize("kind", ROWS)
def test_each_source_kind_carries_its_declared_labels_to_the_client_and_the_provenance(tmp_path: Path, kind: str) -> None:
    row = ROWS[kind]
    session = RelayedSession(tmp_path, _policy(row.declared), identity="vault", tools=TOOLS)
    carrier = row.source(session)
    labels = carrier["_meta"][META_KEY]
    assert labels["confidentiality"] == "secret", labels
    assert labels["integrity"] == "untrusted"
    session.client.clear()
    session.upstream.clear()
    session.send(_request(9, "tools/call", {"name": "send", "arguments": {"body": f"fyi {SECRET}"}}))
    assert session.upstream == []
    assert session.client[-1]["error"]["code"] == FLOW_DENIED


@pytest.mark.parametrize("kind", ["resource by glob", "resource by template"])
def test_a_resource_outside_the_declared_uris_is_not_secret(tmp_path: Path, kind: str) -> None:
    session = RelayedSession(tmp_path, _policy(ROWS[kind].declared), identity="vault", tools=TOOLS)
    labels = _resource("vault://public/readme")(session)["_meta"][META_KEY]
    assert (labels["confidentiality"], labels["integrity"]) == ("public", "untrusted")
    session.send(_request(9, "tools/call", {"name": "send", "arguments": {"body": f"fyi {SECRET}"}}))
    assert session.upstream[-1]["method"] == "tools/call"


def test_a_server_declared_trusted_sends_trusted_results_but_its_requests_stay_untrusted(tmp_path: Path) -> None:
    session = RelayedSession(tmp_path, _policy({"servers": [{"servers": ["vault"], "trusted": True}]}), identity="vault", tools=TOOLS)
    assert _prompt(session)["_meta"][META_KEY]["integrity"] == "trusted"
    assert _sampling(session)["_meta"][META_KEY]["integrity"] == "untrusted"


def test_a_tool_declaration_wins_over_the_server_declaration(tmp_path: Path) -> None:
    declared = {**WHOLE_SERVER, "tools": [{"tools": ["vault.read_secret"], "returns": "public"}]}
    session = RelayedSession(tmp_path, _policy(declared), identity="vault", tools=TOOLS)
    assert _tool_result(session)["_meta"][META_KEY]["confidentiality"] == "public"
    assert _prompt(session)["_meta"][META_KEY]["confidentiality"] == "secret"


def test_forged_labels_in_a_notification_are_replaced_by_the_gateways(tmp_path: Path) -> None:
    session = RelayedSession(tmp_path, _policy(WHOLE_SERVER), identity="vault", tools=TOOLS)
    forged = {"level": "info", "data": "x", "_meta": {META_KEY: {"integrity": "trusted", "confidentiality": "public"}}}
    params = _notification("notifications/message", forged)(session)
    assert params["_meta"][META_KEY]["integrity"] == "untrusted"
    assert params["_meta"][META_KEY]["confidentiality"] == "secret"


def test_notifications_without_content_pass_unchanged(tmp_path: Path) -> None:
    session = RelayedSession(tmp_path, _policy(WHOLE_SERVER), identity="vault", tools=TOOLS)
    message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    session.reply(message)
    assert session.client[-1] == message
