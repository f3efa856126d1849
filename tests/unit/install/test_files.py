"""gateway/install/files.py: the backup is written once and never through a symlink, files are
replaced atomically with their mode and only if unchanged, and a dry run prints a unified diff."""

from __future__ import annotations

import errno
import json
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gateway.install.errors import BackupUnsafe, ClientConfigUnwritable
from gateway.install.files import backup_path, replace_atomically
from tests.unit.install.conftest import Home
from tests.unit.install.samples import (
    AIRLOCK,
    CLAUDE,
    CLAUDE_INSTALLED,
    CLAUDE_PATH,
    CURSOR,
    CURSOR_INSTALLED,
    CURSOR_PATH,
    VSCODE_MCP,
    VSCODE_MCP_PATH,
    VSCODE_SETTINGS,
    VSCODE_SETTINGS_PATH,
)


def test_dry_run_prints_a_unified_diff_and_writes_nothing(home: Home) -> None:
    config = home.write(CLAUDE_PATH, CLAUDE)
    out = home.install("claude", "--dry-run")
    assert config.read_text() == CLAUDE
    assert not backup_path(config).exists()
    assert f"--- a/{config}\n+++ b/{config}\n" in out
    assert '-      "command": "npx",\n' in out
    assert f'+      "command": "{AIRLOCK}",\n' in out
    assert '-    "time": {"command": "mcp-server-time"}\n' in out
    assert "dry run: nothing written" in out
    assert f"would save the original as {backup_path(config)}" in out


def test_dry_run_of_uninstall_shows_the_diff_back_and_writes_nothing(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.install("cursor")
    out = home.install("cursor", "--uninstall", "--dry-run")
    assert config.read_text() == CURSOR_INSTALLED
    assert '+      "args": ["-y", "@modelcontextprotocol/server-postgres"],\n' in out


def test_dry_run_shows_the_remote_entry_rewritten_and_writes_nothing(home: Home) -> None:
    config = home.write(CLAUDE_PATH, CLAUDE)
    out = home.install("claude", "--dry-run")
    assert config.read_text() == CLAUDE
    assert not backup_path(config).exists()
    assert '-    "remote-notes": {"url": "https://notes.example.com/mcp", "headers": {"Authorization": "Bearer t0k"}},\n' in out
    assert f'+    "remote-notes": {{"command": "{AIRLOCK}", "args": ["run", "--name", "remote-notes", "--url", ' in out
    home.install("claude")
    out = home.install("claude", "--uninstall", "--dry-run")
    assert '+    "remote-notes": {"url": "https://notes.example.com/mcp", "headers": {"Authorization": "Bearer t0k"}},\n' in out
    assert config.read_text() == CLAUDE_INSTALLED


def test_the_backup_is_written_once_and_a_later_install_never_overwrites_it(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.install("cursor")
    backup = backup_path(config)
    assert backup.read_text() == CURSOR
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600  # env may hold secrets
    data = json.loads(config.read_text())
    data["mcpServers"]["added-later"] = {"command": "uvx", "args": ["mcp-server-git"]}
    config.write_text(json.dumps(data, indent=2))
    out = home.install("cursor")
    assert "wrapped    added-later" in out
    assert backup.read_text() == CURSOR
    assert "(kept as it was)" in out


def test_restore_backup_puts_back_the_whole_original_file(home: Home) -> None:
    config = home.write(VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)
    home.install("vscode")
    home.install("vscode", "--uninstall", "--restore-backup")
    assert config.read_text() == VSCODE_SETTINGS  # comments included


def test_restore_backup_restores_the_vscode_file_that_has_one_and_leaves_the_other(home: Home) -> None:
    mcp = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    home.install("vscode")
    settings = home.write(VSCODE_SETTINGS_PATH, '{"editor.fontSize": 14}')
    out = home.install("vscode", "--uninstall", "--restore-backup")
    assert (mcp.read_text(), settings.read_text()) == (VSCODE_MCP, '{"editor.fontSize": 14}')
    assert f"restored   -  the whole file from {backup_path(mcp)}" in out


def test_the_file_mode_is_kept(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    config.chmod(0o640)
    home.install("cursor")
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_a_symlinked_config_is_written_at_its_target_and_the_link_stays(home: Home, tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "cursor-mcp.json"
    target.parent.mkdir()
    target.write_text(CURSOR)
    link = home.root / CURSOR_PATH
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    home.install("cursor")
    assert link.is_symlink()
    assert target.read_text() == CURSOR_INSTALLED
    assert backup_path(link).read_text() == CURSOR


def test_a_symlink_at_the_backup_path_is_refused_and_nothing_is_written(home: Home, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    config = home.write(CURSOR_PATH, CURSOR)
    backup_path(config).symlink_to(victim)
    error = home.fails("cursor", error=BackupUnsafe)
    assert "is a symbolic link" in error.message
    assert victim.read_text() == "precious"
    assert config.read_text() == CURSOR
    home.fails("cursor", "--uninstall", "--restore-backup", error=BackupUnsafe)


def test_a_file_changed_by_someone_else_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "mcp.json"
    config.write_text('{"changed": true}')
    with pytest.raises(ClientConfigUnwritable, match="changed while airlock was rewriting it"):
        replace_atomically(config, b"{}", b'{"original": true}')
    assert config.read_text() == '{"changed": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["mcp.json"]  # no temporary file left


def test_a_file_that_cannot_be_written_is_a_config_error_and_stays_untouched(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: Any) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    config = home.write(CURSOR_PATH, CURSOR)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    error = home.fails("cursor", error=ClientConfigUnwritable)
    assert error.message == f"cannot write {config}: Permission denied"
    assert config.read_text() == CURSOR
