"""One client session, independent of the front: the relay that correlates and mediates every
message (`relay`), the hub that puts several upstreams behind one session (`hub`), write-ahead
of the flight log around them (`evidence`), and the one function every front wires a session
with (`wiring`).

Imports: errors, protocol, evidence, screening, mediation, upstream.
"""

__all__ = ["evidence", "hub", "relay", "wiring"]
