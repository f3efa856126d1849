"""A message holding text that is not valid Unicode (a lone surrogate, which JSON can carry as
`\\ud800`) has no canonical JSON form. Before, the call entry could not be written, so a
`tools/call` whose name held one was refused with -32603 and no entry: `verify` reported a clean
log with one deny fewer than happened. Now such text is recorded escaped (`\\ud800` as six
characters, `data.unicode_escaped` set) and the refusal has its entry, which verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import POLICY_DENIED
from gateway.evidence.entry import escaped
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.evidence.verify import verify_file
from gateway.protocol import jsonrpc
from gateway.session.relay import Relay
from tests.unit.helpers import policy_mediator


@pytest.mark.parametrize(
    ("line", "tool", "decision"),
    [
        pytest.param(rb'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t\ud800"}}', "t\\ud800", "deny", id="name"),
        pytest.param(rb'{"jsonrpc":"2.0","id":"\udc00","method":"tools/call","params":{"name":"t"}}', "t", "allow", id="request-id"),
    ],
)
def test_a_call_holding_a_lone_surrogate_gets_an_entry_that_verifies(tmp_path: Path, line: bytes, tool: str, decision: str) -> None:
    path = tmp_path / "log.jsonl"
    log = FlightLog.open(LogSettings(path=path), generate_key(), policy_hash="ab" * 32, inline_signing=True)
    log.start("test", ephemeral=True)
    to_client: list[bytes] = []
    relay = Relay(policy_mediator(pinned=["t"], flight_log=log), to_client.append, lambda line: None)
    relay.from_client(line)
    log.close("test")
    if decision == "deny":
        assert jsonrpc.decode(to_client[0])["error"]["code"] == POLICY_DENIED
    (call,) = [e for e in map(jsonrpc.decode, path.read_bytes().splitlines()) if e["kind"] == "call"]
    assert (call["tool"], call["decision"], call["data"].get("unicode_escaped")) == (tool, decision, True)
    assert verify_file(path, None).decisions == {decision: 1}


def test_escaping_keeps_valid_text_as_it_is_and_escapes_only_lone_surrogates() -> None:
    assert escaped({"k": ["fine ✓", 1, None]}) == {"k": ["fine ✓", 1, None]}
    assert escaped({"\ud800": "a\udfffb"}) == {"\\ud800": "a\\udfffb"}
