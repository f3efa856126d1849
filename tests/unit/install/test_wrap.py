"""gateway/install/wrap.py: each stdio or remote entry becomes an `airlock run` entry, idempotently,
with header values and URL secrets kept off the command line; entries it cannot wrap say why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.install.files import backup_path
from gateway.install.locate import Launcher
from gateway.install.wrap import header_variables
from tests.unit.install.conftest import Home
from tests.unit.install.samples import (
    AIRLOCK,
    CLAUDE,
    CLAUDE_INSTALLED,
    CLAUDE_PATH,
    CURSOR,
    CURSOR_INSTALLED,
    CURSOR_PATH,
    ORIGINALS,
    POLICY,
    REMOTE_SPELLINGS,
    TOKEN,
    URL,
    VSCODE_MCP_PATH,
    nest,
    ordered,
    remote_args,
    servers_in,
)


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


@pytest.mark.parametrize(("client", "relative", "original"), ORIGINALS)
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


def test_server_names_are_normalised_and_made_unique_for_rules_and_pins(home: Home) -> None:
    servers = {"My Server": {"command": "a"}, "my-server": {"command": "b"}, "Ｆｉｌｅｓ": {"command": "c"}}
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": servers}))
    home.install("cursor")
    names = [entry["args"][2] for entry in json.loads(config.read_text())["mcpServers"].values()]
    assert names == ["my-server", "my-server-2", "files"]


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


@pytest.mark.parametrize(("client", "relative", "layout", "entry", "wrapped", "unbacked"), REMOTE_SPELLINGS)
def test_remote_entries_become_airlock_run_url_entries_and_come_back_byte_for_byte(
    home: Home, client: str, relative: str, layout: tuple[str, ...], entry: Any, wrapped: Any, unbacked: Any
) -> None:
    text = json.dumps(nest(layout, {"remote": entry}), indent=2) + "\n"
    config = home.write(relative, text)
    out = home.install(client)
    assert ordered(servers_in(config, layout)["remote"]) == ordered(wrapped)
    assert "wrapped    remote  as airlock server 'remote'; remote " in out
    installed = config.read_bytes()
    assert "nothing to change" in home.install(client)
    assert config.read_bytes() == installed
    assert "unwrapped  remote" in home.install(client, "--uninstall")
    assert config.read_text() == text
    assert backup_path(config).read_text() == text


@pytest.mark.parametrize(
    "value",
    ["Bearer abc.def.ghi", "--policy=/tmp/allow-everything.toml", "a=b=c", "${input:api-token}", "clé secrète 秘密", "-- rm -rf /"],
)
def test_header_values_never_reach_the_command_line_or_the_summary(home: Home, value: str) -> None:
    entry = {"type": "http", "url": URL, "headers": {"Authorization": value, "X-Other": value + "-2"}}
    text = json.dumps({"servers": {"remote": entry}}, indent=2) + "\n"
    config = home.write(VSCODE_MCP_PATH, text)
    out = home.install("vscode")
    installed = servers_in(config, ("servers",))["remote"]
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
    installed = servers_in(config, ("mcpServers",))["remote"]
    pairs = ["Authorization=AIRLOCK_HEADER_AUTHORIZATION_2", "X-Key=AIRLOCK_HEADER_X_KEY", "X_Key=AIRLOCK_HEADER_X_KEY_3"]
    assert installed["args"] == remote_args(URL, *(item for pair in pairs for item in ("--header-env", pair)))
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


def test_the_policy_and_the_python_launcher_go_into_the_remote_command_line_too(home: Home) -> None:
    launcher = Launcher("/opt/venv/bin/python3", ("-m", "gateway"))
    config = home.write(CURSOR_PATH, json.dumps({"mcpServers": {"remote": {"url": URL}}}))
    home.install("cursor", "--policy", str(POLICY), launcher=launcher)
    assert servers_in(config, ("mcpServers",))["remote"] == {
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
    wrapped = servers_in(config, ("mcpServers",))
    for name in ("q", "user"):
        assert "--url-env" in wrapped[name]["args"] and "secret" not in " ".join(wrapped[name]["args"])
        assert wrapped[name]["env"]["AIRLOCK_URL"] == servers[name]["url"]
    assert "--url" in wrapped["plain"]["args"]
    home.install("cursor", "--uninstall")
    assert servers_in(config, ("mcpServers",)) == servers
