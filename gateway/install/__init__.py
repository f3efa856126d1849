"""`airlock install claude|vscode|cursor`: rewrite an MCP client's config so that every server it
uses, stdio or remote, runs through `airlock run`, and `--uninstall` to undo it.

A wrapped stdio entry is the original one with only `command` and `args` changed:

    {"command": AIRLOCK, "args": ["run", "--name", NAME, ["--policy", P], ["--pass-env", VAR]...,
                                  "--", ORIGINAL_COMMAND, *ORIGINAL_ARGS], ...every other key}

so the original command line is recoverable from the arguments after `--` and uninstalling needs
no backup. `--pass-env` names each variable of the entry's `env`: the client hands `env` to the
gateway, and the gateway gives its upstream an explicit environment (DESIGN.md, "Upstream child
processes"), so without it the server would lose its API keys.

A remote entry (`url` or `serverUrl`, VS Code's `"type": "http"|"sse"`) becomes a command entry
that runs the gateway's stdio front against the URL:

    {["type": "stdio"], "command": AIRLOCK, "args": ["run", "--name", NAME, ["--policy", P], "--url", URL,
     ["--transport", "sse"], ["--header-env", HEADER=AIRLOCK_HEADER_X]..., "--"], ["env": {..., AIRLOCK_HEADER_X: VALUE}]}

`command` and `args` take the place of the URL key and `env` that of `headers`; `type` becomes
"stdio" where the client types command entries (VS Code) and is dropped elsewhere. A header value
may be a secret (Authorization), so it never goes on the command line, which any local user can
read (`ps`): it moves into the entry's `env` under a generated name, and `--header-env` tells the
gateway which header that variable fills. The transport is SSE when the entry's `type` says so,
else streamable HTTP. The arguments and `env` hold everything needed to write the remote entry
back; the spelling that they do not fix (`serverUrl` rather than `url`, `"type": "streamable-http"`
rather than `"http"`) comes from the backup when it holds the same server. Remote entries that
sign in with OAuth (`oauth`, Cursor's `auth`), WebSocket ones and ones without an http(s) URL are
left alone and reported.

On `--uninstall`, an entry that comes back as the backup has it is copied from the backup's text,
comments and layout included.

The first install that changes a file copies the file, byte for byte, to `<file>.airlock-backup`;
nothing overwrites that copy. Files are replaced atomically (a temporary file in the same
directory, then rename) with their mode kept. Only the changed values (`command`, `args`, or a
whole remote entry) are re-serialised: everything else in the file, comments included, is kept
byte for byte.

The pure part (`strip_jsonc`, `wrap_servers`, `unwrap_servers`, `entry_edits`, `splice`) does no
I/O; the shell below it finds, reads and writes files.

Imports: errors, protocol, policy, mediation, upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from gateway.errors import EXIT_OK, ConfigError
from gateway.policy.model import load_policy
from gateway.protocol.names import server_identity
from gateway.upstream.child import DEFAULT_ENV_ALLOWLIST
from gateway.upstream.http import HttpSpec

CLIENTS: Final = ("claude", "vscode", "cursor")
TITLES: Final = {"claude": "Claude Desktop", "vscode": "VS Code", "cursor": "Cursor"}
BACKUP_SUFFIX: Final = ".airlock-backup"
#: `type` values that mark an entry as a remote server (VS Code writes http and sse; other clients
#: spell streamable HTTP their own way).
REMOTE_TYPES: Final = frozenset({"http", "sse", "streamable-http", "streamablehttp", "streamable_http", "ws", "websocket"})
_WEBSOCKET_TYPES: Final = frozenset({"ws", "websocket"})
#: Where a remote entry keeps its URL: `url` (VS Code, Cursor), `serverUrl` (Windsurf's spelling).
_URL_KEYS: Final = ("url", "serverUrl")
#: Keys with which a client signs in to a remote server by OAuth (VS Code `oauth`, Cursor `auth`).
_OAUTH_KEYS: Final = ("oauth", "auth")
#: The prefix of the variables that carry a remote entry's header values into the gateway.
HEADER_ENV_PREFIX: Final = "AIRLOCK_HEADER_"
#: The options `airlock install` writes between `run` and `--` (and `--header`, which it reads
#: back); each takes one value.
_INSTALL_OPTIONS: Final = ("--name", "--policy", "--pass-env", "--url", "--url-env", "--transport", "--header-env", "--header")
#: An HTTP field name (RFC 9110, section 5.1: a token).
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_AIRLOCK_NAMES: Final = frozenset({"airlock", "airlock.exe"})
_PYTHON: Final = re.compile(r"python(?:\d+(?:\.\d+)?)?(?:\.exe)?", re.IGNORECASE)


class UnknownClient(ConfigError):
    """The client name is not one `airlock install` knows."""


class ClientConfigMissing(ConfigError):
    """The client's config file is not where it was looked for."""


