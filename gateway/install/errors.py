"""The failures of `airlock install`: each a `ConfigError` (exit code 2) built from the values it
is about, so the wording lives here once."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Self

from gateway.errors import ConfigError


class UnknownClient(ConfigError):
    """The client name is not one `airlock install` knows."""

    def __init__(self, client: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown client {client!r}: choose one of {', '.join(known)}")
        self.client = client


class ClientConfigMissing(ConfigError):
    """The client's config file is not where it was looked for."""


class ClientConfigInvalid(ConfigError):
    """The config file is not JSON (JSONC for VS Code and Cursor) or not UTF-8. `source` names
    the file, `problem` says what is wrong and where."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class ClientConfigShape(ConfigError):
    """The config file is JSON but not shaped as the client's MCP config. `source` names the
    file, `problem` says which part is wrong."""

    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class ClientConfigUnwritable(ConfigError):
    """The config file or its backup cannot be read or written, or changed while being rewritten."""

    @classmethod
    def from_os_error(cls, action: str, path: Path, exc: OSError) -> Self:
        """`cannot {action} {path}: {why}`, `why` from the operating system."""
        return cls(f"cannot {action} {path}: {exc.strerror or exc}")


class ClientConfigChanged(ClientConfigUnwritable):
    """The config file no longer holds what was read: someone else wrote it meanwhile."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed while airlock was rewriting it; nothing written: run the command again")
        self.path = path


class BackupUnsafe(ConfigError):
    """The backup path is a symbolic link or not a regular file: never written or read through.
    `problem` says which, as `{backup} {problem}; remove it`."""

    def __init__(self, backup: Path, problem: str) -> None:
        super().__init__(f"{backup} {problem}; remove it")
        self.backup = backup
