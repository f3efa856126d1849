"""The config file on disk: reading it, its backup, replacing it, and the diff a dry run prints.
The only part of the package that writes.

The first install that changes a file copies the file, byte for byte, to `<file>.airlock-backup`
(mode 0600, created exclusively, never through a symbolic link); nothing overwrites that copy.
Files are replaced atomically (a temporary file in the same directory, then rename) with their
mode kept, and only when they still hold what was read.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Final

from gateway.install.errors import BackupUnsafe, ClientConfigChanged, ClientConfigUnwritable

BACKUP_SUFFIX: Final = ".airlock-backup"


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + BACKUP_SUFFIX)


def read_config(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ClientConfigUnwritable.from_os_error("read", path, exc) from None


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
            raise BackupUnsafe(backup, "is a symbolic link: airlock does not read or write a backup through one") from None
        raise ClientConfigUnwritable.from_os_error("read", backup, exc) from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise BackupUnsafe(backup, "is not a regular file")
        return stream.read()


def _write_durably(fd: int, data: bytes) -> None:
    """Write `data` to the open file `fd`, on disk before this returns, and close it."""
    with os.fdopen(fd, "wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


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
            raise BackupUnsafe(backup, "is a symbolic link: airlock does not write a backup through one") from None
        if not stat.S_ISREG(mode):
            raise BackupUnsafe(backup, "is not a regular file") from None
        return False
    except OSError as exc:
        raise ClientConfigUnwritable.from_os_error("write the backup", backup, exc) from None
    try:
        _write_durably(fd, data)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(backup)
        raise ClientConfigUnwritable.from_os_error("write the backup", backup, exc) from None
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
        raise ClientConfigUnwritable.from_os_error("write", path, exc) from None
    try:
        _write_durably(fd, data)
        os.chmod(tmp, stat.S_IMODE(info.st_mode))
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            with contextlib.suppress(OSError):
                os.chown(tmp, info.st_uid, info.st_gid)
        if read_config(target) != expected:
            raise ClientConfigChanged(path)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ClientConfigUnwritable.from_os_error("write", path, exc) from None
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
