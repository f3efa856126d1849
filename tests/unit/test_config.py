"""gateway/config.py: the TOML config file, validated strictly; errors name file and key path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, UpstreamConfig, load_config, parse_config
from gateway.errors import EXIT_USAGE, ConfigError
from gateway.protocol.framing import DEFAULT_MAX_MESSAGE_BYTES
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT
from tests.unit.helpers import write_file

_VALID = """\
[gateway]
max_message_bytes = 1048576
max_in_flight = 64
shutdown_grace = 2.5
log_level = "debug"
log_format = "json"
deny = ["delete_file", "write_file"]

[upstreams.files]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/docs"]
pass_env = ["DEBUG", "_PRIVATE9"]
env = { LOG_LEVEL = "warn" }
cwd = "/tmp"

[upstreams.time]
command = "uvx"
"""


def _write(tmp_path: Path, text: str | bytes, name: str = "airlock.toml") -> Path:
    return write_file(tmp_path / name, text)


def test_a_valid_file_with_gateway_and_upstreams_parses(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, _VALID))
    assert config.gateway.max_message_bytes == 1048576
    assert config.gateway.max_in_flight == 64
    assert config.gateway.shutdown_grace == 2.5
    assert config.gateway.log_level == "debug"
    assert config.gateway.log_format == "json"
    assert config.gateway.deny == ["delete_file", "write_file"]
    files = config.upstreams["files"]
    assert files.command == "npx"
    assert files.args == ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/docs"]
    assert files.pass_env == ["DEBUG", "_PRIVATE9"]
    assert files.env == {"LOG_LEVEL": "warn"}
    assert files.cwd == "/tmp"
    time = config.upstreams["time"]
    assert (time.command, time.args, time.env, time.pass_env, time.cwd) == ("uvx", [], {}, [], None)


def test_an_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, ""))
    assert config.gateway.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES
    assert config.gateway.max_in_flight == DEFAULT_MAX_IN_FLIGHT
    assert config.gateway.deny == []
    assert config.upstreams == {}
    assert config.upstream(None) is None


@pytest.mark.parametrize(
    ("text", "key_path", "allowed"),
    [
        pytest.param("gatway = {}\n", "gatway", ["gateway", "upstreams"], id="top-level"),
        pytest.param(
            "[gateway]\nmax_mesage_bytes = 2048\n",
            "gateway.max_mesage_bytes",
            ["max_message_bytes", "max_in_flight", "shutdown_grace", "log_level", "log_format", "deny"],
            id="gateway-section",
        ),
        pytest.param(
            '[upstreams.x]\ncommand = "a"\ncomand = "b"\n',
            "upstreams.x.comand",
            ["command", "args", "env", "pass_env", "cwd"],
            id="upstream-section",
        ),
    ],
)
def test_unknown_key_names_the_file_the_key_path_and_the_allowed_keys(tmp_path: Path, text: str, key_path: str, allowed: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"{key_path}:" in message
    for key in allowed:
        assert key in message
    assert caught.value.exit_code == EXIT_USAGE


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        pytest.param('[gateway]\nmax_message_bytes = "big"\n', "gateway.max_message_bytes", id="string-for-int"),
        pytest.param("[gateway]\nmax_message_bytes = 1.5e6\n", "gateway.max_message_bytes", id="float-for-int"),
        pytest.param("[gateway]\nmax_message_bytes = 10\n", "gateway.max_message_bytes", id="limit-below-minimum"),
        pytest.param("[gateway]\nmax_in_flight = 0\n", "gateway.max_in_flight", id="zero-in-flight"),
        pytest.param("[gateway]\nshutdown_grace = nan\n", "gateway.shutdown_grace", id="nan-grace"),
        pytest.param("[gateway]\nshutdown_grace = 61.0\n", "gateway.shutdown_grace", id="grace-too-long"),
        pytest.param('[gateway]\nlog_level = "loud"\n', "gateway.log_level", id="unknown-log-level"),
        pytest.param('[gateway]\nlog_format = "xml"\n', "gateway.log_format", id="unknown-log-format"),
        pytest.param('[gateway]\ndeny = "delete_file"\n', "gateway.deny", id="deny-string-not-list"),
        pytest.param("[gateway]\ndeny = [1]\n", "gateway.deny.0", id="deny-non-string"),
        pytest.param('[gateway]\ndeny = [""]\n', "gateway.deny.0", id="deny-empty-name"),
        pytest.param("gateway = 3\n", "gateway", id="gateway-not-a-table"),
        pytest.param("[upstreams.x]\nargs = []\n", "upstreams.x: Value error, give either 'command'", id="command-missing"),
        pytest.param('[upstreams.x]\ncommand = "a"\nurl = "https://h/mcp"\n', "upstreams.x: Value error, give", id="command-and-url"),
        pytest.param('[upstreams.x]\nurl = "https://h/mcp"\nargs = ["-y"]\n', "args do(es) not apply to a remote", id="url-with-args"),
        pytest.param('[upstreams.x]\ncommand = "a"\nbearer_env = "T"\n', "bearer_env do(es) not apply", id="command-with-bearer"),
        pytest.param('[upstreams.x]\nurl = "ftp://h/mcp"\n', "upstreams.x.url", id="url-not-http"),
        pytest.param('[upstreams.x]\nurl = "https://h/mcp"\nbearer_env = "1A"\n', "upstreams.x.bearer_env", id="bearer-env-not-a-name"),
        pytest.param('[upstreams.x]\nurl = "https://h/mcp"\nheaders = { "X A" = "v" }\n', "upstreams.x.headers", id="header-name-space"),
        pytest.param('[upstreams.x]\nurl = "https://h/mcp"\ntimeout = 0\n', "upstreams.x.timeout", id="timeout-zero"),
        pytest.param('[upstreams.x]\nurl = "https://h/mcp"\ntransport = "ws"\n', "upstreams.x.transport", id="unknown-transport"),
        pytest.param('[upstreams.x]\ncommand = ""\n', "upstreams.x.command", id="command-empty"),
        pytest.param("[upstreams.x]\ncommand = 5\n", "upstreams.x.command", id="command-number"),
        pytest.param('[upstreams.x]\ncommand = "a"\nargs = "-y"\n', "upstreams.x.args", id="args-string"),
        pytest.param('[upstreams.x]\ncommand = "a"\nargs = [1]\n', "upstreams.x.args.0", id="args-number"),
        pytest.param('[upstreams.x]\ncommand = "a"\nenv = { A = 1 }\n', "upstreams.x.env.A", id="env-value-number"),
        pytest.param('[upstreams."bad name"]\ncommand = "a"\n', "upstreams.bad name", id="upstream-name-with-space"),
    ],
)
def test_wrong_types_and_values_name_the_key_path(tmp_path: Path, text: str, key_path: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert str(path) in message
    assert key_path in message


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        pytest.param('[upstreams.x]\ncommand = "a"\nenv = { 1BAD = "x" }\n', "upstreams.x.env.1BAD", id="env-key-starts-with-digit"),
        pytest.param('[upstreams.x]\ncommand = "a"\nenv = { "A-B" = "x" }\n', "upstreams.x.env.A-B", id="env-key-with-hyphen"),
        pytest.param('[upstreams.x]\ncommand = "a"\nenv = { "A=B" = "x" }\n', "upstreams.x.env.A=B", id="env-key-with-equals"),
        pytest.param('[upstreams.x]\ncommand = "a"\nenv = { "" = "x" }\n', "upstreams.x.env", id="env-key-empty"),
        pytest.param('[upstreams.x]\ncommand = "a"\npass_env = ["BAD-NAME"]\n', "upstreams.x.pass_env.0", id="pass-env-hyphen"),
        pytest.param('[upstreams.x]\ncommand = "a"\npass_env = ["OK", "A B"]\n', "upstreams.x.pass_env.1", id="pass-env-space"),
    ],
)
def test_environment_variable_names_are_validated(tmp_path: Path, text: str, key_path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, text))
    assert key_path in str(caught.value)


def test_valid_environment_variable_names_are_accepted() -> None:
    config = parse_config({"upstreams": {"x": {"command": "a", "env": {"_A1": "v", "a": "w"}, "pass_env": ["PATH", "_"]}}}, "inline")
    assert config.upstreams["x"].env == {"_A1": "v", "a": "w"}
    assert config.upstreams["x"].pass_env == ["PATH", "_"]


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '[gateway]\nlog_level = "loud"\nbogus = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{path}: gateway.") for line in lines)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[gateway\n", id="unclosed-table"),
        pytest.param("[gateway]\ndeny = [\n", id="unclosed-array"),
        pytest.param("key = \n", id="missing-value"),
        pytest.param("[gateway]\n[gateway]\n", id="table-defined-twice"),
    ],
)
def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, b'[gateway]\nlog_level = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda tmp: tmp / "missing.toml", id="missing-file"),
        pytest.param(lambda tmp: tmp, id="directory"),
    ],
)
def test_an_unreadable_file_is_a_config_error_naming_the_file(tmp_path: Path, make: Callable[[Path], Path]) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert caught.value.exit_code == EXIT_USAGE


def _config(*names: str) -> GatewayConfig:
    return parse_config({"upstreams": {name: {"command": f"cmd-{name}"} for name in names}}, "inline")


@pytest.mark.parametrize(
    ("names", "wanted", "command"),
    [
        pytest.param(("only",), None, "cmd-only", id="the-only-one-without-a-name"),
        pytest.param(("only",), "only", "cmd-only", id="the-only-one-by-name"),
        pytest.param(("a", "b", "c"), "b", "cmd-b", id="named-among-several"),
        pytest.param((), None, None, id="none-configured"),
    ],
)
def test_upstream_selection_finds_the_right_upstream(names: tuple[str, ...], wanted: str | None, command: str | None) -> None:
    selected = _config(*names).upstream(wanted)
    if command is None:
        assert selected is None
    else:
        assert isinstance(selected, UpstreamConfig)
        assert selected.command == command


@pytest.mark.parametrize(
    ("names", "wanted", "mentioned"),
    [
        pytest.param(("a", "b"), "c", ["'c'", "a", "b"], id="unknown-name"),
        pytest.param((), "a", ["'a'"], id="name-but-none-configured"),
        pytest.param(("a", "b"), None, ["a", "b"], id="several-without-a-name"),
    ],
)
def test_upstream_selection_errors_say_what_to_choose(names: tuple[str, ...], wanted: str | None, mentioned: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(*names).upstream(wanted)
    for text in mentioned:
        assert text in str(caught.value)


def test_parsed_config_is_frozen() -> None:
    config = _config("a")
    with pytest.raises(ValueError):
        config.gateway.max_in_flight = 5
