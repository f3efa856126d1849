"""Complete mediation end to end: @modelcontextprotocol/server-everything (npm) behind `airlock
run` and `airlock run --all`, driven by the real mcp 2.x client. The policy declares its static
resources secret (`[[resources]]`, by URI glob) and nothing else: a resource's text then may not
reach the server through any channel (a tool's arguments, a tool call's `_meta`, a prompt's
arguments, a completion), and the resource's labels reach the client in `_meta`."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import anyio
import mcp.types as types
import orjson
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from gateway.errors import FLOW_DENIED
from gateway.labels.masks import META_KEY
from tests.e2e.conftest import FIXTURE_SERVERS, ROOT, everything_argv, through_gateway, wait_for_tool

pytestmark = pytest.mark.anyio

POLICY = """
version = 1
default = "allow"
extra_arguments = "allow"

[pins]
unpinned = "trust-on-first-use"

[[resources]]
uris = ["demo://resource/static/document/*", "demo://resource/dynamic/text/{resourceId}"]
returns = "secret"

[[tools]]
tools = ["*.echo"]
class = "egress"  # it stands for a tool that sends what it is given out (its annotations say read-only)

[[flows]]
id = "no-secret-egress"
labels = ["secret"]
to = ["egress"]
"""


def _policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    path.chmod(0o600)
    return path


async def _secret_text(client: Client) -> tuple[str, dict[str, Any]]:
    """Read the first static resource: its text, and the labels the gateway stamped on it."""
    resources = (await client.list_resources()).resources
    uri = next(str(r.uri) for r in resources if str(r.uri).startswith("demo://resource/static/document/"))
    result = await client.read_resource(uri)
    text = next(getattr(c, "text", None) for c in result.contents if getattr(c, "text", None))
    assert text, "the resource has no text"
    return text, (result.meta or {}).get(META_KEY, {})


async def _refused(call: Any) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await call
    assert caught.value.error.code == FLOW_DENIED, caught.value.error
    return caught.value


async def test_a_secret_resource_reaches_the_server_through_no_channel(tmp_path: Path) -> None:
    gateway = through_gateway(everything_argv(), "--policy", str(_policy(tmp_path)), "--name", "everything")
    with anyio.fail_after(90):
        async with Client(gateway, mode="legacy") as client:
            await wait_for_tool(client, "echo")
            text, labels = await _secret_text(client)
            assert (labels["confidentiality"], labels["integrity"]) == ("secret", "untrusted")
            denied = await _refused(client.call_tool("echo", {"message": text}))
            assert "resources/read" in denied.error.message  # the source is named: the read of the resource
            await _refused(client.call_tool("echo", {"message": "hello"}, meta={"note": text}))  # type: ignore[arg-type]
            prompts = [p for p in (await client.list_prompts()).prompts if p.arguments]
            assert prompts, "server-everything lists a prompt with arguments"
            prompt = prompts[0]
            argument = prompt.arguments[0].name  # type: ignore[index]
            denied = await _refused(client.get_prompt(prompt.name, {argument: text}))
            assert denied.error.data["argument"] == f"params.arguments.{argument}"
            completable = next(p for p in (await client.list_prompts()).prompts if p.name == "completable-prompt")
            ref = types.PromptReference(type="ref/prompt", name=completable.name)
            denied = await _refused(client.complete(ref, {"name": "department", "value": text[:200]}))
            assert denied.error.data["argument"] == "params.argument.value"
            templated = await client.read_resource("demo://resource/dynamic/text/7")
            assert (templated.meta or {})[META_KEY]["confidentiality"] == "secret"  # declared by its template
            # The control: the same channels without the secret still work.
            assert (await client.call_tool("echo", {"message": "hello"})).content
            assert (await client.get_prompt(prompt.name, {argument: "plain"})).messages is not None


async def test_a_prompts_labels_come_from_its_servers_declaration(tmp_path: Path) -> None:
    policy = _policy(tmp_path)
    policy.write_text(POLICY + '\n[[servers]]\nservers = ["everything"]\nreturns = "private"\n')
    gateway = through_gateway(everything_argv(), "--policy", str(policy), "--name", "everything")
    with anyio.fail_after(90):
        async with Client(gateway, mode="legacy") as client:
            await wait_for_tool(client, "echo")
            prompt = next(p for p in (await client.list_prompts()).prompts if not p.arguments)
            result = await client.get_prompt(prompt.name)
            labels = (result.meta or {}).get(META_KEY, {})
            assert (labels["confidentiality"], labels["source"]["tool"]) == ("private", "prompts/get")


def _hub(tmp_path: Path) -> StdioServerParameters:
    """server-everything as `vault` (its documents secret), the web scenario server as `web`
    (its `post_form` an egress tool)."""
    servers = {"vault": everything_argv(), "web": [sys.executable, str(FIXTURE_SERVERS / "scenarios" / "web_server.py")]}
    lines = []
    for name, argv in servers.items():
        lines += [f"[upstreams.{name}]", f"command = {orjson.dumps(argv[0]).decode()}", f"args = {orjson.dumps(argv[1:]).decode()}", ""]
    config = tmp_path / "airlock.toml"
    config.write_text("\n".join(lines))
    policy = _policy(tmp_path)
    policy.write_text(
        POLICY.replace("[[resources]]\n", '[[resources]]\nservers = ["vault"]\n')
        + '\n[[tools]]\ntools = ["web.post_form"]\nclass = "egress"\n'
    )
    args = ["-m", "gateway", "run", "--all", "--config", str(config), "--policy", str(policy), "--log-level", "warning"]
    return StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT))


async def test_through_the_hub_a_secret_read_from_one_server_reaches_the_other_through_no_channel(tmp_path: Path) -> None:
    with anyio.fail_after(120):
        async with Client(_hub(tmp_path), mode="legacy") as client:
            await wait_for_tool(client, "web__post_form")
            text, labels = await _secret_text(client)
            assert labels["confidentiality"] == "secret"
            form = {"url": "https://forms.example/submit", "data": {"comment": text}}
            await _refused(client.call_tool("web__post_form", form))
            harmless = {"url": "https://forms.example/submit", "data": {"comment": "hello"}}
            await _refused(client.call_tool("web__post_form", harmless, meta={"note": text}))  # type: ignore[arg-type]
            with pytest.raises(MCPError) as caught, warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)  # logging is deprecated from 2026-07-28 on
                await client.set_logging_level("debug", meta={"note": text})  # type: ignore[arg-type]
            assert caught.value.error.code == FLOW_DENIED  # broadcast to both: refused by each gateway
            assert (await client.call_tool("web__post_form", harmless)).content  # the control
