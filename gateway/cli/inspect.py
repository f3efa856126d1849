"""`airlock inspect`: a flight log as a table or JSON lines, or one entry as a receipt."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from gateway.errors import EXIT_OK, ConfigError
from gateway.evidence.reader import EntryFilter, read_entries, redact, redact_receipt, table_header, table_row
from gateway.evidence.receipt import extract_receipt


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inspect = commands.add_parser("inspect", help="print a flight log as a table or JSON lines")
    inspect.add_argument("log", type=Path)
    inspect.add_argument("--session")
    inspect.add_argument("--tool")
    inspect.add_argument("--decision", choices=["allow", "deny", "shadow-deny"])
    inspect.add_argument("--kind")
    inspect.add_argument("--json", action="store_true", help="one JSON entry per line")
    inspect.add_argument("--show-raw", action="store_true", help="also print stored raw arguments and results")
    inspect.add_argument("--receipt", type=int, metavar="SEQ", help="print entry SEQ as a standalone, verifiable receipt")
    inspect.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.receipt is not None:
        try:
            data = args.log.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.log}: {exc.strerror}") from None
        receipt = extract_receipt(data.splitlines(), args.receipt)
        print(orjson.dumps(redact_receipt(receipt, args.show_raw), option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    wanted = EntryFilter(session=args.session, tool=args.tool, decision=args.decision, kind=args.kind)
    try:
        stream = open(args.log, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(f"cannot read {args.log}: {exc.strerror}") from None
    with stream:
        if not args.json:
            print(table_header())
        for number, entry in read_entries(stream):
            if entry is None:
                print(f"line {number}: not a JSON object (run 'airlock verify')", file=sys.stderr)
                continue
            if not wanted.accepts(entry):
                continue
            shown = redact(entry, args.show_raw)
            print(orjson.dumps(shown).decode() if args.json else table_row(shown))
    return EXIT_OK
