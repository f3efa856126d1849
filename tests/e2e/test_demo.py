"""`make demo` (`airlock demo`) runs end to end and shows what it claims."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import ROOT


def test_the_demo_denies_the_dangerous_tool_and_verifies_its_signed_log() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "demo"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hidden by the deny rule: delete_all_notes" in result.stdout
    assert "rule cli.deny[delete_all_notes]" in result.stdout
    assert "OK: " in result.stdout and "sealed on shutdown" in result.stdout
