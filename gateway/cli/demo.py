"""`airlock demo`: the gateway against the embedded demo server."""

from __future__ import annotations

import argparse

from gateway.logs import configure_logging


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="run the gateway against a built-in demo server and show what it does")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo.walkthrough import run_demo

    configure_logging("warning")
    return run_demo()
