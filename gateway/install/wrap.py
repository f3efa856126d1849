"""Wrapping: each entry of a client's config rewritten so the server runs through `airlock run`.
Pure.

A wrapped stdio entry is the original one with only `command` and `args` changed:

    {"command": AIRLOCK, "args": ["run", "--name", NAME, ["--policy", P], ["--pass-env", VAR]...,
                                  "--", ORIGINAL_COMMAND, *ORIGINAL_ARGS], ...every other key}

so the original command line is recoverable from the arguments after `--` and uninstalling needs
no backup. `--pass-env` names each variable of the entry's `env`: the client hands `env` to the
gateway, and the gateway gives its upstream an explicit environment (`gateway.upstream.child`,
`child_environment`), so without it the server would lose its API keys.

A remote entry (`url` or `serverUrl`, VS Code's `"type": "http"|"sse"`) becomes a command entry
that runs the gateway's stdio front against the URL:

    {["type": "stdio"], "command": AIRLOCK, "args": ["run", "--name", NAME, ["--policy", P], "--url", URL,
     ["--transport", "sse"], ["--header-env", HEADER=AIRLOCK_HEADER_X]..., "--"], ["env": {..., AIRLOCK_HEADER_X: VALUE}]}

`command` and `args` take the place of the URL key and `env` that of `headers`; `type` becomes
"stdio" where the client types command entries (VS Code) and is dropped elsewhere. A header value
may be a secret (Authorization), so it never goes on the command line, which any local user can
read (`ps`): it moves into the entry's `env` under a generated name, and `--header-env` tells the
gateway which header that variable fills. The transport is SSE when the entry's `type` says so,
else streamable HTTP. Remote entries that sign in with OAuth (`oauth`, Cursor's `auth`),
WebSocket ones and ones without an http(s) URL are left alone and reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.install.entry import (
    REMOTE_TYPES,
    URL_KEYS,
    Outcome,
    is_remote,
    names_remote,
    option_values,
    run_index,
    shown_url,
    split_args,
    transport_of,
    with_command,
)
from gateway.install.jsonc import json_type
from gateway.install.locate import Launcher
from gateway.protocol.names import server_identity
from gateway.upstream.child import DEFAULT_ENV_ALLOWLIST

_WEBSOCKET_TYPES: Final = frozenset({"ws", "websocket"})
#: Keys with which a client signs in to a remote server by OAuth (VS Code `oauth`, Cursor `auth`).
_OAUTH_KEYS: Final = ("oauth", "auth")
#: The prefix of the variables that carry a remote entry's header values into the gateway.
HEADER_ENV_PREFIX: Final = "AIRLOCK_HEADER_"
#: An HTTP field name (RFC 9110, section 5.1: a token).
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _not_wrappable(entry: Any) -> str | None:
    """Why an entry cannot be wrapped, or None."""
    if not isinstance(entry, dict):
        return f"the entry is {json_type(entry)}, not an object"
    reason = _not_remote(entry) if is_remote(entry) else _not_command(entry)
    if reason is not None:
        return reason
    env = entry.get("env", {})
    if not isinstance(env, dict):
        return "'env' is not an object"
    odd = [name for name in env if not name or name.startswith("-") or "=" in name]
    if odd:
        return f"'env' has names that are not variable names: {', '.join(map(repr, odd))}"
    return None


def _not_command(entry: Mapping[str, Any]) -> str | None:
    if not isinstance(entry.get("command"), str) or not entry["command"]:
        return "no 'command' string: not a stdio server"
    args = entry.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return "'args' is not a list of strings"
    return None


def _not_remote(entry: Mapping[str, Any]) -> str | None:
    """Why a remote entry cannot become `airlock run --url`, or None."""
    kind = entry.get("type")
    urls = [key for key in URL_KEYS if key in entry]
    what = entry[urls[0]] if urls and isinstance(entry[urls[0]], str) and entry[urls[0]] else kind
    if "type" in entry and not isinstance(kind, str):
        return "'type' is not a string"
    if kind is not None and kind.lower() in _WEBSOCKET_TYPES:
        return f"WebSocket server ({what}): 'airlock run --url' speaks streamable HTTP and SSE only"
    if kind is not None and kind.lower() not in REMOTE_TYPES:
        return f"'type' is {kind!r} but the entry has a {urls[0]!r}: which one the client uses is unclear; fix the entry by hand"
    if "command" in entry:
        return f"remote server ({what}) that also has a 'command': which one the client uses is unclear; fix the entry by hand"
    if len(urls) > 1:
        return "both 'url' and 'serverUrl': which one the client uses is unclear; keep one"
    url = entry[urls[0]] if urls else None
    if not isinstance(url, str) or not url.strip():
        return f"remote server{f' ({kind})' if kind else ''} with no 'url' string: nothing for 'airlock run --url' to reach"
    # `${...}`: a variable the client resolves (VS Code `${input:..}`, Cursor `${env:..}`), in args too.
    if not url.lower().startswith(("http://", "https://", "${")):
        return f"remote server ({url}): 'airlock run --url' reaches http:// and https:// URLs only"
    oauth = [key for key in _OAUTH_KEYS if key in entry]
    if oauth:
        return f"remote server ({url}) that signs in with OAuth ({oauth[0]!r}): the client does the sign-in, which 'airlock run' cannot"
    headers = entry.get("headers", {})
    if not isinstance(headers, dict):
        return "'headers' is not an object"
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            return f"header name {name!r} is not an HTTP field name"
        if name.startswith("-"):
            return f"header name {name!r} starts with '-', which 'airlock run' would read as an option"
        if not isinstance(value, str):
            return f"header {name!r} is {json_type(value)}, not a string"
        if not value:
            return f"header {name!r} is empty: 'airlock run' sends a header from a variable only when it has a value"
        if any(c in value for c in "\r\n\0"):
            return f"header {name!r} has a line break or NUL: not a valid HTTP field value"
    return None


def header_variables(headers: Sequence[str], env: Iterable[str]) -> list[str]:
    """A new environment variable name for each header: `AIRLOCK_HEADER_` and the header's name
    in upper case with `_` for anything else, then `_2`, `_3`... while the entry's `env` or an
    earlier header has that name (compared without case, as Windows compares them)."""
    taken = {name.upper() for name in env}
    out: list[str] = []
    for header in headers:
        base = HEADER_ENV_PREFIX + (re.sub(r"[^A-Z0-9]+", "_", header.upper()).strip("_") or "HEADER")
        name, suffix = base, 2
        while name.upper() in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name.upper())
        out.append(name)
    return out


def _wrap_remote(entry: Mapping[str, Any], launcher: Launcher, options: list[str], command_type: str | None) -> tuple[dict[str, Any], str]:
    """`entry`, a remote one that `_not_remote` accepts, as a command entry that runs
    `airlock run OPTIONS --url ...`, and the outcome's detail after the server's name."""
    url_key = next(key for key in URL_KEYS if key in entry)
    url, transport = entry[url_key], transport_of(entry)
    headers: dict[str, str] = entry.get("headers", {})
    env: dict[str, str] | None = entry.get("env")
    hidden_url = _url_has_query_or_user(url)  # a token in the URL: it goes through env too, not on the command line
    variables = header_variables(list(headers), env or {})
    url_variable = None
    if hidden_url:
        taken, url_variable, suffix = {n.upper() for n in [*(env or {}), *variables]}, "AIRLOCK_URL", 2
        while url_variable in taken:
            url_variable, suffix = f"AIRLOCK_URL_{suffix}", suffix + 1
    secrets = dict(zip(variables, headers.values(), strict=True)) | ({url_variable: url} if url_variable else {})
    remote = ["--url-env", url_variable] if url_variable else ["--url", url]
    remote += ["--transport", "sse"] if transport == "sse" else []
    remote += [item for header, variable in zip(headers, variables, strict=True) for item in ("--header-env", f"{header}={variable}")]
    args = [*launcher.prefix, "run", *options, *remote, "--"]
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "type":
            if command_type is not None:
                out["type"] = command_type
        elif key == url_key:
            out["command"], out["args"] = launcher.command, args
        elif key == "headers":
            if env is None and secrets:
                out["env"] = secrets
        elif key == "env":
            out["env"] = {**value, **secrets}
        else:
            out[key] = value
    if secrets and "env" not in out:  # no headers or env key to stand in for: after the command
        out["env"] = secrets
    detail = f"{shown_url(url)} over {transport}"
    if headers:
        detail += f"; headers {', '.join(headers)} sent from env {', '.join(variables)}"
    else:
        detail += "; sends no headers (a server that needs the client's OAuth sign-in will refuse it)"
    if url_variable:
        detail += f"; the URL holds a query or user part, so it is read from env {url_variable}, not the command line"
    return out, detail


def _url_has_query_or_user(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [ in the host: the gateway will say so when it starts
        return False
    return bool(parts.query or parts.username or parts.password)


def wrap_servers(
    servers: Mapping[str, Any], launcher: Launcher, policy: str | None, *, command_type: str | None = None
) -> tuple[dict[str, Any], list[Outcome]]:
    """The changed entries (name to new entry) and one outcome per server, in order.

    Each stdio entry becomes `launcher run --name NAME [--policy P] [--pass-env VAR]... -- CMD
    ARGS`, each remote one `launcher run --name NAME [--policy P] --url URL [--transport sse]
    [--header-env HEADER=VAR]... --` with the header values in its `env` (`type` becomes
    `command_type`, or goes when that is None). NAME is the entry's name as rules and pins spell
    it, made unique in the file; an entry that already starts `airlock run` is left alone, so a
    second install changes nothing.
    """
    taken: set[str] = set()
    for entry in servers.values():
        found = run_index(entry) if isinstance(entry, dict) else None
        split = split_args(entry["args"], found[0]) if found else None
        if split:
            taken.update(server_identity(v) for v in option_values(split[0], "--name"))
    changes: dict[str, Any] = {}
    outcomes: list[Outcome] = []
    for name, entry in servers.items():
        reason = _not_wrappable(entry)
        if reason is not None:
            outcomes.append(Outcome(name, "skipped", reason))
            continue
        found = run_index(entry)
        if found is not None:
            outcomes.append(Outcome(name, "unchanged", "already runs through airlock" + _unpassed_env(entry, found[0])))
            continue
        identity = base = server_identity(name)
        suffix = 2
        while identity in taken:
            identity, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(identity)
        options = ["--name", identity, *(["--policy", policy] if policy else [])]
        if is_remote(entry):
            changes[name], remote = _wrap_remote(entry, launcher, options, command_type)
            outcomes.append(Outcome(name, "wrapped", f"as airlock server {identity!r}; remote {remote}"))
            continue
        env = list(entry.get("env", {}))
        options += [item for var in env for item in ("--pass-env", var)]
        args = [*launcher.prefix, "run", *options, "--", entry["command"], *entry.get("args", [])]
        changes[name] = with_command(entry, launcher.command, args)
        detail = f"as airlock server {identity!r}" + (f"; passes env {', '.join(env)}" if env else "")
        if "envFile" in entry:
            detail += "; variables from envFile reach the server only if named: add --pass-env NAME to its args"
        outcomes.append(Outcome(name, "wrapped", detail))
    return changes, outcomes


def _unpassed_env(entry: Mapping[str, Any], run: int) -> str:
    split = split_args(entry["args"], run)
    env = entry.get("env")
    if split is None or not isinstance(env, dict) or names_remote(split[0]):
        return ""  # a remote upstream is no child process: its entry's env is the gateway's
    passed = set(option_values(split[0], "--pass-env")) | set(DEFAULT_ENV_ALLOWLIST)
    missing = [var for var in env if var not in passed]
    return f" (warning: env {', '.join(missing)} not passed to the server: add --pass-env NAME)" if missing else ""
