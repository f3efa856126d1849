"""gateway/install/ and gateway/cli/install.py: `airlock install` rewrites Claude Desktop, Cursor and VS Code configs so
each server, stdio or remote, runs through `airlock run`, idempotently, with a backup, and undoes it."""

from __future__ import annotations

import argparse
import errno
import json
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.install import add_parser, cmd_install
from gateway.errors import EXIT_OK, EXIT_USAGE, ConfigError
from gateway.install.errors import (
    BackupUnsafe,
    ClientConfigInvalid,
    ClientConfigMissing,
    ClientConfigShape,
    ClientConfigUnwritable,
    UnknownClient,
)
from gateway.install.files import backup_path, replace_atomically
from gateway.install.jsonc import strip_jsonc
from gateway.install.locate import Launcher, candidate_files
from gateway.install.wrap import header_variables
from gateway.policy.model import PolicyError

AIRLOCK = "/opt/airlock/bin/airlock"
LAUNCHER = Launcher(AIRLOCK)
POLICY = Path(__file__).resolve().parents[3] / "policies" / "default.toml"

CLAUDE = """\
{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": [
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/home/me/docs"
      ]
    },
    "GitHub Tools": {
      "command": "docker",
      "args": ["run", "-i", "--rm", "-e", "GITHUB_TOKEN", "ghcr.io/github/github-mcp-server"],
      "env": {"GITHUB_TOKEN": "ghp_example", "LOG_LEVEL": "warn"},
      "disabled": false
    },
    "remote-notes": {"url": "https://notes.example.com/mcp", "headers": {"Authorization": "Bearer t0k"}},
    "time": {"command": "mcp-server-time"}
  },
  "globalShortcut": "Ctrl+Space"
}
"""

CLAUDE_INSTALLED = f"""\
{{
  "mcpServers": {{
    "filesystem": {{
      "command": "{AIRLOCK}",
      "args": [
        "run",
        "--name",
        "filesystem",
        "--",
        "npx",
        "-y",
        "@modelcontextprotocol/server-filesystem",
        "/home/me/docs"
      ]
    }},
    "GitHub Tools": {{
      "command": "{AIRLOCK}",
      "args": ["run", "--name", "github-tools", "--pass-env", "GITHUB_TOKEN", "--pass-env", "LOG_LEVEL", "--", "docker", "run", \
"-i", "--rm", "-e", "GITHUB_TOKEN", "ghcr.io/github/github-mcp-server"],
      "env": {{"GITHUB_TOKEN": "ghp_example", "LOG_LEVEL": "warn"}},
      "disabled": false
    }},
    "remote-notes": {{"command": "{AIRLOCK}", "args": ["run", "--name", "remote-notes", "--url", "https://notes.example.com/mcp", \
"--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION", "--"], "env": {{"AIRLOCK_HEADER_AUTHORIZATION": "Bearer t0k"}}}},
    "time": {{"command": "{AIRLOCK}", "args": ["run", "--name", "time", "--", "mcp-server-time"]}}
  }},
  "globalShortcut": "Ctrl+Space"
}}
"""

CURSOR = """\
{
  "mcpServers": {
    "postgres": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-postgres"],
      "env": {
        "DATABASE_URL": "postgresql://localhost/app"
      }
    },
    "linear": {
      "type": "sse",
      "url": "https://mcp.linear.app/sse"
    },
    "browser": {
      "command": "uvx",
      "args": ["mcp-server-fetch", "--ignore-robots-txt"],
      "cwd": "/home/me/work"
    }
  }
}
"""

CURSOR_INSTALLED = f"""\
{{
  "mcpServers": {{
    "postgres": {{
      "command": "{AIRLOCK}",
      "args": ["run", "--name", "postgres", "--pass-env", "DATABASE_URL", "--", "npx", "-y", "@modelcontextprotocol/server-postgres"],
      "env": {{
        "DATABASE_URL": "postgresql://localhost/app"
      }}
    }},
    "linear": {{
      "command": "{AIRLOCK}",
      "args": [
        "run",
        "--name",
        "linear",
        "--url",
        "https://mcp.linear.app/sse",
        "--transport",
        "sse",
        "--"
      ]
    }},
    "browser": {{
      "command": "{AIRLOCK}",
      "args": ["run", "--name", "browser", "--", "uvx", "mcp-server-fetch", "--ignore-robots-txt"],
      "cwd": "/home/me/work"
    }}
  }}
}}
"""

# VS Code's newer mcp.json: JSONC, with inputs, a stdio server with an input variable, an HTTP one.
VSCODE_MCP = """\
{
\t// Servers for every workspace.
\t"inputs": [
\t\t{"type": "promptString", "id": "gh-token", "description": "GitHub token", "password": true},
\t],
\t"servers": {
\t\t/* GitHub, through docker */
\t\t"github": {
\t\t\t"type": "stdio",
\t\t\t"command": "docker", // needs the daemon
\t\t\t"args": ["run", "-i", "--rm", "ghcr.io/github/github-mcp-server"],
\t\t\t"env": {"GITHUB_PERSONAL_ACCESS_TOKEN": "${input:gh-token}"},
\t\t},
\t\t"docs": {"type": "http", "url": "https://docs.example.com/mcp"},
\t},
}
"""

