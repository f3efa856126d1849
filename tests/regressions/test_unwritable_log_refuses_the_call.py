"""If the flight log cannot take a decision entry (disk full), the call is refused, never
forwarded unrecorded: the README's "fail closed" claim for the log."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.errors import EVIDENCE_UNAVAILABLE
from gateway.evidence.flightlog import FlightLog
from gateway.evidence.signing import generate_key
from gateway.protocol import jsonrpc
from gateway.session.relay import Relay
from tests.unit.helpers import policy_mediator

CALL = jsonrpc.encode({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": {}}})


def test_a_call_whose_decision_cannot_be_logged_is_refused_and_not_forwarded() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)  # every write fails with ENOSPC
    log = FlightLog(fd, Path("/dev/full"), generate_key(), session="s" * 32, policy_hash=None, inline_signing=True)
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    # The policy allows everything and the lockfile pins `t`: only the log stands in the way.
    relay = Relay(policy_mediator(pinned=["t"], server="x", flight_log=log), to_client.append, to_upstream.append)
    try:
        relay.from_client(CALL)
    finally:
        log.abandon()
    assert to_upstream == []
    reply = jsonrpc.decode(to_client[0])
    assert reply["id"] == 1 and reply["error"]["code"] == EVIDENCE_UNAVAILABLE


def test_the_same_call_without_a_flight_log_is_forwarded() -> None:
    # Control for the test above: the refusal there is the log's, not the policy's.
    to_client: list[bytes] = []
    to_upstream: list[bytes] = []
    relay = Relay(policy_mediator(pinned=["t"], server="x"), to_client.append, to_upstream.append)
    relay.from_client(CALL)
    assert to_upstream == [CALL]
    assert to_client == []
