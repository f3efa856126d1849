"""The `home` fixture: a temporary home directory with `airlock install` run against it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.cli.install import add_parser, cmd_install
from gateway.errors import EXIT_OK, EXIT_USAGE, ConfigError
from gateway.install.locate import Launcher
from tests.unit.install.samples import LAUNCHER


def airlock_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


class Home:
    """A temporary home directory, and `airlock install` run against it (Linux layout)."""

    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.environ: dict[str, str] = {"HOME": str(root)}
        self.capsys = capsys
        self.platform = "linux"

    def write(self, relative: str, text: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", newline="")
        return path

    def install(self, *argv: str, launcher: Launcher = LAUNCHER) -> str:
        args = airlock_parser().parse_args(["install", *argv])
        assert args.handler is cmd_install
        status = cmd_install(args, launcher=launcher, environ=self.environ, platform=self.platform)
        assert status == EXIT_OK
        return self.capsys.readouterr().out

    def fails(self, *argv: str, error: type[ConfigError]) -> ConfigError:
        args = airlock_parser().parse_args(["install", *argv])
        with pytest.raises(error) as caught:
            cmd_install(args, launcher=LAUNCHER, environ=self.environ, platform=self.platform)
        assert caught.value.exit_code == EXIT_USAGE
        return caught.value


@pytest.fixture
def home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Home:
    return Home(tmp_path / "home", capsys)
