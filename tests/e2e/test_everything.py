"""`airlock run` wrapping @modelcontextprotocol/server-everything (npm), driven by the real mcp
2.x client in its default (auto) and legacy connect modes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from gateway.errors import POLICY_DENIED
from tests.e2e.conftest import everything_argv, through_gateway, upstream_pids, wait_for_tool, wait_until_dead

pytestmark = pytest.mark.anyio

MODES = ["auto", "legacy"]


class Recorder:
    """The client-side callbacks, recording what the server asked of the client."""

    def __init__(self) -> None:
        self.sampling: list[types.CreateMessageRequestParams] = []
        self.elicitations: list[types.ElicitRequestParams] = []
        self.roots_asked = 0
        self.log_messages: list[types.LoggingMessageNotificationParams] = []
        self.logged = anyio.Event()

    async def sampling_callback(self, context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
        self.sampling.append(params)
        return types.CreateMessageResult(role="assistant", content=types.TextContent(type="text", text="sampled-by-test"), model="test")

    async def elicitation_callback(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.elicitations.append(params)
        return types.ElicitResult(action="decline")

    async def list_roots_callback(self, context: Any) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri="file:///tmp/airlock-test-root", name="test-root")])

    async def logging_callback(self, params: types.LoggingMessageNotificationParams) -> None:
        self.log_messages.append(params)
        self.logged.set()

    def client(self, server: Any, mode: str) -> Client:
        return Client(
            server,
            mode=mode,
            sampling_callback=self.sampling_callback,
            elicitation_callback=self.elicitation_callback,
            list_roots_callback=self.list_roots_callback,
            logging_callback=self.logging_callback,
        )


def _params(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=argv[0], args=argv[1:])


async def _tool_names(client: Client) -> list[str]:
    return [tool.name for tool in (await client.list_tools()).tools]


async def _surface(client: Client) -> dict[str, Any]:
    """Everything the server shows a model, as plain data."""
    tools = await wait_for_tool(client, "trigger-sampling-request")
    return {
        "server_info": client.server_info.model_dump() if client.server_info else None,
        "protocol": client.protocol_version,
        "instructions": client.instructions,
        "capabilities": client.server_capabilities.model_dump(),
        "tools": sorted((t.model_dump() for t in tools), key=lambda t: t["name"]),
        "resources": [r.model_dump() for r in (await client.list_resources()).resources],
        "templates": [t.model_dump() for t in (await client.list_resource_templates()).resource_templates],
        "prompts": [p.model_dump() for p in (await client.list_prompts()).prompts],
    }


@pytest.mark.parametrize("mode", MODES)
async def test_the_client_sees_exactly_the_same_server_through_the_gateway(mode: str) -> None:
    with anyio.fail_after(60):
        async with Recorder().client(_params(everything_argv()), mode) as direct:
            expected = await _surface(direct)
        async with Recorder().client(through_gateway(everything_argv()), mode) as mediated:
            seen = await _surface(mediated)
    assert seen == expected
    assert "echo" in [tool["name"] for tool in seen["tools"]]


@pytest.mark.parametrize("mode", MODES)
async def test_tool_calls_progress_and_server_to_client_requests_round_trip(mode: str) -> None:
    recorder = Recorder()
    with anyio.fail_after(60):
        async with recorder.client(through_gateway(everything_argv()), mode) as client:
            await wait_for_tool(client, "trigger-sampling-request")
            echo = await client.call_tool("echo", {"message": "through the airlock"})
            assert echo.content[0].text == "Echo: through the airlock"  # type: ignore[union-attr]
            total = await client.call_tool("get-sum", {"a": 2, "b": 40})
            assert "42" in total.content[0].text  # type: ignore[union-attr]

            progress: list[float] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                progress.append(value)

            await client.call_tool("trigger-long-running-operation", {"duration": 0.3, "steps": 3}, progress_callback=on_progress)
            assert len(progress) >= 3

            sampled = await client.call_tool("trigger-sampling-request", {"prompt": "hello", "maxTokens": 5})
            assert recorder.sampling, "the sampling request did not reach the client"
            assert "sampled-by-test" in str(sampled.content)

            elicited = await client.call_tool("trigger-elicitation-request", {})
            assert recorder.elicitations, "the elicitation request did not reach the client"
            assert "decline" in str(elicited.content).lower()

            roots = await client.call_tool("get-roots-list", {})
            assert recorder.roots_asked >= 1
            assert "file:///tmp/airlock-test-root" in str(roots.content)

            image = await client.call_tool("get-tiny-image", {})
            assert any(block.type == "image" for block in image.content)
            structured = await client.call_tool("get-structured-content", {"location": "Chicago"})
            assert structured.structured_content is not None


async def test_logging_set_level_and_log_notifications_pass_through() -> None:
    recorder = Recorder()
    with anyio.fail_after(60):
        async with recorder.client(through_gateway(everything_argv()), "legacy") as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.set_logging_level("debug")
            await wait_for_tool(client, "toggle-simulated-logging")  # only listed tools can be called
            await client.call_tool("toggle-simulated-logging", {})
            with anyio.fail_after(30):
                await recorder.logged.wait()
            await client.call_tool("toggle-simulated-logging", {})
    assert recorder.log_messages


@pytest.mark.parametrize("mode", MODES)
async def test_resources_prompts_and_completion_pass_through(mode: str) -> None:
    with anyio.fail_after(60):
        async with Recorder().client(through_gateway(everything_argv()), mode) as client:
            resources = (await client.list_resources()).resources
            first = await client.read_resource(resources[0].uri)
            assert first.contents
            dynamic = await client.read_resource("demo://resource/dynamic/text/1")
            assert dynamic.contents
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                await client.subscribe_resource(resources[0].uri)
                await client.unsubscribe_resource(resources[0].uri)
            prompt = await client.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})
            assert "Paris" in str(prompt.messages)
            completion = await client.complete(
                types.PromptReference(type="ref/prompt", name="completable-prompt"), {"name": "department", "value": "E"}
            )
            assert completion.completion.values


async def test_ping_passes_through() -> None:
    with anyio.fail_after(30):
        async with Recorder().client(through_gateway(everything_argv()), "legacy") as client:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                result = await client.send_ping()
    assert result is not None


async def test_a_tool_the_server_never_listed_is_refused_by_the_gateway() -> None:
    # Fail closed: only a tool the gateway has seen listed (or pinned) can be checked, so only
    # such a tool can be called.
    with anyio.fail_after(30):
        async with Recorder().client(through_gateway(everything_argv()), "auto") as client:
            await _tool_names(client)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("no-such-tool", {})
            assert refused.value.code == POLICY_DENIED
            assert refused.value.data["rule"] == "pins.unknown-tool"


async def test_sixteen_concurrent_calls_are_each_answered_with_their_own_result() -> None:
    answers: dict[int, str] = {}
    with anyio.fail_after(60):
        async with Recorder().client(through_gateway(everything_argv()), "auto") as client:
            await wait_for_tool(client, "echo")

            async def call(i: int) -> None:
                result = await client.call_tool("echo", {"message": f"call-{i}"})
                answers[i] = result.content[0].text  # type: ignore[union-attr]

            for _round in range(3):
                async with anyio.create_task_group() as group:
                    for i in range(16):
                        group.start_soon(call, i)
                assert answers == {i: f"Echo: call-{i}" for i in range(16)}
                answers.clear()


async def test_a_512_kib_payload_passes_both_ways() -> None:
    payload = "A" * (512 * 1024 - 7) + "\u00e9\u6f22\U0001f600"
    with anyio.fail_after(60):
        async with Recorder().client(through_gateway(everything_argv()), "auto") as client:
            await wait_for_tool(client, "echo")
            result = await client.call_tool("echo", {"message": payload})
    assert result.content[0].text == f"Echo: {payload}"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_a_denied_tool_is_hidden_and_refused_with_the_rule_named(mode: str) -> None:
    with anyio.fail_after(60):
        async with Recorder().client(through_gateway(everything_argv(), "--deny", "echo", "--deny", "get-env"), mode) as client:
            names = await _tool_names(client)
            assert "echo" not in names and "get-env" not in names
            assert "get-sum" in names
            # A case variant was never listed (tool names are case-sensitive), and a fullwidth
            # look-alike leaves the MCP tool-name alphabet: both are refused before any rule.
            for spelled, rule in (("echo", "cli.deny.1"), ("ECHO", "pins.unknown-tool"), ("ｅｃｈｏ", "gateway.tool-name")):
                with pytest.raises(MCPError) as refused:
                    await client.call_tool(spelled, {"message": "x"})
                assert refused.value.code == POLICY_DENIED
                assert refused.value.data["rule"] == rule
            # The session is still usable after a denial.
            total = await client.call_tool("get-sum", {"a": 1, "b": 1})
            assert "2" in total.content[0].text  # type: ignore[union-attr]


async def test_the_gateway_and_its_upstream_are_gone_after_the_client_disconnects(tmp_path: Path) -> None:
    errlog_path = tmp_path / "gateway.log"
    with open(errlog_path, "w") as errlog, anyio.fail_after(60):
        async with Client(stdio_client(through_gateway(everything_argv()), errlog=errlog), mode="auto") as client:
            await wait_for_tool(client, "echo")
            await client.call_tool("echo", {"message": "bye"})
    log = errlog_path.read_text()
    pids = upstream_pids(log)
    assert len(pids) == 1
    await wait_until_dead(pids[0])
    assert "upstream ended" in log
