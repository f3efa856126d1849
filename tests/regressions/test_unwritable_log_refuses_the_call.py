"""If the flight log cannot take a decision entry (disk full), the call is refused, never
forwarded unrecorded: the README's "fail closed" claim for the log."""

from __future__ import annotations

import os
from pathlib import Path

from gateway import jsonrpc
from gateway.errors import EVIDENCE_UNAVAILABLE
from gateway.flightlog import FlightLog
from gateway.mediation.interface import PassThrough
from gateway.mediation.recording import RecordingMediator
from gateway.relay import Relay
from gateway.signing import generate_key


def test_a_call_whose_decision_cannot_be_logged_is_refused_and_not_forwarded() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    log = FlightLog(fd, Path("/dev/full"), generate_key(), session="s" * 32, policy_hash=None, inline_signing=True)
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    relay = Relay(RecordingMediator(PassThrough(), log, server="x"), to_client.append, to_upstream.append)
    try:
        relay.from_client(jsonrpc.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {}}}))
    finally:
        log.abandon()
    assert to_upstream == []
    reply = jsonrpc.decode(to_client[0])
    assert reply["id"] == 1 and reply["error"]["code"] == EVIDENCE_UNAVAILABLE
