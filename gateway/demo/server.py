"""A demo MCP server (stdio) for `airlock demo`: a notes store with one dangerous tool.

Run it alone with `python -m gateway.demo.server`.
"""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

NOTES = {
    "welcome": "Airlock sits between your MCP client and this server.",
    "groceries": "eggs, flour, coffee",
}

server = MCPServer("airlock-demo-notes", version="1.0", instructions="A tiny notes store used by the Airlock demo.")


@server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
def list_notes() -> list[str]:
    """List the names of all notes."""
    return sorted(NOTES)


@server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
def read_note(name: str) -> str:
    """Read one note by name."""
    if name not in NOTES:
        raise ValueError(f"no note named {name!r}")
    return NOTES[name]


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True))
def send_email(to: str, body: str) -> str:
    """Send an email (the demo only pretends)."""
    return f"pretended to send {len(body)} characters to {to}"


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False))
def delete_all_notes() -> str:
    """Delete every note."""
    count = len(NOTES)
    NOTES.clear()
    return f"deleted {count} notes"


if __name__ == "__main__":
    server.run()
