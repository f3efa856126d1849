"""gateway/cli/install.py: `airlock install` as a command: its flags, the files it plans before
writing any, and the usage errors it reports."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway.cli.install import cmd_install
from gateway.errors import EXIT_USAGE, ConfigError
from gateway.install.errors import ClientConfigMissing, ClientConfigShape, UnknownClient
from gateway.install.files import backup_path
from gateway.policy.model import PolicyError
from tests.unit.install.conftest import Home, airlock_parser
from tests.unit.install.samples import (
    CURSOR,
    CURSOR_PATH,
    LAUNCHER,
    POLICY,
    VSCODE_MCP,
    VSCODE_MCP_INSTALLED,
    VSCODE_MCP_PATH,
    VSCODE_SETTINGS,
    VSCODE_SETTINGS_INSTALLED,
    VSCODE_SETTINGS_PATH,
)


def test_vscode_install_rewrites_both_mcp_json_and_settings_json_when_both_exist(home: Home) -> None:
    mcp = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    settings = home.write(VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)
    home.install("vscode")
    assert (mcp.read_text(), settings.read_text()) == (VSCODE_MCP_INSTALLED, VSCODE_SETTINGS_INSTALLED)


def test_an_error_in_one_vscode_file_leaves_the_other_unwritten(home: Home) -> None:
    mcp = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    home.write(VSCODE_SETTINGS_PATH, '{"mcp": []}')
    home.fails("vscode", error=ClientConfigShape)
    assert mcp.read_text() == VSCODE_MCP
    assert not backup_path(mcp).exists()


def test_policy_is_validated_and_written_as_an_absolute_path(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    monkeypatch.chdir(POLICY.parent)
    home.install("cursor", "--policy", POLICY.name)
    args = json.loads(config.read_text())["mcpServers"]["browser"]["args"]
    assert args[:6] == ["run", "--name", "browser", "--policy", str(POLICY), "--"]


def test_an_unknown_client_is_refused_by_the_parser_and_by_the_library(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        airlock_parser().parse_args(["install", "zed"])
    assert exited.value.code == EXIT_USAGE
    assert "invalid choice: 'zed'" in capsys.readouterr().err
    args = argparse.Namespace(client="zed", config=None, policy=None, dry_run=False, uninstall=False, restore_backup=False)
    with pytest.raises(UnknownClient, match="unknown client 'zed': choose one of claude, vscode, cursor") as caught:
        cmd_install(args, launcher=LAUNCHER, environ=home.environ, platform="linux")
    assert caught.value.exit_code == EXIT_USAGE


def test_restore_backup_needs_uninstall_and_an_existing_backup(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.fails("cursor", "--restore-backup", error=ConfigError)
    error = home.fails("cursor", "--uninstall", "--restore-backup", error=ClientConfigMissing)
    assert f"no backup at {backup_path(config)}" in error.message


def test_policy_with_uninstall_and_an_invalid_policy_are_usage_errors(home: Home, tmp_path: Path) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.fails("cursor", "--uninstall", "--policy", str(POLICY), error=ConfigError)
    bad = tmp_path / "bad.toml"
    bad.write_text("version = [")
    home.fails("cursor", "--policy", str(bad), error=PolicyError)
    assert config.read_text() == CURSOR
