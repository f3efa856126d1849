"""gateway/install/jsonc.py: JSONC comments and trailing commas are read, kept outside the
edited values, and a config that is not JSON, or not shaped as one, says where and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.install.errors import ClientConfigInvalid, ClientConfigShape
from gateway.install.jsonc import strip_jsonc
from tests.unit.install.conftest import Home
from tests.unit.install.samples import CLAUDE_PATH, CURSOR_PATH, VSCODE_MCP, VSCODE_MCP_INSTALLED, VSCODE_MCP_PATH, VSCODE_SETTINGS_PATH


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


def test_install_reads_jsonc_in_vscode_mcp_json_and_keeps_its_comments(home: Home) -> None:
    config = home.write(VSCODE_MCP_PATH, VSCODE_MCP)
    out = home.install("vscode")
    assert config.read_text() == VSCODE_MCP_INSTALLED
    assert "warning" not in out  # no comment sat inside a rewritten value
    assert "wrapped    docs    as airlock server 'docs'; remote https://docs.example.com/mcp over streamable-http" in out


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
