"""Unwrapping: each entry that `airlock install` wrapped, written back as it was. Pure.

A stdio entry gets back the command line after `--`. A remote one gets back the entry that its
`--url` (or `--url-env`) and `--header-env` variables describe: the arguments and `env` hold
everything needed; the spelling that they do not fix (`serverUrl` rather than `url`,
`"type": "streamable-http"` rather than `"http"`) comes from the backup when it holds the same
server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.install.entry import (
    INSTALL_OPTIONS,
    URL_KEYS,
    Outcome,
    is_remote,
    names_remote,
    run_index,
    shown_url,
    split_args,
    transport_of,
    with_command,
)


def _same_server(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two entries start the same server the same way, spelling aside: an empty `args`
    or none; `url` or `serverUrl`, and any remote `type` of the same transport."""
    if is_remote(a) and is_remote(b):
        return _remote_meaning(a) == _remote_meaning(b)
    return {"args": [], **a} == {"args": [], **b}


def _remote_meaning(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    url = next((entry[key] for key in URL_KEYS if key in entry), None)
    rest = {key: value for key, value in entry.items() if key not in ("type", "headers", *URL_KEYS)}
    return url, transport_of(entry), entry.get("headers", {}), rest


def _option_pairs(options: Sequence[str]) -> list[tuple[str, str]]:
    """(flag, value) of each option of `INSTALL_OPTIONS`, `--flag VALUE` or `--flag=VALUE`, in order."""
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(options):
        flag, equals, value = options[index].partition("=")
        if equals and flag in INSTALL_OPTIONS:
            pairs.append((flag, value))
        elif options[index] in INSTALL_OPTIONS and index + 1 < len(options):
            pairs.append((options[index], options[index + 1]))
            index += 1
        index += 1
    return pairs


def _unwrap_remote(entry: Mapping[str, Any], options: Sequence[str]) -> tuple[dict[str, Any], str] | str:
    """The remote entry that `_wrap_remote` turned into `entry` (whose options between `run` and
    `--` are `options`), with the outcome's detail; or why it cannot be written back.

    `command` and `args` give way to `url`; each `--header-env` variable leaves `env` for
    `headers`, which takes `env`'s place when nothing else was in it; `type` is "sse" or "http"
    as `--transport` says, and an SSE entry without one gets `"type": "sse"` first, as it had."""
    url, sse = "", False
    headers: dict[str, str] = {}
    used: set[str] = set()
    env = entry.get("env", {})
    for flag, value in _option_pairs(options):
        if flag == "--url":
            url = value
        elif flag == "--url-env":
            if not (isinstance(env, dict) and isinstance(env.get(value), str)):
                return f"its URL comes from variable {value!r}, which the entry's 'env' does not set; edit it by hand"
            url = env[value]
            used.add(value)
        elif flag == "--transport":
            sse = value == "sse"
        elif flag in ("--header-env", "--header"):
            header, _, text = value.partition("=")
            if flag == "--header":
                headers[header] = text
            elif isinstance(env, dict) and isinstance(env.get(text), str):
                headers[header] = env[text]
                used.add(text)
            else:
                return f"its {header} header comes from variable {text!r}, which the entry's 'env' does not set; edit it by hand"
    rest = {key: value for key, value in env.items() if key not in used} if isinstance(env, dict) else env
    out: dict[str, Any] = {"type": "sse"} if sse and "type" not in entry else {}
    for key, value in entry.items():
        if key == "type":
            out["type"] = "sse" if sse else "http"
        elif key == "command":
            out["url"] = url
        elif key == "env":
            if headers:
                out["headers"] = headers
            if rest or not used:
                out["env"] = rest
        elif key != "args":
            out[key] = value
    if headers and "headers" not in out:
        out["headers"] = headers
    detail = f"{shown_url(url)} over {'sse' if sse else 'streamable-http'}" + (f"; headers {', '.join(headers)}" if headers else "")
    return out, detail


def unwrap_servers(servers: Mapping[str, Any], backup: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[Outcome]]:
    """The changed entries (name to original entry) and one outcome per wrapped server.

    An entry `airlock install` could have written gets back the command line after `--`, or the
    remote entry that `--url` and its `--header-env` variables describe, with every other key as
    it is now (later edits survive). When `backup` holds the same server it is used verbatim
    (exact key order and spelling, an explicit empty args). Left alone: entries the backup shows
    were wrapped before any install, and hand-made forms (e.g. through uvx) or ones without `--`.
    """
    changes: dict[str, Any] = {}
    outcomes: list[Outcome] = []
    for name, entry in servers.items():
        found = run_index(entry) if isinstance(entry, dict) else None
        if found is None:
            continue
        run, ours = found
        split = split_args(entry["args"], run)
        original = (backup or {}).get(name)
        if isinstance(original, dict) and run_index(original) is not None:
            outcomes.append(Outcome(name, "skipped", "already ran through airlock before 'airlock install' (see the backup); left as is"))
            continue
        remote = ours and split is not None and not split[1] and names_remote(split[0])
        if not ours or split is None or not (split[1] or remote):
            why = "no '--' followed by a command" if split is None or not split[1] else "started through another program"
            outcomes.append(Outcome(name, "skipped", f"runs airlock in a form 'airlock install' does not write ({why}); edit it by hand"))
            continue
        options, command = split
        if remote:
            back = _unwrap_remote(entry, options)
            if isinstance(back, str):
                outcomes.append(Outcome(name, "skipped", back))
                continue
            unwrapped, detail = back
        else:
            unwrapped, detail = with_command(entry, command[0], command[1:] or None), " ".join(command)
        if isinstance(original, dict) and _same_server(original, unwrapped):
            unwrapped = dict(original)
        changes[name] = unwrapped
        extra = _foreign_options(options)
        outcomes.append(Outcome(name, "unwrapped", detail + (f" (dropped airlock options: {' '.join(extra)})" if extra else "")))
    return changes, outcomes


def _foreign_options(options: Sequence[str]) -> list[str]:
    extra: list[str] = []
    index = 0
    while index < len(options):
        option = options[index]
        if option in INSTALL_OPTIONS:
            index += 2
            continue
        if not option.startswith(tuple(o + "=" for o in INSTALL_OPTIONS)):
            extra.append(option)
        index += 1
    return extra
