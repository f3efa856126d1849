"""`airlock install`, end to end: the entries it writes into a Claude Desktop config start the
real gateway around the real servers, local and remote, and the real mcp client works through
them, env and headers included."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.cli.install import cmd_install
from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, everything_argv, free_port, listening, time_server_argv

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-header-value-only-in-env"

ENV_SERVER = """\
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("env-probe", version="1.0")


@server.tool()
def token() -> str:
    return os.environ.get("AIRLOCK_E2E_TOKEN", "<unset>")


if __name__ == "__main__":
    server.run()
"""


def _install(home: Path, *, uninstall: bool = False, policy: Path | None = None) -> None:
    args = argparse.Namespace(
        client="claude", config=None, policy=policy, dry_run=False, uninstall=uninstall, restore_backup=False
    )  # fmt: skip
    assert cmd_install(args, environ={"HOME": str(home)}, platform="linux") == 0


async def _text_of(entry: dict[str, Any], tool: str, arguments: dict[str, Any], errlog: TextIO | None = None) -> str:
    """What calling `tool` through the server `entry` starts returns, text and structured. The
    started process's stderr goes to `errlog` (default: this one's)."""
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"), cwd=str(ROOT))
    async with Client(params if errlog is None else stdio_client(params, errlog=errlog)) as client:
        await client.list_tools()  # the gateway lets only listed tools be called
        result = await client.call_tool(tool, arguments)
    return json.dumps(result.structured_content) + "".join(getattr(block, "text", "") for block in result.content)


async def test_installed_claude_entries_run_the_servers_through_the_gateway_with_their_env(tmp_path: Path) -> None:
    server = tmp_path / "env_server.py"
    server.write_text(ENV_SERVER)
    config = tmp_path / "home" / ".config" / "Claude" / "claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    original = {
        "mcpServers": {
            "time": {"command": time_server_argv()[0]},
            "env probe": {"command": sys.executable, "args": [str(server)], "env": {"AIRLOCK_E2E_TOKEN": "s3cret-value"}},
        }
    }
    config.write_text(json.dumps(original, indent=2))
    _install(tmp_path / "home", policy=TRANSPARENT_POLICY)
    servers = json.loads(config.read_text())["mcpServers"]
    assert servers["time"]["args"][:2] == ["run", "--name"]
    with anyio.fail_after(60):
        assert "UTC" in await _text_of(servers["time"], "get_current_time", {"timezone": "UTC"})
        assert "s3cret-value" in await _text_of(servers["env probe"], "token", {})
    _install(tmp_path / "home", uninstall=True)
    assert json.loads(config.read_text()) == original


@pytest.fixture
def guarded_everything(tmp_path: Path) -> Iterator[str]:
    """server-everything behind `airlock serve`, which answers only requests that carry
    `Authorization: Bearer SECRET`: whoever reaches it sent that header. Its URL."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"install-e2e:{SECRET}\n")
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens),
            "--policy", str(TRANSPARENT_POLICY), "--", *everything_argv()]  # fmt: skip
    with listening(argv, f"http://127.0.0.1:{port}/mcp", cwd=str(ROOT)) as url:
        yield url


async def test_installed_remote_entries_reach_the_remote_servers_through_the_gateway_with_their_headers_from_env(
    tmp_path: Path, remote_everything: str, guarded_everything: str
) -> None:
    config = tmp_path / "home" / ".config" / "Claude" / "claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    original = {
        "mcpServers": {
            "everything": {"url": remote_everything, "headers": {"X-Client": "airlock-e2e"}},
            "guarded": {"url": guarded_everything, "headers": {"Authorization": f"Bearer {SECRET}"}},
        }
    }
    config.write_text(json.dumps(original, indent=2))
    _install(tmp_path / "home", policy=TRANSPARENT_POLICY)
    servers = json.loads(config.read_text())["mcpServers"]
    assert servers["everything"]["args"][-5:] == ["--url", remote_everything, "--header-env", "X-Client=AIRLOCK_HEADER_X_CLIENT", "--"]
    assert servers["guarded"]["env"] == {"AIRLOCK_HEADER_AUTHORIZATION": f"Bearer {SECRET}"}
    assert not any(SECRET in arg for arg in [servers["guarded"]["command"], *servers["guarded"]["args"]])
    stderr = tmp_path / "gateway-stderr.txt"
    with anyio.fail_after(60), stderr.open("w") as errlog:
        assert "Echo: direct" in await _text_of(servers["everything"], "echo", {"message": "direct"}, errlog)
        assert "Echo: guarded" in await _text_of(servers["guarded"], "echo", {"message": "guarded"}, errlog)
    log = stderr.read_text()
    assert remote_everything in log and guarded_everything in log
    assert SECRET not in log
    _install(tmp_path / "home", uninstall=True)
    assert json.loads(config.read_text()) == original
