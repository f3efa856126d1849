"""gateway/mediation/denylist.py: `--deny TOOL` refuses calls and hides the tool from listings."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import INVALID_PARAMS, POLICY_DENIED, InvalidParams, PolicyDenied
from gateway.mediation.denylist import ToolDenyList, deny_rule_id
from gateway.mediation.interface import Forward, PassThrough, Refuse


def _call(name: Any, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}, **extra}}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("delete_file", id="exact"),
        pytest.param("DELETE_FILE", id="upper-case"),
        pytest.param("Delete_File", id="title-case"),
        pytest.param("dElEtE_fIlE", id="mixed-case"),
        pytest.param("ｄｅｌｅｔｅ＿ｆｉｌｅ", id="fullwidth"),
        pytest.param("ＤＥＬＥＴＥ＿ＦＩＬＥ", id="fullwidth-upper"),
        pytest.param("delete＿ｆｉｌｅ", id="fullwidth-suffix"),
        pytest.param("Ｄelete_file", id="one-fullwidth-capital"),
        pytest.param("delete_ﬁle", id="fi-ligature"),
    ],
)
def test_denied_tool_is_refused_whatever_its_spelling(name: str) -> None:
    verdict = ToolDenyList(["delete_file"]).on_client_request("tools/call", _call(name))
    assert isinstance(verdict, Refuse)
    assert isinstance(verdict.error, PolicyDenied)
    assert verdict.error.code == POLICY_DENIED
    assert verdict.error.rule == "cli.deny[delete_file]"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("delete_files", id="longer-name"),
        pytest.param("delete-file", id="hyphen-instead-of-underscore"),
        pytest.param("deletefile", id="no-separator"),
        pytest.param("delete_fil", id="prefix-of-denied"),
        pytest.param("read_file", id="other-tool"),
        pytest.param("", id="empty-name"),
    ],
)
def test_other_tools_are_forwarded(name: str) -> None:
    verdict = ToolDenyList(["delete_file"]).on_client_request("tools/call", _call(name))
    assert isinstance(verdict, Forward)
    assert verdict.message is None


def test_a_rule_written_in_another_spelling_denies_the_plain_name_and_names_itself_as_written() -> None:
    verdict = ToolDenyList(["ＤＥＬＥＴＥ_File"]).on_client_request("tools/call", _call("delete_file"))
    assert isinstance(verdict, Refuse)
    assert isinstance(verdict.error, PolicyDenied)
    assert verdict.error.rule == deny_rule_id("ＤＥＬＥＴＥ_File") == "cli.deny[ＤＥＬＥＴＥ_File]"


def test_refusal_is_policy_denied_with_code_and_rule_in_data() -> None:
    verdict = ToolDenyList(["other", "delete_file"]).on_client_request("tools/call", _call("delete_file"))
    assert isinstance(verdict, Refuse)
    error = verdict.error
    assert type(error) is PolicyDenied
    assert error.code == -32030
    assert error.data is not None
    assert error.data["rule"] == "cli.deny[delete_file]"
    assert error.data["reason"]
    assert error.to_error_object()["data"]["rule"] == "cli.deny[delete_file]"


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call"}, id="no-params"),
        pytest.param({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}, id="no-name"),
        pytest.param(_call(None), id="name-null"),
        pytest.param(_call(7), id="name-number"),
        pytest.param(_call(["delete_file"]), id="name-list"),
        pytest.param(_call({"name": "delete_file"}), id="name-object"),
        pytest.param(_call(True), id="name-bool"),
    ],
)
def test_tools_call_without_a_string_name_is_invalid_params(message: dict[str, Any]) -> None:
    verdict = ToolDenyList(["delete_file"]).on_client_request("tools/call", message)
    assert isinstance(verdict, Refuse)
    assert isinstance(verdict.error, InvalidParams)
    assert verdict.error.code == INVALID_PARAMS == -32602


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("tools/list", id="tools-list"),
        pytest.param("prompts/get", id="prompts-get-same-name"),
        pytest.param("Tools/Call", id="other-case-method"),
        pytest.param("vendor/anything", id="unknown-method"),
    ],
)
def test_methods_other_than_tools_call_are_forwarded(method: str) -> None:
    message = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {"name": "delete_file"}}
    assert isinstance(ToolDenyList(["delete_file"]).on_client_request(method, message), Forward)


def test_tools_list_result_loses_denied_tools_and_keeps_everything_else() -> None:
    tools = [
        {"name": "read_file", "description": "r", "inputSchema": {"type": "object"}, "x-vendor": [1], "_meta": {"k": "v"}},
        {"name": "delete_file", "description": "d", "inputSchema": {"type": "object"}},
        {"name": "write_file", "annotations": {"destructiveHint": True}, "unknownField": {"nested": None}},
        {"name": "ＤＥＬＥＴＥ＿ＦＩＬＥ", "inputSchema": {}},
        {"name": "list_dir", "outputSchema": {"type": "object"}, "title": "List"},
        "not-an-object",
        {"description": "no name"},
    ]
    message = {
        "jsonrpc": "2.0",
        "id": 4,
        "result": {"tools": tools, "nextCursor": "c2", "_meta": {"trace": 1}, "futureField": True},
        "extra": "kept",
    }
    original = repr(message)
    filtered = ToolDenyList(["delete_file"]).on_upstream_response("tools/list", None, message)
    assert filtered["result"]["tools"] == [tools[0], tools[2], tools[4], tools[5], tools[6]]
    assert list(filtered["result"]) == ["tools", "nextCursor", "_meta", "futureField"]
    assert {k: v for k, v in filtered["result"].items() if k != "tools"} == {"nextCursor": "c2", "_meta": {"trace": 1}, "futureField": True}
    assert {k: v for k, v in filtered.items() if k != "result"} == {"jsonrpc": "2.0", "id": 4, "extra": "kept"}
    assert list(filtered) == list(message)
    assert repr(message) == original, "the upstream's message must not be mutated"


def test_tools_list_without_denied_tools_is_returned_unchanged() -> None:
    message = {"jsonrpc": "2.0", "id": 4, "result": {"tools": [{"name": "read_file"}]}}
    assert ToolDenyList(["delete_file"]).on_upstream_response("tools/list", None, message) is message


@pytest.mark.parametrize(
    "message",
    [
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": {}}, id="no-tools-member"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": {"tools": {"name": "delete_file"}}}, id="tools-not-a-list"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": {"tools": None}}, id="tools-null"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": ["delete_file"]}, id="result-not-an-object"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "result": None}, id="result-null"),
        pytest.param({"jsonrpc": "2.0", "id": 4, "error": {"code": -1, "message": "m"}}, id="error-response"),
    ],
)
def test_tools_list_response_without_a_tools_list_is_returned_unchanged(message: dict[str, Any]) -> None:
    assert ToolDenyList(["delete_file"]).on_upstream_response("tools/list", None, message) is message


def test_responses_to_other_methods_are_not_filtered() -> None:
    message = {"jsonrpc": "2.0", "id": 4, "result": {"tools": [{"name": "delete_file"}]}}
    assert ToolDenyList(["delete_file"]).on_upstream_response("tools/call", None, message) is message


def test_empty_deny_list_is_falsy_and_forwards_every_call() -> None:
    deny = ToolDenyList([])
    assert not deny
    assert ToolDenyList(["x"])
    assert isinstance(deny.on_client_request("tools/call", _call("delete_file")), Forward)


def test_pass_through_forwards_requests_and_relays_responses_unchanged() -> None:
    mediator = PassThrough()
    assert isinstance(mediator.on_client_request("tools/call", _call("delete_file")), Forward)
    message = {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "delete_file"}]}}
    assert mediator.on_upstream_response("tools/list", None, message) is message
