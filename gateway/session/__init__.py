"""One client session, independent of the front: the relay that correlates and mediates every
message (`relay`), the hub that puts several upstreams behind one session (`hub`, with its
`directory` of which upstream answers what and the `server_requests` the upstreams make),
write-ahead of the flight log around them (`evidence`), and the one function every front wires
a session with (`wiring`).

Imports: errors, protocol, evidence, screening, mediation, upstream.
"""

__all__ = ["directory", "evidence", "hub", "relay", "server_requests", "wiring"]
