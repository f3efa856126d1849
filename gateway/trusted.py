"""Files that decide what the gateway allows (the policy, the lockfile, the config, which names
the upstream commands): read only when no one but their owner can change them, as a key file is
read only when no one else can read it.

Imports: errors.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

from gateway.errors import ConfigError


def read_trusted(path: Path, what: str, error: type[ConfigError]) -> bytes:
    """The bytes of `path` (`what` names it in errors, e.g. "policy file"), read from the same open
    file whose mode is checked.

    Raises:
        error: the file cannot be read, or others, or a group shared with other users, may write
            it (anyone who can write it decides what the gateway allows): the message says to
            `chmod go-w` it.
    """
    try:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            writers = (
                "others" if info.st_mode & stat.S_IWOTH else "its group" if info.st_mode & stat.S_IWGRP and shared_group(info) else None
            )
            if writers is not None:
                raise error(
                    f"{path}: the {what} is writable by {writers}; whoever can write it decides what the gateway allows: "
                    f"run 'chmod go-w {path}'"
                )
            return stream.read()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def shared_group(info: os.stat_result) -> bool:
    """Whether users other than the file's owner are in the file's group. A user-private group
    (the owner's primary group, with no one else in it: the default where the umask is 002)
    is not shared; a group that cannot be looked up is taken as shared."""
    try:
        group = grp.getgrgid(info.st_gid)
        owner = pwd.getpwuid(info.st_uid)
    except KeyError:
        return True
    if owner.pw_gid != info.st_gid or set(group.gr_mem) - {owner.pw_name}:
        return True
    return any(user.pw_gid == info.st_gid and user.pw_uid != info.st_uid for user in pwd.getpwall())
