"""`airlock serve`: the ASGI app and its sessions (`app`), the JSON fast path (`direct`), SSE
resumability (`events`) and the TLS peer identity (`peer`).

Imports: as `gateway.fronts`.
"""

__all__ = ["app", "direct", "events", "peer"]
