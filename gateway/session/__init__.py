"""One client session, independent of the front: the relay that correlates and mediates every
message (`relay`), the hub that puts several upstreams behind one session (`hub`) and what those
upstreams offer (`catalogue`), write-ahead of the flight log around them (`evidence`), and the
one function every front wires a session with (`wiring`).

Imports: errors, protocol, evidence, screening, mediation, upstream.
"""

__all__ = ["catalogue", "evidence", "hub", "relay", "wiring"]
