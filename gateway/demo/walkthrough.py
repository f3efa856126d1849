"""`airlock demo`: start the demo notes server directly and through `airlock run`, drive both
with the real `mcp` client, and print what the gateway changed, in words."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from gateway.evidence.failures import VerificationError
from gateway.evidence.reader import read_entries, table_header, table_row
from gateway.evidence.verify import verify_file
from gateway.labels.masks import META_KEY


def _upstream_argv() -> list[str]:
    return [sys.executable, "-m", "gateway.demo.server"]


def _gateway_argv(log: Path) -> list[str]:
    return [sys.executable, "-m", "gateway", "run", "--log", str(log), "--ephemeral-key", "--", *_upstream_argv()]


def _params(argv: list[str]) -> StdioServerParameters:
    return StdioServerParameters(command=argv[0], args=argv[1:])


def _text(result: Any) -> str:
    return " ".join(getattr(block, "text", "") for block in result.content) or json.dumps(result.structured_content)


async def _walk(errlog: Any, log: Path) -> list[str]:
    out: list[str] = []
    say = out.append
    with anyio.fail_after(60):
        async with Client(_params(_upstream_argv())) as direct:
            direct_tools = [t.name for t in (await direct.list_tools()).tools]
        async with Client(stdio_client(_params(_gateway_argv(log)), errlog=errlog)) as client:
            info = client.server_info
            say(f"1. Connected through the gateway: server {info.name if info else '?'!r}, protocol {client.protocol_version}")
            tools = [t.name for t in (await client.list_tools()).tools]
            hidden = sorted(set(direct_tools) - set(tools))
            say(f"2. tools/list: the server offers {len(direct_tools)} tools; through Airlock the client sees {len(tools)}:")
            say(f"     visible: {', '.join(tools)}")
            say(f"     hidden by the default policy (policies/default.toml allows read-only tools): {', '.join(hidden) or 'none'}")
            result = await client.call_tool("read_note", {"name": "welcome"})
            say(f'3. tools/call read_note {{"name": "welcome"}} -> allowed, relayed unchanged: "{_text(result)}"')
            labels = (result.meta or {}).get(META_KEY, {})
            integrity, confidentiality = labels.get("integrity"), labels.get("confidentiality")
            say(f"     labelled for the client in _meta: integrity {integrity}, confidentiality {confidentiality}")
            try:
                await client.call_tool("delete_all_notes", {})
                say("4. tools/call delete_all_notes -> ALLOWED (this is a bug: please report it)")
            except MCPError as error:
                rule = (error.error.data or {}).get("rule") if isinstance(error.error.data, dict) else None
                say(f"4. tools/call delete_all_notes -> denied by the gateway (JSON-RPC error {error.error.code}, rule {rule})")
                say(f"     the client was told: {error.error.message}")
            notes = await client.call_tool("list_notes", {})
            say(f"5. tools/call list_notes -> the notes are all still there: {_text(notes)}")
    return out


def run_demo() -> int:
    """Print the walkthrough; exit 0 when everything behaved as shown."""
    print("MCP Airlock demo")
    print(f"  upstream: the demo notes server ({' '.join(_upstream_argv()[1:])})")
    print("  gateway:  airlock run --log <tmp>/flight.jsonl --ephemeral-key -- <upstream>   (policy: policies/default.toml)")
    print()
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile("w+") as errlog:
        log = Path(tmp) / "flight.jsonl"
        lines = anyio.run(_walk, errlog, log)
        for line in lines:
            print(line)
        print()
        print("6. The signed flight log, verified offline (airlock verify), then shown (airlock inspect):")
        try:
            report = verify_file(log)
            verified = f"OK: {report.entries} entries, hash-chained, every one signed, sealed on shutdown"
        except VerificationError as error:
            verified = f"FAILED: {error.kind}: {error.message}"
        print(f"     {verified}")
        print("     " + table_header())
        for _, entry in read_entries(log.read_bytes().splitlines()):
            if entry is not None and entry.get("kind") in ("call", "result", "seal"):
                print("     " + table_row(entry))
    return 0 if verified.startswith("OK") and not any("ALLOWED" in line for line in lines) else 1
