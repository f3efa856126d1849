"""`airlock keygen` and `airlock key rotate`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson

from gateway.errors import EXIT_OK
from gateway.evidence.entry import timestamp, utc_now
from gateway.evidence.rotation import make_manifest, rotation_manifest_path
from gateway.evidence.signing import (
    generate_key,
    key_id,
    load_private_key,
    public_text,
    write_private_key,
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keygen = commands.add_parser("keygen", help="make a signing key (--out K) or print a key's public half (--public K)")
    which = keygen.add_mutually_exclusive_group(required=True)
    which.add_argument("--out", type=Path, help="write a new private key here (mode 0600; never overwrites)")
    which.add_argument("--public", type=Path, metavar="K", help="print the public key of private key file K")
    keygen.set_defaults(handler=cmd_keygen)

    key_cmd = commands.add_parser("key", help="key management")
    key_commands = key_cmd.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    rotate = key_commands.add_parser("rotate", help="replace a key file with a new key, and write a hand-over manifest signed by both")
    rotate.add_argument("--key", type=Path, required=True, help="the current private key file (replaced in place)")
    rotate.set_defaults(handler=cmd_key_rotate)


def cmd_keygen(args: argparse.Namespace) -> int:
    if args.public is not None:
        public = load_private_key(args.public).public_key()
        print(public_text(public))
        return EXIT_OK
    key = generate_key()
    write_private_key(args.out, key)
    print(f"wrote {args.out} (mode 0600); key id {key_id(key.public_key())}", file=sys.stderr)
    print(public_text(key.public_key()))
    return EXIT_OK


def cmd_key_rotate(args: argparse.Namespace) -> int:
    old = load_private_key(args.key)
    new = generate_key()
    manifest = make_manifest(old, new, timestamp(utc_now()))
    manifest_path = rotation_manifest_path(args.key)
    staged = args.key.with_name(args.key.name + ".next")
    write_private_key(staged, new)
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    os.replace(tmp, manifest_path)
    os.replace(staged, args.key)
    print(f"rotated {args.key}: {manifest['old_key_id']} -> {manifest['new_key_id']}; manifest {manifest_path}", file=sys.stderr)
    print("running gateways switch on SIGHUP (kill -HUP PID); new runs use the new key", file=sys.stderr)
    print(public_text(new.public_key()))
    return EXIT_OK
