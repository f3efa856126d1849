"""`airlock install claude|vscode|cursor`: the arguments and the summary printed on stdout; the
work is `gateway.install`'s."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import EXIT_OK, ConfigError
from gateway.install.files import backup_path, replace_atomically, unified_diff, write_backup_once
from gateway.install.locate import CLIENTS, TITLES, Launcher, config_files
from gateway.install.plan import Edit, plan, plan_restores
from gateway.policy.model import load_policy


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `airlock install` (handler `cmd_install`) on the top-level subparsers."""
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
    install.set_defaults(handler=cmd_install)


def cmd_install(
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
        edits = plan_restores(files)
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
