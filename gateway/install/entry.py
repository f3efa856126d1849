"""A server entry as `airlock install` reads it: stdio or remote, and the `airlock run` command
line inside a wrapped one (where `run` is, the options before `--` and the command after it).
What both directions share; `Outcome` is what happened to one entry. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from gateway.upstream.http import HttpSpec

#: `type` values that mark an entry as a remote server (VS Code writes http and sse; other clients
#: spell streamable HTTP their own way).
REMOTE_TYPES: Final = frozenset({"http", "sse", "streamable-http", "streamablehttp", "streamable_http", "ws", "websocket"})
#: Where a remote entry keeps its URL: `url` (VS Code, Cursor), `serverUrl` (Windsurf's spelling).
URL_KEYS: Final = ("url", "serverUrl")
#: The options `airlock install` writes between `run` and `--` (and `--header`, which it reads
#: back); each takes one value.
INSTALL_OPTIONS: Final = ("--name", "--policy", "--pass-env", "--url", "--url-env", "--transport", "--header-env", "--header")
_AIRLOCK_NAMES: Final = frozenset({"airlock", "airlock.exe"})
_PYTHON: Final = re.compile(r"python(?:\d+(?:\.\d+)?)?(?:\.exe)?", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one server entry: action is wrapped, unwrapped, skipped or unchanged."""

    server: str
    action: str
    detail: str


def _basename(command: str) -> str:
    return re.split(r"[\\/]", command)[-1]


def run_index(entry: Mapping[str, Any]) -> tuple[int, bool] | None:
    """(index of `run` in args, whether `airlock install` could have written this form) when the
    entry starts `airlock run`; None when it does not."""
    command, args = entry.get("command"), entry.get("args", [])
    if not isinstance(command, str) or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        return None
    if _basename(command).lower() in _AIRLOCK_NAMES and args[:1] == ["run"]:
        return 0, True
    if _PYTHON.fullmatch(_basename(command)) and args[:3] == ["-m", "gateway", "run"]:
        return 2, True
    for index, arg in enumerate(args[:-1]):  # by hand, e.g. uvx --from mcp-airlock airlock run ...
        if _basename(arg).lower() in _AIRLOCK_NAMES and args[index + 1] == "run":
            return index + 1, False
    return None


def split_args(args: Sequence[str], run: int) -> tuple[list[str], list[str]] | None:
    """(options between `run` and `--`, the command line after `--`), None without `--`."""
    try:
        dashes = args.index("--", run + 1)
    except ValueError:
        return None
    return list(args[run + 1 : dashes]), list(args[dashes + 1 :])


def option_values(options: Sequence[str], flag: str) -> list[str]:
    """The values of `flag` in `options`, `--flag VALUE` ones first, then `--flag=VALUE` ones."""
    values = [options[i + 1] for i, o in enumerate(options[:-1]) if o == flag]
    return values + [o.split("=", 1)[1] for o in options if o.startswith(flag + "=")]


def is_remote(entry: Mapping[str, Any]) -> bool:
    """Whether `entry` names a remote server: it has a URL key or a remote `type`."""
    kind = entry.get("type")
    return any(key in entry for key in URL_KEYS) or (isinstance(kind, str) and kind.lower() in REMOTE_TYPES)


def transport_of(entry: Mapping[str, Any]) -> str:
    """ "sse" when the remote entry's `type` says so, else "streamable-http"."""
    kind = entry.get("type")
    return "sse" if isinstance(kind, str) and kind.lower() == "sse" else "streamable-http"


def with_command(entry: Mapping[str, Any], command: str, args: list[str] | None) -> dict[str, Any]:
    """`entry` with command and args replaced in place (args right after command when new; no
    args key when `args` is None); every other key kept in its order."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "command":
            out["command"] = command
            if "args" not in entry and args is not None:
                out["args"] = args
        elif key == "args":
            if args is not None:
                out["args"] = args
        else:
            out[key] = value
    return out


def shown_url(url: str) -> str:
    """`url` without a query or user part (which may hold a token), for messages."""
    return HttpSpec(url).display


def names_remote(options: Sequence[str]) -> bool:
    """Whether airlock's options name a remote upstream (`--url` or `--url-env`)."""
    return bool(option_values(options, "--url") or option_values(options, "--url-env"))
