"""Message-level transparency: the same raw JSON-RPC transcript sent to server-everything
directly and through `airlock run` gets the same answers, message for message, except that
results the model reads (tools/call, resources/read, prompts/get) carry the gateway's labels
in `_meta` and nothing else changes."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from gateway.labels.masks import META_KEY
from gateway.protocol import methods
from tests.e2e.conftest import ROOT, GatewayProcess, everything_argv, raw_gateway

pytestmark = pytest.mark.anyio

TRANSCRIPT: list[dict[str, Any]] = [
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"x-unknown-capability": {"a": 1}},
            "clientInfo": {"name": "transcript", "version": "1"},
            "_meta": {"com.example/k": "v"},
        },
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
    {"jsonrpc": "2.0", "id": "str-id", "method": "tools/list"},
    {"jsonrpc": "2.0", "id": 3, "method": "tasks/list", "params": {}},
    {"jsonrpc": "2.0", "id": 4, "method": "ping"},
    {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "E"}},
    },
    {"jsonrpc": "2.0", "id": 6, "method": "resources/list", "params": {}},
    {"jsonrpc": "2.0", "id": 7, "method": "resources/templates/list", "params": {}},
    {"jsonrpc": "2.0", "id": 8, "method": "resources/read", "params": {"uri": "demo://resource/static/document/architecture.md"}},
    {"jsonrpc": "2.0", "id": 9, "method": "prompts/list", "params": {}},
    {"jsonrpc": "2.0", "id": 10, "method": "prompts/get", "params": {"name": "args-prompt", "arguments": {"city": "Oslo"}}},
    {"jsonrpc": "2.0", "id": 11, "method": "vendor/unknown-method", "params": {"z": [1, 2]}},
    {
        "jsonrpc": "2.0",
        "id": 12,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"message": "m"}, "_meta": {"progressToken": 77}, "x-unknown-field": True},
    },
    {"jsonrpc": "2.0", "id": 13, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "t"}, "task": {"ttl": 1000}}},
    {"jsonrpc": "2.0", "id": 14, "method": "tasks/get", "params": {"taskId": "no-such-task"}},
    {"jsonrpc": "2.0", "id": 15, "method": "logging/setLevel", "params": {"level": "error"}},
    {
        "jsonrpc": "2.0",
        "id": 16,
        "method": "tools/call",
        "params": {"name": "get-structured-content", "arguments": {"location": "Chicago"}},
    },
]


async def _answers(gateway: GatewayProcess) -> dict[Any, Any]:
    """Send the transcript, collect the answer to every request (notifications are skipped:
    the server sends some on timers)."""
    answers: dict[Any, Any] = {}
    for message in TRANSCRIPT:
        await gateway.send(message)
        if "id" not in message:
            continue
        while message["id"] not in answers:
            reply = await gateway.receive()
            if "method" not in reply:
                answers[reply["id"]] = reply
    return answers


async def test_the_same_transcript_gets_the_same_answers_directly_and_through_the_gateway() -> None:
    direct_process = await anyio.open_process(everything_argv(), cwd=str(ROOT))
    try:
        with anyio.fail_after(60):
            direct = await _answers(GatewayProcess(direct_process))
    finally:
        direct_process.kill()
        await direct_process.wait()
        await direct_process.aclose()
    with anyio.fail_after(60):
        async with raw_gateway(everything_argv()) as gateway:
            mediated = await _answers(gateway)
    assert mediated.keys() == direct.keys()
    sources = {method for method, channel in methods.CLIENT_METHODS.items() if channel in ("call", "read")}
    labelled = {m["id"] for m in TRANSCRIPT if m.get("method") in sources}  # every result that is a source
    for request_id, answer in direct.items():
        got = mediated[request_id]
        if request_id in labelled and "result" in got:
            got = _without_labels(got, had_meta="_meta" in (answer.get("result") or {}))
        assert got == answer, f"answer to request {request_id!r} differs"


def _without_labels(reply: dict[str, Any], *, had_meta: bool) -> dict[str, Any]:
    """The reply without the gateway's labels, which must be there (`had_meta`: the server's
    own result had a `_meta`, maybe empty, that the labels went into)."""
    result = dict(reply["result"])
    meta = dict(result.pop("_meta"))
    labels = meta.pop(META_KEY)
    assert labels["integrity"] == "untrusted", labels
    if meta or had_meta:
        result["_meta"] = meta
    return {**reply, "result": result}
