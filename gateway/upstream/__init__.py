"""The server side of the wire: one `Upstream` protocol and `open_upstream(spec)` over a child
process (`child`) or a remote streamable-HTTP/SSE server (`http`), and `airlock pin`'s listing
client (`probe`).

Imports: errors, protocol, screening.
"""

__all__ = ["child", "http", "probe"]
