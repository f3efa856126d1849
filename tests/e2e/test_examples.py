"""The client configs in examples/ parse, name real commands, and work when launched as written."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from gateway.config import load_config
from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.anyio

EXAMPLES = ROOT / "examples"
# What a user's PATH has after installing Airlock: its console script, node and npx.
SEARCH_PATH = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def _entries() -> list[tuple[str, str, dict[str, Any]]]:
    claude = json.loads((EXAMPLES / "claude_desktop_config.json").read_text())["mcpServers"]
    vscode = json.loads((EXAMPLES / "vscode_mcp.json").read_text())["servers"]
    return [("claude", name, entry) for name, entry in claude.items()] + [("vscode", name, entry) for name, entry in vscode.items()]


ENTRIES = _entries()


@pytest.mark.parametrize(("client", "name", "entry"), ENTRIES, ids=[f"{c}-{n}" for c, n, _ in ENTRIES])
def test_each_example_entry_wraps_a_real_server_with_airlock_run(client: str, name: str, entry: dict[str, Any]) -> None:
    assert entry["command"] == "airlock"
    assert shutil.which("airlock", path=SEARCH_PATH), "the airlock console script is not installed"
    args = entry["args"]
    assert args[0] == "run"
    if "--" in args:
        upstream = args[args.index("--") + 1 :]
        assert shutil.which(upstream[0], path=SEARCH_PATH), f"{upstream[0]} is not a command on PATH"
    else:
        config = load_config(ROOT / args[args.index("--config") + 1])
        chosen = config.upstream(args[args.index("--upstream") + 1])
        assert chosen is not None and shutil.which(chosen.command, path=SEARCH_PATH)
    if client == "vscode":
        assert entry["type"] == "stdio"


@pytest.mark.parametrize(("client", "name", "entry"), ENTRIES, ids=[f"{c}-{n}" for c, n, _ in ENTRIES])
async def test_each_example_entry_serves_tools_when_launched_as_written(client: str, name: str, entry: dict[str, Any]) -> None:
    command = shutil.which(entry["command"], path=SEARCH_PATH)
    assert command is not None
    # npx resolves the package from this checkout's node_modules, as a user's npx resolves it
    # from its cache: no download during the test.
    params = StdioServerParameters(command=command, args=entry["args"], cwd=str(ROOT), env={"PATH": SEARCH_PATH})
    with anyio.fail_after(90):
        async with Client(params) as session:
            names = [tool.name for tool in (await session.list_tools()).tools]
    assert names
    if "get-env" in entry["args"]:
        assert "get-env" not in names and "echo" in names


def test_the_example_gateway_config_is_valid() -> None:
    config = load_config(EXAMPLES / "airlock.toml")
    assert set(config.upstreams) == {"everything", "time", "remote"}
    assert config.upstreams["remote"].url is not None and config.upstreams["remote"].command is None
    assert config.gateway.deny == ["get-env"]
