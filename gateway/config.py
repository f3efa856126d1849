"""The gateway config file (TOML), validated by pydantic; unknown keys are errors.

Example:

    [gateway]
    max_message_bytes = 16777216
    deny = ["delete_file"]

    [upstreams.files]
    command = "npx"
    args = ["-y", "@modelcontextprotocol/server-filesystem", "/home/me/docs"]
    pass_env = ["DEBUG"]          # copied from the gateway's environment when set
    env = { LOG_LEVEL = "warn" }  # set explicitly

    [upstreams.remote]
    url = "https://mcp.example.com/mcp"
    bearer_env = "EXAMPLE_MCP_TOKEN"  # sends "Authorization: Bearer $EXAMPLE_MCP_TOKEN"
    headers_env = { "X-Api-Key" = "EXAMPLE_API_KEY" }

    [flight_log]
    path = "/home/me/airlock-logs"   # a directory: one new log file per run
    key = "/home/me/.config/airlock/signing.key"

Every option here also has a flag on `airlock run`; a flag wins over the file.

Imports: errors, protocol, tomlfile.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from gateway.errors import ConfigError
from gateway.protocol.framing import DEFAULT_MAX_MESSAGE_BYTES
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT
from gateway.tomlfile import STRICT, read_toml, validate


class _Strict(BaseModel):
    model_config = STRICT


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")]


class UpstreamConfig(_Strict):
    """One upstream MCP server: a child process speaking stdio (`command`), or a remote server
    (`url`, over streamable HTTP or legacy SSE). Secrets never go in this file: a header whose
    value is secret names the environment variable holding it (`headers_env`, `bearer_env`)."""

    command: Annotated[str, Field(min_length=1)] | None = None
    args: list[str] = []
    env: dict[EnvName, str] = {}
    pass_env: list[EnvName] = []
    cwd: str | None = None
    url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    transport: Literal["streamable-http", "sse"] = "streamable-http"
    headers: dict[HeaderName, str] = {}
    headers_env: dict[HeaderName, EnvName] = {}
    bearer_env: EnvName | None = None
    timeout: Annotated[float, Field(gt=0, le=3600, allow_inf_nan=False)] = 30.0

    @model_validator(mode="after")
    def _one_kind(self) -> UpstreamConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either 'command' (a local stdio server) or 'url' (a remote one), exactly one")
        local = {"args": self.args, "env": self.env, "pass_env": self.pass_env, "cwd": self.cwd}
        remote = {"headers": self.headers, "headers_env": self.headers_env, "bearer_env": self.bearer_env}
        misplaced = [key for key, value in (local if self.url is not None else remote).items() if value]
        if misplaced:
            kind = "a remote (url)" if self.url is not None else "a local (command)"
            raise ValueError(f"{', '.join(misplaced)} do(es) not apply to {kind} upstream")
        return self


class GatewaySection(_Strict):
    max_message_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = DEFAULT_MAX_MESSAGE_BYTES
    max_in_flight: Annotated[int, Field(ge=1, le=1_000_000)] = DEFAULT_MAX_IN_FLIGHT
    shutdown_grace: Annotated[float, Field(ge=0, le=60, allow_inf_nan=False)] = 1.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    deny: list[Annotated[str, Field(min_length=1)]] = []
    policy: str | None = None
    lock: str | None = None


class FlightLogSection(_Strict):
    """Where and how decisions are recorded. A log needs a key: `key`, --key, or the file
    named by $AIRLOCK_KEY_FILE (never a built-in key)."""

    path: str | None = None
    key: str | None = None
    fsync: Literal["always", "group", "off"] = "group"
    group_entries: Annotated[int, Field(ge=1, le=100_000)] = 1024
    group_ms: Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)] = 10.0
    store_raw: bool = False


class GatewayConfig(_Strict):
    gateway: GatewaySection = GatewaySection()
    flight_log: FlightLogSection = FlightLogSection()
    upstreams: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], UpstreamConfig] = {}

    def upstream(self, name: str | None) -> UpstreamConfig | None:
        """The upstream named `name`, or the only one when `name` is None.

        Raises:
            ConfigError: the name is unknown, or several exist and none was named.
        """
        if name is not None:
            if name not in self.upstreams:
                known = ", ".join(sorted(self.upstreams)) or "none"
                raise ConfigError(f"no upstream named {name!r} in the config (configured: {known})")
            return self.upstreams[name]
        if len(self.upstreams) > 1:
            raise ConfigError(
                f"the config names {len(self.upstreams)} upstreams ({', '.join(sorted(self.upstreams))}); choose one with --upstream NAME"
            )
        return next(iter(self.upstreams.values()), None)


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a config file.

    Raises:
        ConfigError: unreadable file, invalid TOML, or invalid content; the message names the
            file, the key path and what is allowed there.
    """
    return parse_config(read_toml(path, "config file", ConfigError), str(path))


def parse_config(raw: dict[str, Any], source: str) -> GatewayConfig:
    return validate(GatewayConfig, raw, source, ConfigError)
