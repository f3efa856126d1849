"""The upstream a command names: `-- CMD`, `--url`/`--url-env`, or an `[upstreams.NAME]` of the
config, with its environment, headers (secret ones from environment variables) and limits."""

from __future__ import annotations

import argparse
import os

from gateway.config import GatewayConfig, load_config
from gateway.errors import ConfigError
from gateway.fronts.stdio import RunSettings
from gateway.upstream import UpstreamSpec
from gateway.upstream.child import ChildSpec, child_environment
from gateway.upstream.http import HttpSpec


def upstream_spec(args: argparse.Namespace, config: GatewayConfig) -> tuple[ChildSpec, str | None]:
    """The upstream to start, and its configured name (None for a bare command line)."""
    argv = list(args.upstream_command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if argv:
        return ChildSpec(tuple(argv), child_environment(args.pass_env, dict(args.env)), args.cwd), None
    name = args.upstream
    upstream = config.upstream(name)
    if upstream is None:
        raise ConfigError("no upstream server given: use 'airlock run -- CMD [ARG...]' or name one in --config")
    if name is None:
        name = next(iter(config.upstreams))
    if upstream.command is None:
        raise ConfigError(f"[upstreams.{name}] is a remote server (url): this command needs a local one ('-- CMD' or a 'command')")
    env = {**upstream.env, **dict(args.env)}
    spec = ChildSpec(
        (upstream.command, *upstream.args), child_environment([*upstream.pass_env, *args.pass_env], env), args.cwd or upstream.cwd
    )
    return spec, name


def given_url(args: argparse.Namespace) -> str | None:
    """The remote URL the command line names: `--url`, or the value of `--url-env`'s variable."""
    if not args.url_env:
        return args.url  # type: ignore[no-any-return]
    if args.url:
        raise ConfigError("give --url or --url-env, not both")
    url = os.environ.get(args.url_env)
    if not url:
        raise ConfigError(f"--url-env {args.url_env}: that environment variable is not set or empty")
    return url


def http_spec(args: argparse.Namespace, config: GatewayConfig) -> tuple[HttpSpec, str | None] | None:
    """A remote upstream: `--url`, or a config upstream with `url`; headers from the config and
    --header, secret ones from the environment variables that `headers_env`/--header-env and
    `bearer_env`/--bearer-env name (values never logged). None: the upstream is a command."""
    name: str | None = None
    configured = None
    given = given_url(args)
    if given is None:
        if args.upstream_command and [a for a in args.upstream_command if a != "--"]:
            return None
        configured = config.upstream(args.upstream) if config.upstreams else None
        if configured is None or configured.url is None:
            return None
        name = args.upstream or next(iter(config.upstreams))
    elif args.upstream_command and [a for a in args.upstream_command if a != "--"]:
        raise ConfigError("give either --url (a remote upstream) or '-- CMD' (a local one), not both")
    url = given or (configured.url if configured is not None else None)
    assert url is not None
    where = ("--url-env " + args.url_env if args.url_env else "--url") if given else f"[upstreams.{name}] url"
    if not url.startswith(("http://", "https://")):
        shown = url if "?" not in url and "@" not in url else url.split("//", 1)[0] + "//..."  # never echo a token
        raise ConfigError(f"{where} {shown!r}: give an http:// or https:// URL")
    headers = {**(configured.headers if configured is not None else {}), **dict(args.header)}
    from_env = {**(configured.headers_env if configured is not None else {}), **dict(args.header_env)}
    bearer = args.bearer_env or (configured.bearer_env if configured is not None else None)
    for header, variable in [*from_env.items(), *([("Authorization", bearer)] if bearer else [])]:
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(f"the {header} header comes from environment variable {variable}, which is not set or empty")
        headers[header] = value if header != "Authorization" or variable != bearer else f"Bearer {value}"
    transport = args.transport if given or configured is None else configured.transport
    timeout = args.timeout if args.timeout is not None else (configured.timeout if configured is not None else 30.0)
    if not 0 < timeout <= 3600:
        raise ConfigError(f"--timeout {timeout}: give seconds between 0 and 3600")
    return HttpSpec(url, transport, headers, timeout=timeout), name


def settings_from(args: argparse.Namespace) -> tuple[RunSettings, GatewayConfig, str | None]:
    config = load_config(args.config) if args.config else GatewayConfig()
    section = config.gateway
    remote = http_spec(args, config)
    target: tuple[UpstreamSpec, str | None] = remote if remote is not None else upstream_spec(args, config)
    spec, name = target
    settings = RunSettings(
        upstream=spec,
        max_message_bytes=positive(args.max_message_bytes, section.max_message_bytes, "--max-message-bytes"),
        max_in_flight=positive(args.max_in_flight, section.max_in_flight, "--max-in-flight"),
        shutdown_grace=section.shutdown_grace if args.shutdown_grace is None else max(0.0, args.shutdown_grace),
    )
    return settings, config, name


def positive(flag: int | None, configured: int, name: str) -> int:
    if flag is None:
        return configured
    if flag < 1:
        raise ConfigError(f"{name} must be a positive integer, got {flag}")
    return flag
