"""What `airlock install` would do to one config file (`plan`, `plan_restore`), as an `Edit`:
the bytes before and after and an outcome per server. Reads the file and its backup; writes
nothing, so every file can be planned before any is written.

Only the changed values (`command`, `args`, or a whole remote entry) are re-serialised:
everything else in the file, comments included, is kept byte for byte. On `--uninstall`, an
entry that comes back as the backup has it is copied from the backup's text, comments and layout
included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.errors import ConfigError
from gateway.install.entry import Outcome
from gateway.install.errors import ClientConfigMissing
from gateway.install.files import backup_path, read_backup, read_config
from gateway.install.jsonc import Style, TextEdit, decode, entry_edits, has_comment, parse_document, server_spans, servers_of, splice
from gateway.install.locate import ConfigFile, Launcher, resolve_layout
from gateway.install.unwrap import unwrap_servers
from gateway.install.wrap import wrap_servers


@dataclass(frozen=True, slots=True)
class Edit:
    """The planned rewrite of one file. `after` is None when the file stays as it is."""

    file: ConfigFile
    before: bytes
    after: bytes | None
    outcomes: tuple[Outcome, ...]
    warnings: tuple[str, ...]


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
        _, text = decode(raw, source)
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
    raw = read_config(file.path)
    bom, text = decode(raw, source)
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
    style = Style.of(text)
    edits: list[TextEdit] = []
    warnings: list[str] = []
    for name, entry in changes.items():
        kept = saved.get(name)
        if kept is not None and kept.restores(entry, file.jsonc):
            these = [(*spans[name], style.newlines(kept.text))]
        else:
            these = entry_edits(text, cleaned, spans[name], servers[name], entry)
        if any(has_comment(text[start:end]) for start, end, _ in these):
            warnings.append(f"comments inside server {name!r} are not preserved (the backup {backup_path(file.path)} keeps them)")
        edits += these
    after = (bom + splice(text, edits)).encode("utf-8")
    return Edit(file, raw, after, tuple(outcomes), tuple(warnings))


def plan_restore(file: ConfigFile) -> Edit | None:
    """Replacing `file` with its backup; None when it has no backup.

    Raises:
        BackupUnsafe: the backup path is a symlink or not a regular file.
    """
    raw = read_config(file.path)
    saved = read_backup(file.path)
    if saved is None:
        return None
    outcome = Outcome("-", "restored" if saved != raw else "unchanged", f"the whole file from {backup_path(file.path)}")
    return Edit(file, raw, saved if saved != raw else None, (outcome,), ())


def plan_restores(files: Sequence[ConfigFile]) -> list[Edit]:
    """Replacing each of `files` that has a backup with it.

    Raises:
        ClientConfigMissing: none of `files` has a backup.
        BackupUnsafe: a backup path is a symlink or not a regular file.
    """
    edits = [edit for edit in map(plan_restore, files) if edit is not None]
    if not edits:
        looked = " or ".join(str(backup_path(file.path)) for file in files)
        raise ClientConfigMissing(
            f"no backup at {looked}: nothing to restore ('airlock install --uninstall' without --restore-backup "
            f"unwraps the entries without one)"
        )
    return edits
