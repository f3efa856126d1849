"""Where each client keeps its MCP config, and where the servers sit inside it; and the `airlock`
that a wrapped entry starts. The only part of the package that looks at the file system to find
things (it reads no config)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from gateway.install.errors import ClientConfigMissing, UnknownClient

CLIENTS: Final = ("claude", "vscode", "cursor")
TITLES: Final = {"claude": "Claude Desktop", "vscode": "VS Code", "cursor": "Cursor"}


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
    raise UnknownClient(client, CLIENTS)


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


def resolve_layout(file: ConfigFile, document: Any) -> tuple[str, ...]:
    """The key path of the servers object; for VS Code with --config, decided by the content."""
    if file.layout is not None:
        return file.layout
    if isinstance(document, dict) and "servers" not in document and ("mcp" in document or file.path.name == "settings.json"):
        return ("mcp", "servers")
    return ("servers",)