VSCODE_MCP_INSTALLED = f"""\
{{
\t// Servers for every workspace.
\t"inputs": [
\t\t{{"type": "promptString", "id": "gh-token", "description": "GitHub token", "password": true}},
\t],
\t"servers": {{
\t\t/* GitHub, through docker */
\t\t"github": {{
\t\t\t"type": "stdio",
\t\t\t"command": "{AIRLOCK}", // needs the daemon
\t\t\t"args": ["run", "--name", "github", "--pass-env", "GITHUB_PERSONAL_ACCESS_TOKEN", "--", "docker", "run", "-i", "--rm", \
"ghcr.io/github/github-mcp-server"],
\t\t\t"env": {{"GITHUB_PERSONAL_ACCESS_TOKEN": "${{input:gh-token}}"}},
\t\t}},
\t\t"docs": {{"type": "stdio", "command": "{AIRLOCK}", "args": ["run", "--name", "docs", "--url", "https://docs.example.com/mcp", "--"]}},
\t}},
}}
"""

# Older VS Code: servers under "mcp" in the user settings.json, among other settings.
VSCODE_SETTINGS = """\
{
    // Editor
    "editor.fontSize": 14, // large
    "files.exclude": {"**/.git": true,},
    "mcp": {
        "servers": {
            "time": {
                "command": "uvx",
                "args": [
                    "mcp-server-time", // the PyPI one
                    "--local-timezone=Europe/Paris"
                ]
            }
        }
    }
}
"""

VSCODE_SETTINGS_INSTALLED = f"""\
{{
    // Editor
    "editor.fontSize": 14, // large
    "files.exclude": {{"**/.git": true,}},
    "mcp": {{
        "servers": {{
            "time": {{
                "command": "{AIRLOCK}",
                "args": [
                    "run",
                    "--name",
                    "time",
                    "--",
                    "uvx",
                    "mcp-server-time",
                    "--local-timezone=Europe/Paris"
                ]
            }}
        }}
    }}
}}
"""


# -- helpers ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


