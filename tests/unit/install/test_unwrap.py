"""gateway/install/unwrap.py: `--uninstall` gives each wrapped entry back, from its arguments and
`env` alone when there is no backup, keeps later edits, and leaves forms it did not write."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.install.files import backup_path
from tests.unit.install.conftest import Home
from tests.unit.install.samples import (
    AIRLOCK,
    CLAUDE,
    CLAUDE_PATH,
    CURSOR,
    CURSOR_PATH,
    REMOTE_SPELLINGS,
    TOKEN,
    URL,
    nest,
    ordered,
    remote_args,
    servers_in,
)


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


@pytest.mark.parametrize(("client", "relative", "layout", "entry", "wrapped", "unbacked"), REMOTE_SPELLINGS)
def test_without_a_backup_a_remote_entry_is_written_back_from_its_arguments_and_env(
    home: Home, client: str, relative: str, layout: tuple[str, ...], entry: Any, wrapped: Any, unbacked: Any
) -> None:
    text = json.dumps(nest(layout, {"remote": entry}), indent=2) + "\n"
    config = home.write(relative, text)
    home.install(client)
    backup_path(config).unlink()
    home.install(client, "--uninstall")
    if unbacked is None:
        assert config.read_text() == text
    else:  # the same server; only the backup knows the spelling
        assert ordered(servers_in(config, layout)["remote"]) == ordered(unbacked)


def test_a_remote_entry_added_after_the_first_install_is_written_back_without_the_backup(home: Home) -> None:
    config = home.write(CURSOR_PATH, CURSOR)
    home.install("cursor")
    data = json.loads(config.read_text())
    added = {"url": URL, "headers": {"Authorization": TOKEN, "X-Team": "core"}, "disabled": True}
    data["mcpServers"]["added-later"] = added
    config.write_text(json.dumps(data, indent=2))
    assert "wrapped    added-later" in home.install("cursor")
    home.install("cursor", "--uninstall")
    servers = servers_in(config, ("mcpServers",))
    assert ordered(servers["added-later"]) == ordered(added)
    assert ordered(servers["linear"]) == ordered(json.loads(CURSOR)["mcpServers"]["linear"])


def test_a_wrapped_remote_entry_whose_header_variable_is_gone_is_left_with_the_reason(home: Home) -> None:
    entry = {"command": AIRLOCK, "args": remote_args(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION")}
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
    assert ordered(servers_in(config, ("mcpServers",))["r"]) == ordered({"url": URL, "headers": {"X-Team": "core", "Authorization": TOKEN}})
