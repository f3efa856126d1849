"""JSON-RPC and MCP on the wire: envelopes (`jsonrpc`), newline framing under a size limit
(`framing`), open-request tables (`inflight`), MCP method names (`methods`), tool-name rules and
server identities (`names`), and the asyncio pipe plumbing that carries framed lines (`pipes`,
the package's only I/O). Knows no policy, labels or evidence.

Imports: errors.
"""

__all__ = ["framing", "inflight", "jsonrpc", "methods", "names", "pipes"]
