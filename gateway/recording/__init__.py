"""Sessions as data, re-run: the cassette format and writer (`cassette`) with its `redaction`,
replay of a cassette through the live relay and mediator (`replay`), and re-deciding a flight
log under another policy (`fork`).

Imports: errors, logs, protocol, evidence, labels, screening, policy, mediation, session.
"""

__all__ = ["cassette", "fork", "redaction", "replay"]
