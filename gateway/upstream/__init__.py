"""The server side of the wire: one `Upstream` protocol (`interface`) and `open_upstream(spec,
on_output)` over a child process (`child`) or a remote streamable-HTTP/SSE server (`http`), and
`airlock pin`'s listing client (`probe`).

Imports: errors, protocol, screening.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.upstream.child import ChildProcess, ChildSpec
from gateway.upstream.http import HttpSpec, HttpUpstream
from gateway.upstream.interface import Upstream

__all__ = ["ChildSpec", "HttpSpec", "Upstream", "UpstreamSpec", "child", "http", "interface", "open_upstream", "probe"]

#: What names an upstream: a command line to start, or a remote server's URL.
UpstreamSpec = ChildSpec | HttpSpec


def open_upstream(spec: UpstreamSpec, on_output: Callable[[bytes], None]) -> Upstream:
    """The upstream `spec` names, not started yet; `on_output` gets its raw output chunks."""
    if isinstance(spec, HttpSpec):
        return HttpUpstream(spec, on_output)
    return ChildProcess(spec, on_output)
