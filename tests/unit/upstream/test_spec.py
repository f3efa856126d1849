"""How a remote upstream is specified: `--url` and its options, or `url` in the config; secret
header values come only from environment variables, and bad combinations are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import build_parser
from gateway.cli.upstreams import http_spec as _http_spec
from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.upstream.http import HttpSpec

CONFIG = """
[upstreams.remote]
url = "https://mcp.example.com/mcp"
transport = "sse"
headers = { "X-Team" = "blue" }
headers_env = { "X-Api-Key" = "TEST_API_KEY" }
bearer_env = "TEST_TOKEN"
timeout = 12.5
"""


def _spec(argv: list[str], config: GatewayConfig | None = None):  # type: ignore[no-untyped-def]
    args = build_parser().parse_args(["run", *argv])
    return _http_spec(args, config or GatewayConfig())


def test_a_config_upstream_with_a_url_takes_its_headers_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    monkeypatch.setenv("TEST_API_KEY", "key-123")
    monkeypatch.setenv("TEST_TOKEN", "tok-456")
    spec, name = _spec([], load_config(tmp_path / "c.toml"))
    assert name == "remote"
    assert (spec.url, spec.transport, spec.timeout) == ("https://mcp.example.com/mcp", "sse", 12.5)
    assert dict(spec.headers) == {"X-Team": "blue", "X-Api-Key": "key-123", "Authorization": "Bearer tok-456"}


def test_command_line_options_win_over_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c.toml").write_text(CONFIG)
    monkeypatch.setenv("TEST_API_KEY", "key-123")
    monkeypatch.setenv("TEST_TOKEN", "tok-456")
    monkeypatch.setenv("OTHER_TOKEN", "tok-789")
    spec, _ = _spec(["--bearer-env", "OTHER_TOKEN", "--header", "X-Team=red", "--timeout", "3"], load_config(tmp_path / "c.toml"))
    assert spec.headers["Authorization"] == "Bearer tok-789"
    assert spec.headers["X-Team"] == "red"
    assert spec.timeout == 3


def test_header_env_sends_the_variable_value_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAW_AUTH", "Basic abc")
    spec, name = _spec(["--url", "http://127.0.0.1:9/mcp", "--header-env", "Authorization=RAW_AUTH"])
    assert spec.headers == {"Authorization": "Basic abc"} and name is None


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--url", "http://127.0.0.1:9/mcp", "--bearer-env", "UNSET_VARIABLE_X"], "UNSET_VARIABLE_X, which is not set"),
        (["--url", "http://127.0.0.1:9/mcp", "--header-env", "X-Key=UNSET_VARIABLE_Y"], "X-Key header comes from environment"),
        (["--url", "ftp://h/mcp"], "give an http:// or https:// URL"),
        (["--url", "http://h/mcp", "--timeout", "0"], "--timeout 0"),
        (["--url", "http://h/mcp", "--", "echo"], "either --url"),
    ],
)
def test_bad_remote_options_are_refused_with_what_to_change(argv: list[str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _spec(argv)
    assert problem in caught.value.message


def test_a_command_line_upstream_is_not_remote() -> None:
    assert _spec(["--", "echo", "hi"]) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mcp.example.com/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com:8443/v1/mcp?token=s3cret", "https://mcp.example.com:8443/v1/mcp?..."),
        ("https://user:pa55@mcp.example.com/mcp", "https://...@mcp.example.com/mcp"),
        ("http://[::1]:9/mcp?k=v", "http://::1:9/mcp?..."),
    ],
)
def test_the_display_form_of_a_url_hides_its_query_and_user_part(url: str, shown: str) -> None:
    assert HttpSpec(url).display == shown


def test_url_env_reads_the_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THE_URL", "https://h.example/mcp?token=abc")
    spec, _ = _spec(["--url-env", "THE_URL"])
    assert spec.url == "https://h.example/mcp?token=abc"
    with pytest.raises(ConfigError) as caught:
        _spec(["--url-env", "UNSET_URL_VARIABLE"])
    assert "UNSET_URL_VARIABLE" in caught.value.message
    monkeypatch.setenv("BAD_URL", "ftp://h/mcp?token=abc")
    with pytest.raises(ConfigError) as bad:
        _spec(["--url-env", "BAD_URL"])
    assert "abc" not in bad.value.message  # a refused URL is not echoed with its token
