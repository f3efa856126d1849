"""Requests from the upstream to the client (sampling), through the real gateway wrapping
server-everything, driven by the real mcp client: the server's text is labelled untrusted, and
the client's answer goes through the flow rules, the server being the sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client

from gateway.labels.masks import META_KEY
from tests.e2e.conftest import eventually, everything_argv, through_gateway

pytestmark = pytest.mark.anyio

SECRET = "tok-SECRET-99887766"
POLICY = """
version = 1
default = "allow"
extra_arguments = "allow"
[pins]
unpinned = "trust-on-first-use"
[[tools]]
tools = ["mcp-servers-everything.echo"]
returns = "secret"
[[flows]]
id = "no-secret-to-servers"
labels = ["secret"]
to = ["egress"]
"""


class Sampler:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []

    async def sampling_callback(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.requests.append(params.model_dump(by_alias=True, exclude_none=True))
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text=self.answer), model="test")


async def _run(policy: Path, answer: str) -> tuple[Sampler, types.CallToolResult | Exception]:
    sampler = Sampler(answer)
    async with Client(through_gateway(everything_argv(), "--policy", str(policy)), sampling_callback=sampler.sampling_callback) as client:

        async def listed() -> bool:
            return any(t.name == "trigger-sampling-request" for t in (await client.list_tools()).tools)

        await eventually(listed)
        echoed = await client.call_tool("echo", {"message": SECRET})
        assert echoed.meta is not None and echoed.meta[META_KEY]["confidentiality"] == "secret"
        try:
            arguments = {"prompt": "say hi", "maxTokens": 5}
            outcome: types.CallToolResult | Exception = await client.call_tool("trigger-sampling-request", arguments)
        except Exception as exc:  # the server may turn the refused sampling into a JSON-RPC error
            outcome = exc
    return sampler, outcome


def _text(outcome: types.CallToolResult | Exception) -> str:
    if isinstance(outcome, Exception):
        return str(outcome)
    return " ".join(getattr(block, "text", "") for block in outcome.content)


async def test_a_sampling_request_reaches_the_client_labelled_untrusted_and_a_clean_answer_reaches_the_server(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with anyio.fail_after(60):
        sampler, outcome = await _run(policy, "hello there")
    assert len(sampler.requests) == 1
    assert sampler.requests[0]["_meta"][META_KEY]["integrity"] == "untrusted"
    assert "hello there" in _text(outcome)


async def test_a_sampling_answer_carrying_secret_data_never_reaches_the_server(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    with anyio.fail_after(60):
        sampler, outcome = await _run(policy, f"sure, the token is {SECRET.lower()}")
    assert len(sampler.requests) == 1  # the client was asked...
    text = _text(outcome)
    assert SECRET.lower() not in text.lower()  # ...but its answer never reached the server
    assert "-32036" in text and "no-secret-to-servers" in text  # the server was told which flow rule refused it


async def test_a_policy_can_refuse_sampling_before_the_client_is_asked(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY + '\n[server_requests]\nsampling = "deny"\n')
    with anyio.fail_after(60):
        sampler, outcome = await _run(policy, "hello there")
    assert sampler.requests == []
    assert "hello there" not in _text(outcome)