class ClientConfigInvalid(ConfigError):
    """The config file is not JSON (JSONC for VS Code and Cursor) or not UTF-8."""


class ClientConfigShape(ConfigError):
    """The config file is JSON but not shaped as the client's MCP config."""


class ClientConfigUnwritable(ConfigError):
    """The config file or its backup cannot be read or written, or changed while being rewritten."""


class BackupUnsafe(ConfigError):
    """The backup path is a symbolic link or not a regular file: never written or read through."""


# -- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Launcher:
    """How a client starts Airlock: `command` then `prefix` then `run ...`."""

    command: str
    prefix: tuple[str, ...] = ()

    @classmethod
    def from_interpreter(cls, executable: str | None = None) -> Launcher:
        """The `airlock` script installed next to the interpreter, else `python -m gateway`.

        The path is absolute and not resolved: a virtual environment's python is a symlink whose
        target is outside the environment."""
        python = Path(os.path.abspath(executable or sys.executable))
        script = python.with_name("airlock.exe" if python.suffix.lower() == ".exe" else "airlock")
        if script.is_file() and os.access(script, os.X_OK):
            return cls(str(script))
        return cls(str(python), ("-m", "gateway"))


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A client config file and where its servers live: a key path (`("mcp", "servers")` in VS
    Code's settings.json), or None to decide from the content (VS Code with --config).
    `command_type` is the `type` the client gives a command entry ("stdio" in VS Code); None when
    it has none, so a remote entry's `type` is dropped when it becomes a command entry."""

    path: Path
    layout: tuple[str, ...] | None
    jsonc: bool
    command_type: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one server entry: action is wrapped, unwrapped, skipped or unchanged."""

    server: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class Edit:
    """The planned rewrite of one file. `after` is None when the file stays as it is."""

    file: ConfigFile
    before: bytes
    after: bytes | None
    outcomes: tuple[Outcome, ...]
    warnings: tuple[str, ...]


# -- locating the client's config ----------------------------------------------------------------


def _home(environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME") or environ.get("USERPROFILE")
    return Path(home) if home else Path.home()


def _app_config_dir(environ: Mapping[str, str], platform: str) -> Path:
    """Where desktop apps keep settings: macOS Application Support, Windows %APPDATA%, else the
    XDG config directory (only an absolute $XDG_CONFIG_HOME counts, as the XDG spec says)."""
    if platform == "darwin":
        return _home(environ) / "Library" / "Application Support"
    if platform == "win32":
        appdata = environ.get("APPDATA")
        return Path(appdata) if appdata else _home(environ) / "AppData" / "Roaming"
    xdg = environ.get("XDG_CONFIG_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else _home(environ) / ".config"


def candidate_files(client: str, environ: Mapping[str, str], platform: str) -> list[ConfigFile]:
    """Where `client` keeps its MCP servers, in the order they are used.

    Raises:
        UnknownClient: `client` is not claude, vscode or cursor.
    """
    if client == "claude":
        return [ConfigFile(_app_config_dir(environ, platform) / "Claude" / "claude_desktop_config.json", ("mcpServers",), False)]
    if client == "cursor":
        return [ConfigFile(_home(environ) / ".cursor" / "mcp.json", ("mcpServers",), True)]
    if client == "vscode":
        user = _app_config_dir(environ, platform) / "Code" / "User"
        # Newer VS Code keeps servers in mcp.json; older ones under "mcp" in settings.json.
        return [
            ConfigFile(user / "mcp.json", ("servers",), True, "stdio"),
            ConfigFile(user / "settings.json", ("mcp", "servers"), True, "stdio"),
        ]
    raise UnknownClient(f"unknown client {client!r}: choose one of {', '.join(CLIENTS)}")


def config_files(client: str, given: Path | None, environ: Mapping[str, str], platform: str) -> list[ConfigFile]:
    """The existing config files to rewrite: `given` (--config), else every candidate that exists.

    Raises:
        UnknownClient: unknown client name.
        ClientConfigMissing: no file; the message says where it looked and how to pass --config.
    """
    candidates = candidate_files(client, environ, platform)
    if given is not None:
        path = given.expanduser()
        if not path.is_file():
            raise ClientConfigMissing(f"--config {path}: no such file")
        layout = None if client == "vscode" else candidates[0].layout
        return [ConfigFile(path, layout, candidates[0].jsonc, candidates[0].command_type)]
    found = [c for c in candidates if c.path.is_file()]
    if not found:
        looked = " or ".join(str(c.path) for c in candidates)
        raise ClientConfigMissing(
            f"no {TITLES[client]} config found: looked for {looked} (from $HOME"
            f"{'' if platform in ('darwin', 'win32') or client == 'cursor' else ' and $XDG_CONFIG_HOME'}); "
            f"pass --config PATH to name the file"
        )
    return found


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


# -- JSONC ------------------------------------------------------------------------------------

_STRING: Final = r'"(?:[^"\\]|\\.)*"'
_COMMENTS: Final = re.compile(_STRING + r"|//[^\n]*|/\*.*?\*/|/\*", re.DOTALL)
_TRAILING_COMMA: Final = re.compile(_STRING + r"|,(?=\s*[}\]])")
_BLANK: Final = re.compile(r"[^\r\n]")


def _position(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    return f"line {line}, column {offset - (text.rfind(chr(10), 0, offset) + 1) + 1}"


def strip_jsonc(text: str, source: str = "<text>") -> tuple[str, bool]:
    """JSON text with the same offsets as `text`: comments and trailing commas of JSONC become
    spaces (line breaks kept), so JSON errors point at the right line and column. Strings are
    left alone, `//` inside a URL included. The flag says whether there were comments.

    Raises:
        ClientConfigInvalid: an unterminated block comment.
    """
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        token = match.group()
        if token.startswith('"'):
            return token
        if token == "/*":
            raise ClientConfigInvalid(f"{source}: unterminated /* comment at {_position(text, match.start())}")
        found = True
        return _BLANK.sub(" ", token)

    without_comments = _COMMENTS.sub(blank, text)
    cleaned = _TRAILING_COMMA.sub(lambda m: m.group() if m.group().startswith('"') else " ", without_comments)
    return cleaned, found


def _has_comment(text: str) -> bool:
    return any(not m.group().startswith('"') for m in _COMMENTS.finditer(text))


def _decode(raw: bytes, source: str) -> tuple[str, str]:
    """(BOM, text) of a UTF-8 file."""
    bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
    try:
        return bom, raw[len(bom.encode()) :].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ClientConfigInvalid(f"{source}: not UTF-8 text (byte {exc.start})") from None


def parse_document(text: str, source: str, jsonc: bool) -> tuple[Any, str, bool]:
    """(document, JSON text with `text`'s offsets, had comments). Blank text is an empty object.

    Raises:
        ClientConfigInvalid: not JSON (JSONC when `jsonc`), with line and column.
    """
    cleaned, commented = strip_jsonc(text, source) if jsonc else (text, False)
    if not cleaned.strip():
        return {}, "{}", commented
    try:
        return json.loads(cleaned), cleaned, commented
    except json.JSONDecodeError as exc:
        kind = "JSON (comments and trailing commas allowed)" if jsonc else "JSON"
        raise ClientConfigInvalid(f"{source}: not valid {kind}: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def resolve_layout(file: ConfigFile, document: Any) -> tuple[str, ...]:
    """The key path of the servers object; for VS Code with --config, decided by the content."""
    if file.layout is not None:
        return file.layout
    if isinstance(document, dict) and "servers" not in document and ("mcp" in document or file.path.name == "settings.json"):
        return ("mcp", "servers")
    return ("servers",)


def servers_of(document: Any, layout: tuple[str, ...], source: str) -> dict[str, Any] | None:
    """The servers object at `layout`, or None when the file configures none.

    Raises:
        ClientConfigShape: the top level, or a step of `layout`, is not an object.
    """
    if not isinstance(document, dict):
        raise ClientConfigShape(f"{source}: expected a JSON object at the top level, found {_json_type(document)}")
    node: Any = document
    for depth, key in enumerate(layout, 1):
        if key not in node:
            return None
        node = node[key]
        if not isinstance(node, dict):
            where = ".".join(layout[:depth])
            what = "an object mapping server names to servers" if depth == len(layout) else "an object"
            raise ClientConfigShape(f"{source}: {where!r} must be {what}, found {_json_type(node)}")
    return dict(node)


# -- spans: where each server's value is in the text ------------------------------------------------

_DECODER: Final = json.JSONDecoder()
_WS: Final = re.compile(r"[ \t\r\n]*")


def _skip(text: str, index: int) -> int:
    match = _WS.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _members(text: str, start: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) of each member of the object at `start` of valid JSON `text`."""
    members: list[tuple[str, int, int]] = []
    index = _skip(text, start + 1)
    if text[index] == "}":
        return members
    while True:
        key, index = _DECODER.raw_decode(text, index)
        index = _skip(text, _skip(text, index) + 1)  # past the colon
        _, end = _DECODER.raw_decode(text, index)
        members.append((key, index, end))
        index = _skip(text, end)
        if text[index] != ",":
            return members
        index = _skip(text, index + 1)


def server_spans(cleaned: str, layout: tuple[str, ...], source: str) -> dict[str, tuple[int, int]]:
    """Offsets of each server entry's value in `cleaned` (which `servers_of` accepted).

    Raises:
        ClientConfigShape: a server name appears twice (the client and this tool could disagree
        about which one counts).
    """
    start = _skip(cleaned, 0)
    for key in layout:
        start = [s for k, s, _ in _members(cleaned, start) if k == key][-1]
    spans: dict[str, tuple[int, int]] = {}
    for name, value_start, value_end in _members(cleaned, start):
        if name in spans:
            raise ClientConfigShape(f"{source}: server {name!r} is defined twice in {'.'.join(layout)!r}; keep one")
        spans[name] = (value_start, value_end)
    return spans


def _indent_unit(text: str) -> str:
    match = re.search(r"^([ \t]+)\S", text, re.MULTILINE)
    return match.group(1) if match else "  "


def _line_indent(text: str, offset: int) -> str:
    match = re.compile(r"[ \t]*").match(text, text.rfind("\n", 0, offset) + 1)
    return match.group() if match else ""


@dataclass(frozen=True, slots=True)
class _Style:
    unit: str
    newline: str

    @classmethod
    def of(cls, text: str) -> _Style:
        return cls(_indent_unit(text), "\r\n" if "\r\n" in text else "\n")

    def newlines(self, text: str) -> str:
        """`text` with the file's line breaks."""
        return text.replace("\r\n", "\n").replace("\n", self.newline)

    def render(self, value: Any, multiline: bool, indent: str) -> str:
        """`value` as JSON: on one line, or over several indented from `indent` like the file."""
        if not multiline:
            return json.dumps(value, ensure_ascii=False)
        return json.dumps(value, ensure_ascii=False, indent=self.unit).replace("\n", self.newline + indent)


#: A replacement of text[start:end].
TextEdit = tuple[int, int, str]


def _args_after_command(keys: list[str]) -> list[str]:
    out = [k for k in keys if k != "args"]
    at = out.index("command") + 1
    return [*out[:at], "args", *out[at:]]


def entry_edits(text: str, cleaned: str, span: tuple[int, int], old: Any, new: Mapping[str, Any]) -> list[TextEdit]:
    """The smallest edits that turn the entry at `span` from `old` into `new`: only the values
    that changed (and an `args` member added after, or removed from after, `command`), so the
    entry's layout and its comments elsewhere stay. Anything else rewrites the whole entry."""
    style = _Style.of(text)
    start, end = span
    whole = [(start, end, style.render(new, "\n" in text[start:end], _line_indent(text, start)))]
    members = _members(cleaned, start) if isinstance(old, dict) else []
    keys = [k for k, _, _ in members]
    if not isinstance(old, dict) or keys != list(old) or len(set(keys)) != len(keys):
        return whole
    spans = {k: (s, e) for k, s, e in members}
    edits: list[TextEdit] = []
    if keys == list(new):
        pass
    elif "command" in old and "command" in new and "args" not in old and list(new) == _args_after_command(keys):
        command_start, command_end = spans["command"]
        indent = _line_indent(text, command_start)
        multiline = "\n" in text[start:end]
        separator = "," + style.newline + indent if multiline else ", "
        edits.append((command_end, command_end, separator + '"args": ' + style.render(new["args"], multiline, indent)))
    elif "command" in new and "args" not in new and keys == _args_after_command(list(new)):
        edits.append((spans["command"][1], spans["args"][1], ""))
    else:
        return whole
    for key, value in new.items():
        if key in spans and old[key] != value:
            value_start, value_end = spans[key]
            multiline = "\n" in text[value_start:value_end]
            edits.append((value_start, value_end, style.render(value, multiline, _line_indent(text, value_start))))
    return edits


def splice(text: str, edits: Sequence[TextEdit]) -> str:
    """`text` with non-overlapping `edits` applied; everything else kept byte for byte."""
    out = text
    for start, end, replacement in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + replacement + out[end:]
    return out


# -- wrapping and unwrapping (pure) ----------------------------------------------------------------


def _basename(command: str) -> str:
    return re.split(r"[\\/]", command)[-1]


def _run_index(entry: Mapping[str, Any]) -> tuple[int, bool] | None:
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


def _options(args: Sequence[str], run: int) -> tuple[list[str], list[str]] | None:
    """(options between `run` and `--`, the command line after `--`), None without `--`."""
    try:
        dashes = args.index("--", run + 1)
    except ValueError:
        return None
    return list(args[run + 1 : dashes]), list(args[dashes + 1 :])


def _option_values(options: Sequence[str], flag: str) -> list[str]:
    values = [options[i + 1] for i, o in enumerate(options[:-1]) if o == flag]
    return values + [o.split("=", 1)[1] for o in options if o.startswith(flag + "=")]


def _is_remote(entry: Mapping[str, Any]) -> bool:
    kind = entry.get("type")
    return any(key in entry for key in _URL_KEYS) or (isinstance(kind, str) and kind.lower() in REMOTE_TYPES)


def _not_wrappable(entry: Any) -> str | None:
    """Why an entry cannot be wrapped, or None."""
    if not isinstance(entry, dict):
        return f"the entry is {_json_type(entry)}, not an object"
    reason = _not_remote(entry) if _is_remote(entry) else _not_command(entry)
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
    urls = [key for key in _URL_KEYS if key in entry]
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
            return f"header {name!r} is {_json_type(value)}, not a string"
        if not value:
            return f"header {name!r} is empty: 'airlock run' sends a header from a variable only when it has a value"
        if any(c in value for c in "\r\n\0"):
            return f"header {name!r} has a line break or NUL: not a valid HTTP field value"
    return None


def _transport(entry: Mapping[str, Any]) -> str:
    kind = entry.get("type")
    return "sse" if isinstance(kind, str) and kind.lower() == "sse" else "streamable-http"


def _with_command(entry: Mapping[str, Any], command: str, args: list[str] | None) -> dict[str, Any]:
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
    url_key = next(key for key in _URL_KEYS if key in entry)
    url, transport = entry[url_key], _transport(entry)
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
    detail = f"{_shown(url)} over {transport}"
    if headers:
        detail += f"; headers {', '.join(headers)} sent from env {', '.join(variables)}"
    else:
        detail += "; sends no headers (a server that needs the client's OAuth sign-in will refuse it)"
    if url_variable:
        detail += f"; the URL holds a query or user part, so it is read from env {url_variable}, not the command line"
    return out, detail


def _shown(url: str) -> str:
    """`url` without a query or user part (which may hold a token), for messages."""
    return HttpSpec(url).display


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
        found = _run_index(entry) if isinstance(entry, dict) else None
        split = _options(entry["args"], found[0]) if found else None
        if split:
            taken.update(server_identity(v) for v in _option_values(split[0], "--name"))
    changes: dict[str, Any] = {}
    outcomes: list[Outcome] = []
    for name, entry in servers.items():
        reason = _not_wrappable(entry)
        if reason is not None:
            outcomes.append(Outcome(name, "skipped", reason))
            continue
        found = _run_index(entry)
        if found is not None:
            outcomes.append(Outcome(name, "unchanged", "already runs through airlock" + _unpassed_env(entry, found[0])))
            continue
        identity = base = server_identity(name)
        suffix = 2
        while identity in taken:
            identity, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(identity)
        options = ["--name", identity, *(["--policy", policy] if policy else [])]
        if _is_remote(entry):
            changes[name], remote = _wrap_remote(entry, launcher, options, command_type)
            outcomes.append(Outcome(name, "wrapped", f"as airlock server {identity!r}; remote {remote}"))
            continue
        env = list(entry.get("env", {}))
        options += [item for var in env for item in ("--pass-env", var)]
        args = [*launcher.prefix, "run", *options, "--", entry["command"], *entry.get("args", [])]
        changes[name] = _with_command(entry, launcher.command, args)
        detail = f"as airlock server {identity!r}" + (f"; passes env {', '.join(env)}" if env else "")
        if "envFile" in entry:
            detail += "; variables from envFile reach the server only if named: add --pass-env NAME to its args"
        outcomes.append(Outcome(name, "wrapped", detail))
    return changes, outcomes


def _unpassed_env(entry: Mapping[str, Any], run: int) -> str:
    split = _options(entry["args"], run)
    env = entry.get("env")
    if split is None or not isinstance(env, dict) or _names_remote(split[0]):
        return ""  # a remote upstream is no child process: its entry's env is the gateway's
    passed = set(_option_values(split[0], "--pass-env")) | set(DEFAULT_ENV_ALLOWLIST)
    missing = [var for var in env if var not in passed]
    return f" (warning: env {', '.join(missing)} not passed to the server: add --pass-env NAME)" if missing else ""


def _names_remote(options: Sequence[str]) -> bool:
    """Whether airlock's options name a remote upstream (`--url` or `--url-env`)."""
    return bool(_option_values(options, "--url") or _option_values(options, "--url-env"))


def _same_server(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two entries start the same server the same way, spelling aside: an empty `args`
    or none; `url` or `serverUrl`, and any remote `type` of the same transport."""
    if _is_remote(a) and _is_remote(b):
        return _remote_meaning(a) == _remote_meaning(b)
    return {"args": [], **a} == {"args": [], **b}


def _remote_meaning(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    url = next((entry[key] for key in _URL_KEYS if key in entry), None)
    rest = {key: value for key, value in entry.items() if key not in ("type", "headers", *_URL_KEYS)}
    return url, _transport(entry), entry.get("headers", {}), rest


def _option_pairs(options: Sequence[str]) -> list[tuple[str, str]]:
    """(flag, value) of each option of `_INSTALL_OPTIONS`, `--flag VALUE` or `--flag=VALUE`, in order."""
    pairs: list[tuple[str, str]] = []
    index = 0
    while index < len(options):
        flag, equals, value = options[index].partition("=")
        if equals and flag in _INSTALL_OPTIONS:
            pairs.append((flag, value))
        elif options[index] in _INSTALL_OPTIONS and index + 1 < len(options):
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
    detail = f"{_shown(url)} over {'sse' if sse else 'streamable-http'}" + (f"; headers {', '.join(headers)}" if headers else "")
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
        found = _run_index(entry) if isinstance(entry, dict) else None
        if found is None:
            continue
        run, ours = found
        split = _options(entry["args"], run)
        original = (backup or {}).get(name)
        if isinstance(original, dict) and _run_index(original) is not None:
            outcomes.append(Outcome(name, "skipped", "already ran through airlock before 'airlock install' (see the backup); left as is"))
            continue
        remote = ours and split is not None and not split[1] and _names_remote(split[0])
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
            unwrapped, detail = _with_command(entry, command[0], command[1:] or None), " ".join(command)
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
        if option in _INSTALL_OPTIONS:
            index += 2
            continue
        if not option.startswith(tuple(o + "=" for o in _INSTALL_OPTIONS)):
            extra.append(option)
        index += 1
    return extra


# -- planning (reads files) ------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientConfigUnwritable(f"cannot read {path}: {exc.strerror or exc}") from None


def read_backup(path: Path) -> bytes | None:
    """The backup of `path`, or None when there is none; never through a symlink.

    Raises:
        BackupUnsafe: the backup path is a symlink or not a regular file.
    """
    backup = backup_path(path)
    try:
        fd = os.open(backup, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP or backup.is_symlink():
            raise BackupUnsafe(f"{backup} is a symbolic link: airlock does not read or write a backup through one; remove it") from None
        raise ClientConfigUnwritable(f"cannot read {backup}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise BackupUnsafe(f"{backup} is not a regular file; remove it")
        return stream.read()


@dataclass(frozen=True, slots=True)
class _Saved:
    """A server entry as the backup has it: its value and its text, comments included."""

    entry: Any
    text: str

    def restores(self, entry: Any, jsonc: bool) -> bool:
        """Whether this text can stand for `entry` (same keys, order and values) in a JSON (or
        JSONC) file."""
        if json.dumps(self.entry) != json.dumps(entry):
            return False
        try:
            return jsonc or json.loads(self.text) == entry
        except json.JSONDecodeError:
            return False


def _backup_servers(file: ConfigFile, layout: tuple[str, ...]) -> dict[str, _Saved] | None:
    """The servers of the backup, or None when it is missing or unreadable (it is only a hint)."""
    raw = read_backup(file.path)
    if raw is None:
        return None
    source = str(backup_path(file.path))
    try:
        _, text = _decode(raw, source)
        document, cleaned, _ = parse_document(text, source, True)
        servers = servers_of(document, layout, source)
        if servers is None:
            return None
        spans = server_spans(cleaned, layout, source)
    except ConfigError:
        return None
    return {name: _Saved(servers[name], text[start:end]) for name, (start, end) in spans.items()}


def plan(file: ConfigFile, *, uninstall: bool, launcher: Launcher, policy: str | None) -> Edit:
    """What installing (or uninstalling) does to `file`; writes nothing.

    Raises:
        ClientConfigInvalid, ClientConfigShape, ClientConfigUnwritable, BackupUnsafe.
    """
    source = str(file.path)
    raw = _read(file.path)
    bom, text = _decode(raw, source)
    document, cleaned, _ = parse_document(text, source, file.jsonc)
    layout = resolve_layout(file, document)
    servers = servers_of(document, layout, source)
    if not servers:
        note = Outcome("-", "unchanged", f"no MCP servers configured under {'.'.join(layout)!r}")
        return Edit(file, raw, None, (note,), ())
    saved = (_backup_servers(file, layout) or {}) if uninstall else {}
    if uninstall:
        changes, outcomes = unwrap_servers(servers, {name: kept.entry for name, kept in saved.items()})
        if not outcomes:
            outcomes = [Outcome("-", "unchanged", "no server runs through airlock")]
    else:
        changes, outcomes = wrap_servers(servers, launcher, policy, command_type=file.command_type)
    if not changes:
        return Edit(file, raw, None, tuple(outcomes), ())
    spans = server_spans(cleaned, layout, source)
    style = _Style.of(text)
    edits: list[TextEdit] = []
    warnings: list[str] = []
    for name, entry in changes.items():
        kept = saved.get(name)
        if kept is not None and kept.restores(entry, file.jsonc):
            these = [(*spans[name], style.newlines(kept.text))]
        else:
            these = entry_edits(text, cleaned, spans[name], servers[name], entry)
        if any(_has_comment(text[start:end]) for start, end, _ in these):
            warnings.append(f"comments inside server {name!r} are not preserved (the backup {backup_path(file.path)} keeps them)")
        edits += these
    after = (bom + splice(text, edits)).encode("utf-8")
    return Edit(file, raw, after, tuple(outcomes), tuple(warnings))


def plan_restore(file: ConfigFile) -> Edit | None:
    """Replacing `file` with its backup; None when it has no backup.

    Raises:
        BackupUnsafe: the backup path is a symlink or not a regular file.
    """
    raw = _read(file.path)
    saved = read_backup(file.path)
    if saved is None:
        return None
    outcome = Outcome("-", "restored" if saved != raw else "unchanged", f"the whole file from {backup_path(file.path)}")
    return Edit(file, raw, saved if saved != raw else None, (outcome,), ())


# -- writing ----------------------------------------------------------------------------------------


def write_backup_once(path: Path, data: bytes) -> bool:
    """Write `data` to the backup of `path` unless a backup exists; True when written now.
    The backup is created exclusively (never through a symlink) with mode 0600.

    Raises:
        BackupUnsafe: the backup path is a symlink or not a regular file.
        ClientConfigUnwritable: it cannot be written.
    """
    backup = backup_path(path)
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        mode = os.lstat(backup).st_mode
        if stat.S_ISLNK(mode):
            raise BackupUnsafe(f"{backup} is a symbolic link: airlock does not write a backup through one; remove it") from None
        if not stat.S_ISREG(mode):
            raise BackupUnsafe(f"{backup} is not a regular file; remove it") from None
        return False
    except OSError as exc:
        raise ClientConfigUnwritable(f"cannot write the backup {backup}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(backup)
        raise ClientConfigUnwritable(f"cannot write the backup {backup}: {exc.strerror or exc}") from None
    return True


def replace_atomically(path: Path, data: bytes, expected: bytes) -> None:
    """Replace the file `path` names (a symlinked config is written at its target, so the link
    stays) with `data`: a temporary file in the same directory, then a rename. Mode and, where
    permitted, owner are kept.

    Raises:
        ClientConfigUnwritable: it cannot be written, or it no longer holds `expected` (someone
        else changed it meanwhile: run again).
    """
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".airlock-tmp")
    except OSError as exc:
        raise ClientConfigUnwritable(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            with contextlib.suppress(OSError):
                os.chown(tmp, info.st_uid, info.st_gid)
        if _read(target) != expected:
            raise ClientConfigUnwritable(f"{path} changed while airlock was rewriting it; nothing written: run the command again")
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ClientConfigUnwritable(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unified_diff(before: bytes, after: bytes, path: Path) -> str:
    """A unified diff of two versions of a file, as `diff -u` prints it."""
    old = before.decode("utf-8", "replace").splitlines(keepends=True)
    new = after.decode("utf-8", "replace").splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(old, new, f"a/{path}", f"b/{path}"):
        lines.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(lines)


# -- the command --------------------------------------------------------------------------------------


def add_install_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `airlock install` (handler `run_install`) on the top-level subparsers."""
    install = subparsers.add_parser(
        "install",
        help="make a client (claude, vscode, cursor) run its MCP servers through airlock",
        description="Rewrite the client's MCP config so each server runs through airlock, keeping every other key: a stdio "
        "server as 'airlock run -- CMD ARGS', a remote (HTTP/SSE) one as 'airlock run --url URL --', its header values "
        "moved into the entry's env and sent with --header-env (never on the command line). The first change saves the "
        "original as FILE.airlock-backup (never overwritten). Running it again changes nothing. Remote servers that sign "
        "in with OAuth are left as they are.",
    )
    install.add_argument("client", choices=CLIENTS, help="which client's config to rewrite")
    install.add_argument("--config", type=Path, help="the config file (default: the client's usual place)")
    install.add_argument("--policy", type=Path, help="policy file for the wrapped servers (default: airlock run's default)")
    install.add_argument("--dry-run", action="store_true", help="print a unified diff of the change and write nothing")
    install.add_argument(
        "--uninstall", action="store_true", help="unwrap the servers: back to the command lines after '--', or to the URLs and headers"
    )
    install.add_argument(
        "--restore-backup", action="store_true", help="with --uninstall: put back the whole file saved at the first install"
    )
    install.set_defaults(handler=run_install)


def run_install(
    args: argparse.Namespace,
    *,
    launcher: Launcher | None = None,
    environ: Mapping[str, str] | None = None,
    platform: str | None = None,
) -> int:
    """Run `airlock install` as `args` says, print a summary on stdout; return the exit status.

    Raises:
        ConfigError (exit code 2) or a subclass of it: unknown client, missing or invalid config,
        unexpected shape, unreadable policy, unsafe backup path, a file that cannot be written.
    """
    if args.restore_backup and not args.uninstall:
        raise ConfigError("--restore-backup goes with --uninstall: airlock install --uninstall --restore-backup CLIENT")
    if args.policy is not None and args.uninstall:
        raise ConfigError("--policy has no meaning with --uninstall")
    policy = None
    if args.policy is not None:
        policy_path = Path(args.policy).expanduser().resolve()
        load_policy(policy_path)  # fail now, not when the client starts each server
        policy = str(policy_path)
    launcher = launcher or Launcher.from_interpreter()
    title = TITLES.get(args.client, args.client)
    files = config_files(args.client, args.config, os.environ if environ is None else environ, platform or sys.platform)
    # Every file is planned before any is written, so an error in one leaves all as they were.
    if args.restore_backup:
        edits = [edit for edit in map(plan_restore, files) if edit is not None]
        if not edits:
            looked = " or ".join(str(backup_path(file.path)) for file in files)
            raise ClientConfigMissing(
                f"no backup at {looked}: nothing to restore ('airlock install --uninstall' without --restore-backup "
                f"unwraps the entries without one)"
            )
    else:
        edits = [plan(file, uninstall=args.uninstall, launcher=launcher, policy=policy) for file in files]
    for edit in edits:
        _report(edit, title, dry_run=args.dry_run, uninstall=args.uninstall)
    return EXIT_OK


def _report(edit: Edit, title: str, *, dry_run: bool, uninstall: bool) -> None:
    path = edit.file.path
    print(f"{title}: {path}")
    width = max(len(o.server) for o in edit.outcomes)
    for outcome in edit.outcomes:
        print(f"  {outcome.action:<9}  {outcome.server:<{width}}  {outcome.detail}")
    for warning in edit.warnings:
        print(f"  warning: {warning}")
    if edit.after is None:
        print("  nothing to change")
        return
    backup = backup_path(path)
    if dry_run:
        sys.stdout.write(unified_diff(edit.before, edit.after, path))
        if not uninstall and not backup.exists():
            print(f"  would save the original as {backup}")
        print("  dry run: nothing written")
        return
    if not uninstall and write_backup_once(path, edit.before):
        print(f"  backup: {backup} (the original, mode 0600; later installs never overwrite it)")
    elif backup.exists():
        print(f"  backup: {backup} (kept as it was)")
    replace_atomically(path, edit.after, edit.before)
    print(f"  wrote {path}; restart {title} to use it")
