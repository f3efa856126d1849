"""`airlock install`, end to end: the entries it writes into a Claude Desktop config start the
real gateway around the real servers, and the real mcp client works through them, env included."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from gateway.install import run_install
from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, time_server_argv

pytestmark = pytest.mark.anyio

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
    assert run_install(args, environ={"HOME": str(home)}, platform="linux") == 0


async def _text_of(entry: dict[str, Any], tool: str, arguments: dict[str, Any]) -> str:
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry.get("env"), cwd=str(ROOT))
    async with Client(params) as client:
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
