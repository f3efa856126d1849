"""Client configs as the clients write them, what `airlock install` makes of them, and the remote
entry spellings each client uses: the data the install tests share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.install.jsonc import strip_jsonc
from gateway.install.locate import Launcher

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


# Where each client keeps its config under the test home (the Linux layout).
CLAUDE_PATH = ".config/Claude/claude_desktop_config.json"
CURSOR_PATH = ".cursor/mcp.json"
VSCODE_MCP_PATH = ".config/Code/User/mcp.json"
VSCODE_SETTINGS_PATH = ".config/Code/User/settings.json"

URL = "https://mcp.example.com/mcp"
SSE_URL = "https://mcp.example.com/sse"
TOKEN = "Bearer s3cr3t-t0ken-value"

# Each client's config file and its text as the client wrote it.
ORIGINALS = [
    ("claude", CLAUDE_PATH, CLAUDE),
    ("cursor", CURSOR_PATH, CURSOR),
    ("vscode", VSCODE_MCP_PATH, VSCODE_MCP),
    ("vscode", VSCODE_SETTINGS_PATH, VSCODE_SETTINGS),
]


def remote_args(*remote: str) -> list[str]:
    return ["run", "--name", "remote", "--url", *remote, "--"]


def nest(layout: tuple[str, ...], servers: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = servers
    for key in reversed(layout):
        document = {key: document}
    return document


def servers_in(config: Path, layout: tuple[str, ...]) -> dict[str, Any]:
    node: Any = json.loads(strip_jsonc(config.read_text())[0])
    for key in layout:
        node = node[key]
    assert isinstance(node, dict)
    return node


def ordered(value: Any) -> str:
    """JSON text that differs when keys are in another order (== on dicts does not see order)."""
    return json.dumps(value)


# Each client's remote spellings: the entry, what install makes of it, and what uninstall writes
# back from the entry alone (no backup); None: the entry itself, byte for byte.
REMOTE_SPELLINGS = [
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"type": "http", "url": URL, "headers": {"Authorization": TOKEN}},
        {"type": "stdio", "command": AIRLOCK, "args": remote_args(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="vscode-http-with-headers"),
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"type": "sse", "url": SSE_URL},
        {"type": "stdio", "command": AIRLOCK, "args": remote_args(SSE_URL, "--transport", "sse")},
        None, id="vscode-sse"),
    pytest.param(
        "vscode", VSCODE_SETTINGS_PATH, ("mcp", "servers"),
        {"type": "http", "url": URL, "headers": {"X-API-Key": "k-123", "X-Team": "core"}, "dev": {"watch": "src/**"}},
        {"type": "stdio", "command": AIRLOCK,
         "args": remote_args(URL, "--header-env", "X-API-Key=AIRLOCK_HEADER_X_API_KEY", "--header-env", "X-Team=AIRLOCK_HEADER_X_TEAM"),
         "env": {"AIRLOCK_HEADER_X_API_KEY": "k-123", "AIRLOCK_HEADER_X_TEAM": "core"}, "dev": {"watch": "src/**"}},
        None, id="vscode-settings-http-with-headers-and-other-keys"),
    pytest.param(
        "vscode", VSCODE_MCP_PATH, ("servers",),
        {"url": URL},
        {"command": AIRLOCK, "args": remote_args(URL)},
        None, id="vscode-untyped-url"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"url": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": remote_args(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="cursor-url-with-headers"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"type": "sse", "url": SSE_URL, "disabled": False},
        {"command": AIRLOCK, "args": remote_args(SSE_URL, "--transport", "sse"), "disabled": False},
        None, id="cursor-typed-sse"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"serverUrl": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": remote_args(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        {"url": URL, "headers": {"Authorization": TOKEN}}, id="cursor-serverUrl"),
    pytest.param(
        "cursor", CURSOR_PATH, ("mcpServers",),
        {"type": "http", "url": "${env:TEAM_MCP_URL}/mcp"},
        {"command": AIRLOCK, "args": remote_args("${env:TEAM_MCP_URL}/mcp")},
        {"url": "${env:TEAM_MCP_URL}/mcp"}, id="cursor-typed-http-with-a-variable-url"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"url": URL, "headers": {"Authorization": TOKEN}},
        {"command": AIRLOCK, "args": remote_args(URL, "--header-env", "Authorization=AIRLOCK_HEADER_AUTHORIZATION"),
         "env": {"AIRLOCK_HEADER_AUTHORIZATION": TOKEN}},
        None, id="claude-url-with-headers"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"type": "streamable-http", "url": URL},
        {"command": AIRLOCK, "args": remote_args(URL)},
        {"url": URL}, id="claude-streamable-http"),
    pytest.param(
        "claude", CLAUDE_PATH, ("mcpServers",),
        {"url": SSE_URL, "type": "SSE"},
        {"command": AIRLOCK, "args": remote_args(SSE_URL, "--transport", "sse")},
        {"type": "sse", "url": SSE_URL}, id="claude-SSE-after-the-url"),
]  # fmt: skip
