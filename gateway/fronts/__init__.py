"""The client side of the wire: `airlock run` over stdio (`stdio`), `airlock run --all` (`hub_stdio`)
and `airlock serve` over streamable HTTP and legacy SSE (`http/`). Each wires its sessions with
`gateway.session.wiring`; what they share about shutdown is here.

Imports: errors, logs, protocol, evidence, mediation, upstream, session, recording.
"""

from typing import Final

__all__ = ["DRAIN_TIMEOUT", "http", "hub_stdio", "stdio"]

#: After the client's input ends: how long open requests may take to be answered.
DRAIN_TIMEOUT: Final = 5.0
