"""`airlock serve`'s settings, as the command line and the config give them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from gateway.protocol.framing import DEFAULT_MAX_MESSAGE_BYTES
from gateway.upstream import UpstreamSpec

#: SSE events kept per session by default for clients resuming with Last-Event-ID.
DEFAULT_MAX_EVENTS: Final = 1024

DEFAULT_MAX_BODY: Final = 4 * 1024 * 1024
#: A session unused this long (seconds) is closed: clients that walk away without DELETE (crashed
#: ones, the conformance suite) must not hold their places and upstream processes forever.
DEFAULT_IDLE_TIMEOUT: Final = 900.0


@dataclass(frozen=True, slots=True)
class Token:
    id: str
    secret: bytes


@dataclass(frozen=True, slots=True)
class ServeSettings:
    #: A command (each session starts its own child) or a remote server (`--url`: each session
    #: opens its own connection to it).
    upstream: UpstreamSpec
    host: str = "127.0.0.1"
    port: int = 8080
    path: str = "/mcp"
    tokens: tuple[Token, ...] = ()
    allow_unauthenticated: bool = False  # only ever on loopback
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_sessions: int = 100
    #: The legacy (2024-11-05) HTTP+SSE endpoint, e.g. "/sse" (None: off); messages go to /messages/.
    sse_path: str | None = None
    #: Per-token rate limit: requests per second (0: off) and burst.
    rate: float = 0.0
    burst: int = 20
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # set: clients must present a certificate this CA signed (mTLS)
    #: Answer each POST with one JSON body instead of an SSE stream: about half the CPU per call,
    #: but messages sent during a call (progress, sampling, elicitation, logging) have no channel.
    json_responses: bool = False
    #: SSE events kept per session for clients resuming with Last-Event-ID (0: no resumability).
    resume_events: int = DEFAULT_MAX_EVENTS
    #: Seconds a session may go without a request (and with none open) before it is closed with
    #: its upstream (0: never). At the cap, the longest-idle such session is closed first.
    session_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
