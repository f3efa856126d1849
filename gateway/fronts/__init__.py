"""The client side of the wire: `airlock run` over stdio (`stdio`), `airlock run --all` (`hub_stdio`)
and `airlock serve` over streamable HTTP and legacy SSE (`http/`).

Imports: errors, logs, protocol, evidence, mediation, upstream, session, recording.
"""

__all__ = ["http", "hub_stdio", "stdio"]
