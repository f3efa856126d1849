"""One client session, independent of the front: the relay that correlates and mediates every
message (`relay`), and the hub that puts several upstreams behind one session (`hub`, with its
`directory` of which upstream answers what, and the `server_requests` the upstreams make).

Imports: errors, protocol, evidence, screening, mediation, upstream.
"""

__all__ = ["directory", "hub", "relay", "server_requests"]
