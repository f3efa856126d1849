"""gateway/install/locate.py: where each client keeps its config, the --config override, and the
`airlock` a wrapped entry starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.install.errors import ClientConfigMissing
from gateway.install.locate import Launcher, candidate_files
from tests.unit.install.conftest import Home
from tests.unit.install.samples import (
    CLAUDE,
    CLAUDE_INSTALLED,
    CLAUDE_PATH,
    VSCODE_MCP,
    VSCODE_MCP_INSTALLED,
    VSCODE_MCP_PATH,
    VSCODE_SETTINGS,
    VSCODE_SETTINGS_INSTALLED,
    VSCODE_SETTINGS_PATH,
)


@pytest.mark.parametrize(
    ("client", "platform", "environ", "expected"),
    [
        ("claude", "linux", {"HOME": "/h"}, ["/h/.config/Claude/claude_desktop_config.json"]),
        ("claude", "linux", {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}, ["/x/Claude/claude_desktop_config.json"]),
        ("claude", "linux", {"HOME": "/h", "XDG_CONFIG_HOME": "relative"}, ["/h/.config/Claude/claude_desktop_config.json"]),
        ("claude", "darwin", {"HOME": "/Users/me"}, ["/Users/me/Library/Application Support/Claude/claude_desktop_config.json"]),
        ("cursor", "linux", {"HOME": "/h", "XDG_CONFIG_HOME": "/x"}, ["/h/.cursor/mcp.json"]),
        ("vscode", "linux", {"HOME": "/h"}, ["/h/.config/Code/User/mcp.json", "/h/.config/Code/User/settings.json"]),
        ("vscode", "darwin", {"HOME": "/Users/me"},
         ["/Users/me/Library/Application Support/Code/User/mcp.json", "/Users/me/Library/Application Support/Code/User/settings.json"]),
    ],
)  # fmt: skip
def test_config_locations_follow_home_xdg_and_the_platform(
    client: str, platform: str, environ: dict[str, str], expected: list[str]
) -> None:
    assert [str(c.path) for c in candidate_files(client, environ, platform)] == expected


def test_xdg_config_home_is_where_the_linux_claude_config_is_found(home: Home, tmp_path: Path) -> None:
    home.environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    config = tmp_path / "xdg" / "Claude" / "claude_desktop_config.json"
    config.parent.mkdir(parents=True)
    config.write_text(CLAUDE)
    home.install("claude")
    assert config.read_text() == CLAUDE_INSTALLED


def test_config_flag_names_the_file_and_vscode_layout_comes_from_its_content(home: Home, tmp_path: Path) -> None:
    workspace = tmp_path / "project" / ".vscode" / "mcp.json"
    workspace.parent.mkdir(parents=True)
    workspace.write_text(VSCODE_MCP)
    home.install("vscode", "--config", str(workspace))
    assert workspace.read_text() == VSCODE_MCP_INSTALLED
    insiders = tmp_path / "Code - Insiders" / "settings.json"
    insiders.parent.mkdir()
    insiders.write_text(VSCODE_SETTINGS)
    home.install("vscode", "--config", str(insiders))
    assert insiders.read_text() == VSCODE_SETTINGS_INSTALLED


def test_the_launcher_is_the_airlock_script_beside_the_interpreter_else_python_dash_m(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text("")
    assert Launcher.from_interpreter(str(python)) == Launcher(str(python), ("-m", "gateway"))
    script = python.with_name("airlock")
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert Launcher.from_interpreter(str(python)) == Launcher(str(script))


def test_a_missing_config_says_where_it_looked_and_how_to_pass_config(home: Home) -> None:
    error = home.fails("claude", error=ClientConfigMissing)
    assert str(home.root / CLAUDE_PATH) in error.message
    assert "$XDG_CONFIG_HOME" in error.message
    assert "pass --config PATH" in error.message
    error = home.fails("vscode", error=ClientConfigMissing)
    assert f"{home.root / VSCODE_MCP_PATH} or {home.root / VSCODE_SETTINGS_PATH}" in error.message
    error = home.fails("cursor", "--config", str(home.root / "nope.json"), error=ClientConfigMissing)
    assert error.message == f"--config {home.root / 'nope.json'}: no such file"
