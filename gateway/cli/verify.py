"""`airlock verify`: a flight log, or one standalone receipt, offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.cli.compose import (
    read_public_key,
)
from gateway.errors import EXIT_OK, ConfigError
from gateway.evidence.failures import VerificationError
from gateway.evidence.receipt import verify_receipt
from gateway.evidence.verify import verify_file


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser("verify", help="verify a flight log offline (exit 0 only for an intact, sealed log)")
    verify.add_argument("log", type=Path, help="a flight log (or, with --receipt, a receipt file)")
    verify.add_argument("--receipt", action="store_true", help="LOG is one receipt from 'airlock inspect --receipt'")
    verify.add_argument("--public-key", help="the expected signer: a file or text 'ed25519:BASE64' (or PEM)")
    verify.add_argument("--json", action="store_true", help="print a machine-readable report")
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    pinned = read_public_key(args.public_key)
    if args.receipt:
        return _verify_receipt_file(args.log, pinned, args.json)
    try:
        report = verify_file(args.log, pinned)
    except VerificationError as error:
        if args.json:
            detail = error.report.to_json() if error.report else {}
            print(
                orjson.dumps(
                    {"ok": False, "error": error.kind, "exit_code": error.exit_code, "line": error.line, "message": error.message, **detail}
                ).decode()
            )
        else:
            print(f"airlock verify: {error.kind}: {error.message}", file=sys.stderr)
        return error.exit_code
    if args.json:
        print(orjson.dumps({"ok": True, "error": None, "exit_code": 0, **report.to_json()}).decode())
    else:
        pin = "pinned key" if report.key_pinned else "key from the log's genesis entry (pass --public-key to pin it)"
        print(f"OK: {report.entries} entries, sealed, every entry signed; signer {report.key_id} ({pin})")
        if report.ephemeral:
            print("warning: the log was signed with an ephemeral key", file=sys.stderr)
        print("decisions: " + (", ".join(f"{k} {v}" for k, v in sorted(report.decisions.items())) or "none"))
    return EXIT_OK


def _verify_receipt_file(path: Path, pinned: Ed25519PublicKey | None, as_json: bool) -> int:
    try:
        receipt = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read receipt {path}: {exc}") from None
    try:
        entry = verify_receipt(receipt, pinned)
    except VerificationError as error:
        if as_json:
            print(orjson.dumps({"ok": False, "error": error.kind, "exit_code": error.exit_code, "message": error.message}).decode())
        else:
            print(f"airlock verify: {error.kind}: {error.message}", file=sys.stderr)
        return error.exit_code
    summary = {"ok": True, "seq": entry["seq"], "kind": entry["kind"], "tool": entry["tool"], "decision": entry["decision"]}
    print(orjson.dumps(summary).decode() if as_json else f"OK: receipt for entry {entry['seq']} ({entry['kind']}) verifies on its own")
    return EXIT_OK
