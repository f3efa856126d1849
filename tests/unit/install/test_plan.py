"""gateway/install/plan.py: the edit planned for one file keeps everything but the changed values
(line endings and BOM included), warns about comments it cannot keep, and on uninstall copies an
entry back from the backup's text."""

from __future__ import annotations

import pytest

from gateway.install.files import backup_path
from tests.unit.install.conftest import Home
from tests.unit.install.samples import (
    CURSOR,
    CURSOR_INSTALLED,
    CURSOR_PATH,
    ORIGINALS,
    VSCODE_MCP,
    VSCODE_MCP_PATH,
    VSCODE_SETTINGS,
    VSCODE_SETTINGS_INSTALLED,
    VSCODE_SETTINGS_PATH,
    servers_in,
)


def test_install_rewrites_the_mcp_section_of_older_vscode_settings_and_says_which_comments_it_dropped(home: Home) -> None:
    config = home.write(VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)
    out = home.install("vscode")
    assert config.read_text() == VSCODE_SETTINGS_INSTALLED
    assert f"warning: comments inside server 'time' are not preserved (the backup {backup_path(config)} keeps them)" in out
    assert backup_path(config).read_text() == VSCODE_SETTINGS


@pytest.mark.parametrize(("client", "relative", "original"), ORIGINALS)
def test_uninstall_gives_back_the_original_entries(home: Home, client: str, relative: str, original: str) -> None:
    config = home.write(relative, original)
    home.install(client)
    out = home.install(client, "--uninstall")
    assert "unwrapped" in out
    assert config.read_text() == original  # comments inside an entry included: it comes from the backup's text
    assert backup_path(config).read_text() == original  # kept


def test_uninstall_copies_a_commented_remote_entry_back_from_the_backup_byte_for_byte(home: Home) -> None:
    original = VSCODE_MCP.replace(
        '\t\t"docs": {"type": "http", "url": "https://docs.example.com/mcp"},\n',
        '\t\t"docs": {\n\t\t\t"type": "http", // streamable, falls back to SSE\n\t\t\t"url": "https://docs.example.com/mcp",\n'
        '\t\t\t"headers": {"Authorization": "Bearer ${input:docs-token}"},\n\t\t},\n',
    )
    config = home.write(VSCODE_MCP_PATH, original)
    out = home.install("vscode")
    assert "warning: comments inside server 'docs' are not preserved" in out
    assert servers_in(config, ("servers",))["docs"]["env"] == {"AIRLOCK_HEADER_AUTHORIZATION": "Bearer ${input:docs-token}"}
    home.install("vscode", "--uninstall")
    assert config.read_text() == original


def test_a_config_without_servers_is_left_alone(home: Home) -> None:
    config = home.write(VSCODE_SETTINGS_PATH, '{"editor.fontSize": 14}\n')
    out = home.install("vscode")
    assert "no MCP servers configured under 'mcp.servers'" in out
    assert config.read_text() == '{"editor.fontSize": 14}\n'


def test_crlf_line_endings_and_a_byte_order_mark_are_kept(home: Home) -> None:
    original = CURSOR.replace("\n", "\r\n").encode()
    config = home.write(CURSOR_PATH, b"\xef\xbb\xbf" + original)
    home.install("cursor")
    data = config.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data[3:] == CURSOR_INSTALLED.replace("\n", "\r\n").encode()
    home.install("cursor", "--uninstall")
    assert config.read_bytes() == b"\xef\xbb\xbf" + original
