"""`airlock install claude|vscode|cursor [--dry-run | --uninstall]`."""

from gateway.install import add_install_parser as add_parser
from gateway.install import run_install

__all__ = ["add_parser", "run_install"]
