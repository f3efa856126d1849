"""Sessions as data, re-run: the cassette format and writer (`cassette`) and its redaction
(`redaction`), replay of a cassette through the live relay and mediator against a stand-in
upstream (`replay`, `mock_upstream`) and what it found (`report`), and re-deciding a flight
log under another policy (`fork`, with the rebuilt session and its state machine in `redecide`).

Imports: errors, logs, protocol, evidence, labels, screening, policy, mediation, session.
"""

__all__ = ["cassette", "fork", "mock_upstream", "redaction", "redecide", "replay", "report"]