class Home:
    """A temporary home directory, and `airlock install` run against it (Linux layout)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.environ: dict[str, str] = {"HOME": str(root)}
        self.capsys = capsys
        self.platform = "linux"

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", newline="")
        return path

    def install(self, *argv: str, launcher: Launcher = LAUNCHER) -> str:
        args = _parser().parse_args(["install", *argv])
        assert args.handler is cmd_install
        status = cmd_install(args, launcher=launcher, environ=self.environ, platform=self.platform)
        assert status == EXIT_OK
        return self.capsys.readouterr().out

    def fails(self, *argv: str, error: type[ConfigError]) -> ConfigError:
        args = _parser().parse_args(["install", *argv])
        with pytest.raises(error) as caught:
            cmd_install(args, launcher=LAUNCHER, environ=self.environ, platform=self.platform)
        assert caught.value.exit_code == EXIT_USAGE
        return caught.value


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Home:
    return Home(tmp_path / "home", capsys)


CLAUDE_PATH = ".config/Claude/claude_desktop_config.json"
CURSOR_PATH = ".cursor/mcp.json"
VSCODE_MCP_PATH = ".config/Code/User/mcp.json"
VSCODE_SETTINGS_PATH = ".config/Code/User/settings.json"


# -- install -----------------------------------------------------------------------------------------


def test_install_wraps_each_claude_server_and_keeps_everything_else_byte_for_byte(home: Home) -> None:
    config = home.write(CLAUDE_PATH, CLAUDE)
    out = home.install("claude")
    assert config.read_text() == CLAUDE_INSTALLED
    assert "wrapped    filesystem    as airlock server 'filesystem'" in out
    assert "wrapped    GitHub Tools  as airlock server 'github-tools'; passes env GITHUB_TOKEN, LOG_LEVEL" in out
    assert ("wrapped    remote-notes  as airlock server 'remote-notes'; remote https://notes.example.com/mcp over streamable-http; "
            "headers Authorization sent from env AIRLOCK_HEADER_AUTHORIZATION") in out  # fmt: skip
    assert "Bearer t0k" not in out
    assert "wrapped    time          as airlock server 'time'" in out
    assert f"wrote {config}" in out


def test_install_wraps_cursor_servers_the_sse_one_included(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    out = home.install("cursor")
    assert config.read_text() == CURSOR_INSTALLED
    assert "wrapped    linear    as airlock server 'linear'; remote https://mcp.linear.app/sse over sse; sends no headers" in out


def test_install_reads_jsonc_in_vscode_mcp_json_and_keeps_its_comments(home: Home) -> None:
    config = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    out = home.install("vscode")
    assert config.read_text() == VSCODE_MCP_INSTALLED
    assert "warning" not in out  # no comment sat inside a rewritten value
    assert "wrapped    docs    as airlock server 'docs'; remote https://docs.example.com/mcp over streamable-http" in out


def test_install_rewrites_the_mcp_section_of_older_vscode_settings_and_says_which_comments_it_dropped(home: Home) -> None:
    config = home.write(VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)
    out = home.install("vscode")
    assert config.read_text() == VSCODE_SETTINGS_INSTALLED
    assert f"warning: comments inside server 'time' are not preserved (the backup {backup_path(config)} keeps them)" in out
    assert backup_path(config).read_text() == VSCODE_SETTINGS


def test_vscode_install_rewrites_both_mcp_json_and_settings_json_when_both_exist(home: Home) -> None:
    mcp = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    settings = home.write(VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)
    home.install("vscode")
    assert (mcp.read_text(), settings.read_text()) == (VSCODE_MCP_INSTALLED, VSCODE_SETTINGS_INSTALLED)


@pytest.mark.parametrize(
    ("client", "relative", "original"),
    [("claude", CLAUDE_PATH, CLAUDE), ("cursor", CURSOR_PATH, CURSOR), ("vscode", VSCODE_MCP_PATH, VSCODE_MCP),
     ("vscode", VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)],
)  # fmt: skip
def test_a_second_install_changes_nothing(home: Home, client: str, relative: str, original: str) -> None:
    config = home.write(relative, original)
    home.install(client)
    installed = config.read_bytes()
    before = config.stat().st_mtime_ns
    out = home.install(client)
    assert config.read_bytes() == installed
    assert config.stat().st_mtime_ns == before  # not even rewritten with the same bytes
    assert "wrapped " not in out
    assert "nothing to change" in out
    assert backup_path(config).read_text() == original


@pytest.mark.parametrize(
    ("client", "relative", "original"),
    [("claude", CLAUDE_PATH, CLAUDE), ("cursor", CURSOR_PATH, CURSOR), ("vscode", VSCODE_MCP_PATH, VSCODE_MCP),
     ("vscode", VSCODE_SETTINGS_PATH, VSCODE_SETTINGS)],
)  # fmt: skip
def test_uninstall_gives_back_the_original_entries(home: Home, client: str, relative: str, original: str) -> None:
    config = home.write(relative, original)
    home.install(client)
    out = home.install(client, "--uninstall")
    assert "unwrapped" in out
    assert config.read_text() == original  # comments inside an entry included: it comes from the backup's text
    assert backup_path(config).read_text() == original  # kept


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


def test_uninstall_unwraps_in_place_so_later_edits_to_the_file_survive(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.install("cursor")
    data = json.loads(config.read_text())
    data["mcpServers"]["browser"]["env"] = {"FETCH_UA": "me"}  # edited after the install
    data["mcpServers"]["manual"] = {"command": "node", "args": ["server.js"]}
    config.write_text(json.dumps(data, indent=2))
    home.install("cursor", "--uninstall")
    servers = json.loads(config.read_text())["mcpServers"]
    assert servers["browser"] == {"command": "uvx", "args": ["mcp-server-fetch", "--ignore-robots-txt"], "cwd": "/home/me/work",
                                  "env": {"FETCH_UA": "me"}}  # fmt: skip
    assert servers["manual"] == {"command": "node", "args": ["server.js"]}
    assert servers["postgres"] == json.loads(CURSOR)["mcpServers"]["postgres"]


def test_uninstall_without_a_backup_recovers_the_command_from_after_the_dashes(home: Home) -> None:
    config = home.write(CLAUDE_PATH, CLAUDE)
    home.install("claude")
    backup_path(config).unlink()
    home.install("claude", "--uninstall")
    assert json.loads(config.read_text()) == json.loads(CLAUDE)
    assert config.read_text() == CLAUDE  # an entry that had no args gets none back


def test_uninstall_drops_airlock_options_added_by_hand_and_says_so(home: Home) -> None:
    entry = {"command": AIRLOCK, "args": ["run", "--name", "t", "--log", "/var/log/airlock", "--", "uvx", "mcp-server-time"]}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"t": entry}}))
    out = home.install("cursor", "--uninstall")
    assert json.loads(config.read_text()) == {"mcpServers": {"t": {"command": "uvx", "args": ["mcp-server-time"]}}}
    assert "unwrapped  t  uvx mcp-server-time (dropped airlock options: --log /var/log/airlock)" in out


def test_uninstall_leaves_servers_that_ran_through_airlock_before_the_install(home: Home) -> None:
    by_hand = {"command": "uvx", "args": ["--from", "mcp-airlock", "airlock", "run", "--", "mcp-server-time"]}
    own = {"command": "/usr/local/bin/airlock", "args": ["run", "--", "mcp-server-fetch"]}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"by-hand": by_hand, "own": own, "git": {"command": "mcp-server-git"}}}))
    out = home.install("cursor")
    assert "unchanged  by-hand  already runs through airlock" in out
    assert "unchanged  own      already runs through airlock" in out
    out = home.install("cursor", "--uninstall")
    servers = json.loads(config.read_text())["mcpServers"]
    assert servers == {"by-hand": by_hand, "own": own, "git": {"command": "mcp-server-git"}}
    assert "skipped    by-hand  already ran through airlock before 'airlock install' (see the backup)" in out
    assert "skipped    own      already ran through airlock before 'airlock install' (see the backup)" in out


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (
            {"command": "uvx", "args": ["--from", "mcp-airlock", "airlock", "run", "--", "mcp-server-time"]},
            "started through another program",
        ),
        ({"command": AIRLOCK, "args": ["run", "--config", "airlock.toml"]}, "no '--' followed by a command"),
        ({"command": AIRLOCK, "args": ["run", "--name", "x", "--"]}, "no '--' followed by a command"),
    ],
)
def test_uninstall_without_a_backup_leaves_airlock_forms_it_cannot_undo_precisely(home: Home, entry: Any, why: str) -> None:
    text = json.dumps({"mcpServers": {"x": entry}})
    config = home.write(CURSOR_PATH, text)
    out = home.install("cursor", "--uninstall")
    assert f"skipped    x  runs airlock in a form 'airlock install' does not write ({why}); edit it by hand" in out
    assert config.read_text() == text


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


def test_an_error_in_one_vscode_file_leaves_the_other_unwritten(home: Home) -> None:
    mcp = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    home.write(VSCODE_SETTINGS_PATH, '{"mcp": []}')
    home.fails("vscode", error=ClientConfigShape)
    assert mcp.read_text() == VSCODE_MCP
    assert not backup_path(mcp).exists()


def test_server_names_are_normalised_and_made_unique_for_rules_and_pins(home: Home) -> None:
    servers = {"My Server": {"command": "a"}, "my-server": {"command": "b"}, "Ｆｉｌｅｓ": {"command": "c"}}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": servers}))
    home.install("cursor")
    names = [entry["args"][2] for entry in json.loads(config.read_text())["mcpServers"].values()]
    assert names == ["my-server", "my-server-2", "files"]


def test_policy_is_validated_and_written_as_an_absolute_path(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    monkeypatch.chdir(POLICY.parent)
    home.install("cursor", "--policy", POLICY.name)
    args = json.loads(config.read_text())["mcpServers"]["browser"]["args"]
    assert args[:6] == ["run", "--name", "browser", "--policy", str(POLICY), "--"]


def test_the_python_launcher_form_is_written_and_recognised_as_installed(home: Home) -> None:
    launcher = Launcher("/opt/venv/bin/python3", ("-m", "gateway"))
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"git": {"command": "mcp-server-git", "args": ["-r", "."]}}}))
    home.install("cursor", launcher=launcher)
    entry = json.loads(config.read_text())["mcpServers"]["git"]
    assert entry == {
        "command": "/opt/venv/bin/python3",
        "args": ["-m", "gateway", "run", "--name", "git", "--", "mcp-server-git", "-r", "."],
    }
    assert "nothing to change" in home.install("cursor")
    home.install("cursor", "--uninstall")
    assert json.loads(config.read_text())["mcpServers"]["git"] == {"command": "mcp-server-git", "args": ["-r", "."]}


def test_an_entry_with_an_env_file_is_wrapped_with_a_warning_about_its_variables(home: Home) -> None:
    servers = {"api": {"type": "stdio", "command": "node", "args": ["api.js"], "envFile": "${workspaceFolder}/.env"}}
    config = home.write(VSCODE_MCP_PATH, json.dumps({"servers": servers}))
    out = home.install("vscode")
    assert json.loads(config.read_text())["servers"]["api"]["envFile"] == "${workspaceFolder}/.env"
    assert "variables from envFile reach the server only if named: add --pass-env NAME" in out


def test_an_installed_entry_whose_env_gained_a_variable_is_flagged(home: Home) -> None:
    entry = {"command": AIRLOCK, "args": ["run", "--name", "x", "--pass-env", "A", "--", "x"], "env": {"A": "1", "B": "2"}}
    home.write(CURSOR_PATH, json.dumps({"mcpServers": {"x": entry}}))
    assert "(warning: env B not passed to the server: add --pass-env NAME)" in home.install("cursor")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"type": "streamable-http"}, "remote server (streamable-http) with no 'url' string: nothing for 'airlock run --url' to reach"),
        ({"url": 42}, "remote server with no 'url' string"),
        ({"type": "http", "url": " "}, "remote server (http) with no 'url' string"),
        ({"type": "ws", "url": "wss://a.example/mcp"}, "WebSocket server (wss://a.example/mcp): 'airlock run --url' speaks"),
        ({"type": "http", "url": "unix:///tmp/mcp.sock"}, "remote server (unix:///tmp/mcp.sock): 'airlock run --url' reaches http:// and"),
        (
            {"type": "http", "url": "https://a.example/mcp", "oauth": {"clientId": "c-1"}},
            "remote server (https://a.example/mcp) that signs in with OAuth ('oauth'): the client does the sign-in",
        ),
        (
            {"url": "https://a.example/mcp", "auth": {"CLIENT_ID": "c-1", "scopes": ["mcp"]}},
            "remote server (https://a.example/mcp) that signs in with OAuth ('auth')",
        ),
        ({"url": "https://a.example/mcp", "command": "npx"}, "remote server (https://a.example/mcp) that also has a 'command'"),
        ({"type": "stdio", "url": "https://a.example/mcp"}, "'type' is 'stdio' but the entry has a 'url'"),
        ({"type": 2, "url": "https://a.example/mcp"}, "'type' is not a string"),
        ({"url": "https://a.example/mcp", "serverUrl": "https://b.example/mcp"}, "both 'url' and 'serverUrl'"),
        ({"url": "https://a.example/mcp", "headers": ["Authorization: x"]}, "'headers' is not an object"),
        ({"url": "https://a.example/mcp", "headers": {"X-Retries": 3}}, "header 'X-Retries' is a number, not a string"),
        ({"url": "https://a.example/mcp", "headers": {"X-Empty": ""}}, "header 'X-Empty' is empty"),
        ({"url": "https://a.example/mcp", "headers": {"Bad Name": "x"}}, "header name 'Bad Name' is not an HTTP field name"),
        ({"url": "https://a.example/mcp", "headers": {"-X": "x"}}, "header name '-X' starts with '-'"),
        ({"url": "https://a.example/mcp", "headers": {"X-A": "a\r\nX-B: b"}}, "header 'X-A' has a line break or NUL"),
        ({"url": "https://a.example/mcp", "env": ["A=1"]}, "'env' is not an object"),
        ("npx server", "the entry is a string, not an object"),
        ({"args": ["x"]}, "no 'command' string: not a stdio server"),
        ({"command": "x", "args": "--flag"}, "'args' is not a list of strings"),
        ({"command": "x", "env": ["A=1"]}, "'env' is not an object"),
        ({"command": "x", "env": {"-x": "1"}}, "'env' has names that are not variable names: '-x'"),
    ],
)
def test_entries_that_cannot_be_wrapped_are_left_as_they_are_with_the_reason(home: Home, entry: Any, reason: str) -> None:
    text = json.dumps({"mcpServers": {"odd": entry}}, indent=2) + "\n"
    config = home.write(CURSOR_PATH, text)
    out = home.install("cursor")
    assert f"skipped    odd  {reason}" in out
    assert config.read_text() == text
    assert not backup_path(config).exists()


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


# -- remote servers -------------------------------------------------------------------------------------

URL = "https://mcp.example.com/mcp"
SSE_URL = "https://mcp.example.com/sse"
TOKEN = "Bearer s3cr3t-t0ken-value"


def _run(*remote: str) -> list[str]:
    return ["run", "--name", "remote", "--url", *remote, "--"]


def _nest(layout: tuple[str, ...], servers: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = servers
    for key in reversed(layout):
        document = {key: document}
    return document


def _servers(config: Path, layout: tuple[str, ...]) -> dict[str, Any]:
    node: Any = json.loads(strip_jsonc(config.read_text())[0])
    for key in layout:
        node = node[key]
    assert isinstance(node, dict)
    return node


def _ordered(value: Any) -> str:
    """JSON text that differs when keys are in another order (== on dicts does not see order)."""
    return json.dumps(value)


# Each client's remote spellings: the entry, what install makes of it, and what uninstall writes
# back from the entry alone (no backup); None: the entry itself, byte for byte.
REMOTE_SPELLINGS = [
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"type": "http", "url": URL, "headers": {"Authorization": TOKEN}},
        {"type": "stdio", "command": AIRLOCK, "args": _run(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="vscode-http-with-headers"),
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"type": "sse", "url": SSE_URL},
        {"type": "stdio", "command": AIRLOCK, "args": _run(SSE_URL, "--transport", "sse")},
        None, id="vscode-sse"),
    pytest.param(
        "vscode", VSCODE_SETTINGS_PATH, ("mcp", "servers"),
        {"type": "http", "url": URL, "headers": {"X-API-Key": "k-123", "X-Team": "core"}, "dev": {"watch": "src/**"}},
        {"type": "stdio", "command": AIRLOCK,
         "args": _run(URL, "--header-env", "X-API-Key=AIRLOCK_HEADER_X_API_KEY", "--header-env", "X-Team=AIRLOCK_HEADER_X_TEAM"),
         "env": {"AIRLOCK_HEADER_X_API_KEY": "k-123", "AIRLOCK_HEADER_X_TEAM": "core"}, "dev": {"watch": "src/**"}},
        None, id="vscode-settings-http-with-headers-and-other-keys"),
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"url": URL},
        {"command": AIRLOCK, "args": _run(URL)},
        None, id="vscode-untyped-url"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"url": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": _run(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="cursor-url-with-headers"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"type": "sse", "url": SSE_URL, "disabled": False},
        {"command": AIRLOCK, "args": _run(SSE_URL, "--transport", "sse"), "disabled": False},
        None, id="cursor-typed-sse"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"serverUrl": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": _run(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        {"url": URL, "headers": {"Authorization": TOKEN}}, id="cursor-serverUrl"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"type": "http", "url": "${env:TEAM_MCP_URL}/mcp"},
        {"command": AIRLOCK, "args": _run("${env:TEAM_MCP_URL}/mcp")},
        {"url": "${env:TEAM_MCP_URL}/mcp"}, id="cursor-typed-http-with-a-variable-url"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"url": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": _run(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="claude-url-with-headers"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"type": "streamable-http", "url": URL},
        {"command": AIRLOCK, "args": _run(URL)},
        {"url": URL}, id="claude-streamable-http"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"url": SSE_URL, "type": "SSE"},
        {"command": AIRLOCK, "args": _run(SSE_URL, "--transport", "sse")},
        {"type": "sse", "url": SSE_URL}, id="claude-SSE-after-the-url"),
]  # fmt: skip


@pytest.mark.parametrize(("client", "relative", "layout", "entry", "wrapped", "unbacked"), REMOTE_SPELLINGS)
def test_remote_entries_become_airlock_run_url_entries_and_come_back_byte_for_byte(
    home: Home, client: str, relative: str, layout: tuple[str, ...], entry: Any, wrapped: Any, unbacked: Any
) -> None:
    text = json.dumps(_nest(layout, {"remote": entry}), indent=2) + "\n"
    config = home.write(relative, text)
    out = home.install(client)
    assert _ordered(_servers(config, layout)["remote"]) == _ordered(wrapped)
    assert "wrapped    remote  as airlock server 'remote'; remote " in out
    installed = config.read_bytes()
    assert "nothing to change" in home.install(client)
    assert config.read_bytes() == installed
    assert "unwrapped  remote" in home.install(client, "--uninstall")
    assert config.read_text() == text
    assert backup_path(config).read_text() == text


@pytest.mark.parametrize(("client", "relative", "layout", "entry", "wrapped", "unbacked"), REMOTE_SPELLINGS)
def test_without_a_backup_a_remote_entry_is_written_back_from_its_arguments_and_env(
    home: Home, client: str, relative: str, layout: tuple[str, ...], entry: Any, wrapped: Any, unbacked: Any
) -> None:
    text = json.dumps(_nest(layout, {"remote": entry}), indent=2) + "\n"
    config = home.write(relative, text)
    home.install(client)
    backup_path(config).unlink()
    home.install(client, "--uninstall")
    if unbacked is None:
        assert config.read_text() == text
    else:  # the same server; only the backup knows the spelling
        assert _ordered(_servers(config, layout)["remote"]) == _ordered(unbacked)


@pytest.mark.parametrize(
    "value",
    ["Bearer abc.def.ghi", "--policy=/tmp/allow-everything.toml", "a=b=c", "${input:api-token}", "clé secrète 秘密", "-- rm -rf /"],
)
def test_header_values_never_reach_the_command_line_or_the_summary(home: Home, value: str) -> None:
    entry = {"type": "http", "url": URL, "headers": {"Authorization": value, "X-Other": value + "-2"}}
    text = json.dumps({"servers": {"remote": entry}}, indent=2) + "\n"
    config = home.write(VSCODE_MCP_PATH, text)
    out = home.install("vscode")
    installed = _servers(config, ("servers",))["remote"]
    assert not any(value in arg for arg in installed["args"])
    assert installed["env"] == {"AIRLOCK_HEADER_AUTHORIZATION": value, "AIRLOCK_HEADER_X_OTHER": value + "-2"}
    assert value not in out
    assert value not in home.install("vscode", "--uninstall")
    assert config.read_text() == text


@pytest.mark.parametrize(
    ("headers", "env", "expected"),
    [
        (["Authorization"], [], ["AIRLOCK_HEADER_AUTHORIZATION"]),
        (["X-API-Key", "x.custom~h", "_"], [], ["AIRLOCK_HEADER_X_API_KEY", "AIRLOCK_HEADER_X_CUSTOM_H", "AIRLOCK_HEADER_HEADER"]),
        (["Authorization"], ["AIRLOCK_HEADER_AUTHORIZATION"], ["AIRLOCK_HEADER_AUTHORIZATION_2"]),
        (["Authorization"], ["airlock_header_authorization", "AIRLOCK_HEADER_AUTHORIZATION_2"], ["AIRLOCK_HEADER_AUTHORIZATION_3"]),
        (["X-Key", "X_Key", "x-key"], [], ["AIRLOCK_HEADER_X_KEY", "AIRLOCK_HEADER_X_KEY_2", "AIRLOCK_HEADER_X_KEY_3"]),
    ],
)
def test_header_variables_are_named_after_the_header_and_never_collide(headers: list[str], env: list[str], expected: list[str]) -> None:
    assert header_variables(headers, env) == expected


def test_header_variables_keep_clear_of_the_entrys_env_which_comes_back_untouched(home: Home) -> None:
    entry = {
        "url": URL,
        "headers": {"Authorization": TOKEN, "X-Key": "b", "X_Key": "c"},
        "env": {"AIRLOCK_HEADER_AUTHORIZATION": "mine", "airlock_header_x_key_2": "mine too"},
    }
    text = json.dumps({"mcpServers": {"remote": entry}}, indent=2) + "\n"
    config = home.write(CURSOR_PATH, text)
    home.install("cursor")
    installed = _servers(config, ("mcpServers",))["remote"]
    pairs = ["Authorization=AIRLOCK_HEADER_AUTHORIZATION_2", "X-Key=AIRLOCK_HEADER_X_KEY", "X_Key=AIRLOCK_HEADER_X_KEY_3"]
    assert installed["args"] == _run(URL, *(item for pair in pairs for item in ("--header-env", pair)))
    assert installed["env"] == {
        "AIRLOCK_HEADER_AUTHORIZATION": "mine",
        "airlock_header_x_key_2": "mine too",
        "AIRLOCK_HEADER_AUTHORIZATION_2": TOKEN,
        "AIRLOCK_HEADER_X_KEY": "b",
        "AIRLOCK_HEADER_X_KEY_3": "c",
    }
    backup_path(config).unlink()
    home.install("cursor", "--uninstall")
    assert config.read_text() == text


def test_an_installed_remote_entry_is_left_alone_and_its_header_variables_are_not_flagged(home: Home) -> None:
    config = home.write(CLAUDE_PATH, CLAUDE)
    home.install("claude")
    out = home.install("claude")
    assert "unchanged  remote-notes  already runs through airlock\n" in out
    assert "warning" not in out
    assert config.read_text() == CLAUDE_INSTALLED


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


def test_the_policy_and_the_python_launcher_go_into_the_remote_command_line_too(home: Home) -> None:
    launcher = Launcher("/opt/venv/bin/python3", ("-m", "gateway"))
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"remote": {"url": URL}}}))
    home.install("cursor", "--policy", str(POLICY), launcher=launcher)
    assert _servers(config, ("mcpServers",))["remote"] == {
        "command": "/opt/venv/bin/python3",
        "args": ["-m", "gateway", "run", "--name", "remote", "--policy", str(POLICY), "--url", URL, "--"],
    }
    assert "nothing to change" in home.install("cursor", launcher=launcher)
    home.install("cursor", "--uninstall")
    assert config.read_text() == json.dumps({"mcpServers": {"remote": {"url": URL}}})


def test_a_url_with_a_query_or_credentials_goes_through_env_not_the_command_line(home: Home) -> None:
    servers = {"q": {"url": URL + "?api_key=k-secret"}, "user": {"url": "https://me:pw-secret@mcp.example.com/mcp"}, "plain": {"url": URL}}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": servers}))
    out = home.install("cursor")
    flagged = [line.split()[1] for line in out.splitlines() if "it is read from env AIRLOCK_URL" in line]
    assert flagged == ["q", "user"]
    assert "secret" not in out  # nor in the summary
    wrapped = _servers(config, ("mcpServers",))
    for name in ("q", "user"):
        assert "--url-env" in wrapped[name]["args"] and "secret" not in " ".join(wrapped[name]["args"])
        assert wrapped[name]["env"]["AIRLOCK_URL"] == servers[name]["url"]
    assert "--url" in wrapped["plain"]["args"]
    home.install("cursor", "--uninstall")
    assert _servers(config, ("mcpServers",)) == servers


def test_a_remote_entry_added_after_the_first_install_is_written_back_without_the_backup(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.install("cursor")
    data = json.loads(config.read_text())
    added = {"url": URL, "headers": {"Authorization": TOKEN, "X-Team": "core"}, "disabled": True}
    data["mcpServers"]["added-later"] = added
    config.write_text(json.dumps(data, indent=2))
    assert "wrapped    added-later" in home.install("cursor")
    home.install("cursor", "--uninstall")
    servers = _servers(config, ("mcpServers",))
    assert _ordered(servers["added-later"]) == _ordered(added)
    assert _ordered(servers["linear"]) == _ordered(json.loads(CURSOR)["mcpServers"]["linear"])


def test_uninstall_copies_a_commented_remote_entry_back_from_the_backup_byte_for_byte(home: Home) -> None:
    original = VSCODE_MCP.replace(
        '\t\t"docs": {"type": "http", "url": "https://docs.example.com/mcp"},\n',
        '\t\t"docs": {\n\t\t\t"type": "http", // streamable, falls back to SSE\n\t\t\t"url": "https://docs.example.com/mcp",\n'
        '\t\t\t"headers": {"Authorization": "Bearer ${input:docs-token}"},\n\t\t},\n',
    )
    config = home.write(VSCODE_MCP_PATH, original)
    out = home.install("vscode")
    assert "warning: comments inside server 'docs' are not preserved" in out
    assert _servers(config, ("servers",))["docs"]["env"] == {"AIRLOCK_HEADER_AUTHORIZATION": "Bearer ${input:docs-token}"}
    home.install("vscode", "--uninstall")
    assert config.read_text() == original


def test_a_wrapped_remote_entry_whose_header_variable_is_gone_is_left_with_the_reason(home: Home) -> None:
    entry = {"command": AIRLOCK, "args": _run(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION")}
    text = json.dumps({"mcpServers": {"remote": entry}})
    config = home.write(CURSOR_PATH, text)
    out = home.install("cursor", "--uninstall")
    assert ("skipped    remote  its Authorization header comes from variable 'AIRLOCK_HEADER_AUTHORIZATION', which the entry's "
            "'env' does not set; edit it by hand") in out  # fmt: skip
    assert config.read_text() == text


def test_uninstall_of_a_remote_entry_drops_airlock_options_added_by_hand_and_says_so(home: Home) -> None:
    args = ["run", "--name", "r", "--timeout", "10", "--url", URL, "--header", "X-Team=core", "--header-env=Authorization=TOKEN", "--"]
    entry = {"command": AIRLOCK, "args": args, "env": {"TOKEN": TOKEN}}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"r": entry}}))
    out = home.install("cursor", "--uninstall")
    assert f"unwrapped  r  {URL} over streamable-http; headers X-Team, Authorization (dropped airlock options: --timeout 10)" in out
    assert _ordered(_servers(config, ("mcpServers",))["r"]) == _ordered({"url": URL, "headers": {"X-Team": "core", "Authorization": TOKEN}})


# -- where the configs are ------------------------------------------------------------------------------


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


# -- errors -----------------------------------------------------------------------------------------------


def test_a_missing_config_says_where_it_looked_and_how_to_pass_config(home: Home) -> None:
    error = home.fails("claude", error=ClientConfigMissing)
    assert str(home.root / CLAUDE_PATH) in error.message
    assert "$XDG_CONFIG_HOME" in error.message
    assert "pass --config PATH" in error.message
    error = home.fails("vscode", error=ClientConfigMissing)
    assert f"{home.root / VSCODE_MCP_PATH} or {home.root / VSCODE_SETTINGS_PATH}" in error.message
    error = home.fails("cursor", "--config", str(home.root / "nope.json"), error=ClientConfigMissing)
    assert error.message == f"--config {home.root / 'nope.json'}: no such file"


@pytest.mark.parametrize(
    ("client", "relative", "text", "error", "message"),
    [
        ("claude", CLAUDE_PATH, '{\n  "mcpServers": {\n    "a": {"command": "x",}\n  }\n}\n', ClientConfigInvalid,
         "not valid JSON: Expecting property name enclosed in double quotes at line 3, column 26"),
        ("claude", CLAUDE_PATH, '{"mcpServers": {}} // note\n', ClientConfigInvalid, "not valid JSON: Extra data at line 1, column 20"),
        ("vscode", VSCODE_MCP_PATH, '{\n  // fine\n  "servers": {\n    "a": {"command": "x"}\n    "b": {}\n  }\n}\n',
         ClientConfigInvalid, "not valid JSON (comments and trailing commas allowed): Expecting ',' delimiter at line 5, column 5"),
        ("cursor", CURSOR_PATH, '{"mcpServers": {} /* open\n', ClientConfigInvalid, "unterminated /* comment at line 1, column 19"),
        ("cursor", CURSOR_PATH, b'{"mcpServers": {"\xff": {}}}', ClientConfigInvalid, "not UTF-8 text (byte 17)"),
        ("claude", CLAUDE_PATH, '{"mcpServers": [{"command": "x"}]}', ClientConfigShape,
         "'mcpServers' must be an object mapping server names to servers, found an array"),
        ("claude", CLAUDE_PATH, "[]", ClientConfigShape, "expected a JSON object at the top level, found an array"),
        ("vscode", VSCODE_SETTINGS_PATH, '{"mcp": true}', ClientConfigShape, "'mcp' must be an object, found a boolean"),
        ("vscode", VSCODE_MCP_PATH, '{"servers": {"a": {"command": "x"}, "a": {"command": "y"}}}', ClientConfigShape,
         "server 'a' is defined twice in 'servers'; keep one"),
    ],
)  # fmt: skip
def test_a_config_that_cannot_be_read_is_a_config_error_with_where_and_why(
    home: Home, client: str, relative: str, text: str | bytes, error: type[ConfigError], message: str
) -> None:
    config = home.write(relative, text)
    raised = home.fails(client, error=error)
    assert raised.message == f"{config}: {message}"
    assert config.read_bytes() == (text if isinstance(text, bytes) else text.encode())


def test_an_unknown_client_is_refused_by_the_parser_and_by_the_library(home: Home, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["install", "zed"])
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


def test_a_file_that_cannot_be_written_is_a_config_error_and_stays_untouched(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(**_: Any) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied")

    config = home.write(CURSOR_PATH, CURSOR)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    error = home.fails("cursor", error=ClientConfigUnwritable)
    assert error.message == f"cannot write {config}: Permission denied"
    assert config.read_text() == CURSOR


# -- JSONC -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"url": "https://x//y", "a": "/* no */"}', {"url": "https://x//y", "a": "/* no */"}),
        ('{"a": "quote \\" // still a string"} // comment', {"a": 'quote " // still a string'}),
        ('{"a": [1, 2,], "b": {"c": 3,},}', {"a": [1, 2], "b": {"c": 3}}),
        ('{\n/* multi\nline */ "a": ",}"}', {"a": ",}"}),
    ],
)
def test_jsonc_comments_and_trailing_commas_go_but_strings_are_untouched(text: str, expected: Any) -> None:
    cleaned, _ = strip_jsonc(text)
    assert len(cleaned) == len(text)
    assert cleaned.count("\n") == text.count("\n")
    assert json.loads(cleaned) == expected
