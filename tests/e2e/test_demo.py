"""`make demo` (`airlock demo`) runs end to end and shows what it claims."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.conftest import ROOT


def test_the_demo_denies_the_dangerous_tool_and_verifies_its_signed_log() -> None:
    result = subprocess.run([sys.executable, "-m", "gateway", "demo"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "allows read-only tools): delete_all_notes, send_email" in result.stdout
    assert "delete_all_notes -> denied by the gateway (JSON-RPC error -32030, rule default.deny)" in result.stdout
    assert "no rule allows airlock-demo-notes.delete_all_notes" in result.stdout
    assert "OK: " in result.stdout and "sealed on shutdown" in result.stdout
