"""Files that decide what the gateway allows (the policy, the lockfile, the config, which names
the upstream commands): read only when no one but their owner can change them, as a key file is
read only when no one else can read it.

Imports: errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import ConfigError


def read_trusted(path: Path, what: str, error: type[ConfigError]) -> bytes:
    """The bytes of `path` (`what` names it in errors, e.g. "policy file"), read from the same open
    file whose mode is checked.

    Raises:
        error: the file cannot be read, or group or others may write it (anyone who can write it
            decides what the gateway allows): the message says to `chmod go-w` it.
    """
    try:
        with open(path, "rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise error(
                    f"{path}: the {what} is writable by {'others' if mode & stat.S_IWOTH else 'its group'}; whoever can write it "
                    f"decides what the gateway allows: run 'chmod go-w {path}'"
                )
            return stream.read()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
