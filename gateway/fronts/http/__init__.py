"""`airlock serve`: ASGI routing, lifespan and `serve()` (`app`); one MCP session, the `_Router`
of server-to-client messages and the registry of open sessions that owns `max_sessions`
(`session`); the per-principal pools that serve stateless (2026-07-28) requests (`pool`) and
the id mapping that lets their requests share one upstream (`multiplex`); bearer tokens,
authentication, the rate limiter and loopback checks (`auth`); the settings (`settings`); the
JSON fast path (`direct`), SSE resumability (`events`) and the TLS peer identity (`peer`).

Imports: as `gateway.fronts`.
"""

__all__ = ["app", "auth", "direct", "events", "multiplex", "peer", "pool", "session", "settings"]
