"""`--deny TOOL`: the first policy hook. Denied tools cannot be called and are not listed.

Names are compared after NFKC normalisation and case folding, so a fullwidth or differently
cased spelling of a denied name is denied too.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

from gateway.canonical import canonical_json
from gateway.errors import InvalidParams, PolicyDenied
from gateway.jsonrpc import JsonObject
from gateway.mediation.interface import Forward, Refuse, Verdict
from gateway.receipts import sha256_hex

_FORWARD = Forward()
_LIST_TOOLS = "tools/list"


def normalise_tool_name(name: str) -> str:
    """The form tool names are matched in: NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", name).casefold()


def deny_rule_id(name: str) -> str:
    return f"cli.deny[{name}]"


class ToolDenyList:
    """Refuses `tools/call` of the listed tools and removes them from `tools/list` results."""

    def __init__(self, names: Iterable[str]) -> None:
        self._rules: dict[str, str] = {normalise_tool_name(n): n for n in names}

    def __bool__(self) -> bool:
        return bool(self._rules)

    def policy_hash(self) -> str:
        """SHA-256 of the canonical form of this policy, recorded in every flight-log entry."""
        return sha256_hex(canonical_json({"kind": "cli-deny", "deny": sorted(self._rules)}))

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        if method != "tools/call":
            return _FORWARD
        params = message.get("params")
        name = params.get("name") if type(params) is dict else None
        if type(name) is not str:
            return Refuse(InvalidParams("tools/call needs params.name, a string naming the tool"))
        configured = self._rules.get(normalise_tool_name(name))
        if configured is None:
            return _FORWARD
        return Refuse(
            PolicyDenied(
                deny_rule_id(configured),
                f"tool {name!r} is on the gateway's deny list (remove --deny {configured} to allow it)",
            )
        )

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject:
        if method != _LIST_TOOLS:
            return message
        result = message.get("result")
        if type(result) is not dict or type(result.get("tools")) is not list:
            return message
        tools: list[Any] = result["tools"]
        rules = self._rules
        kept = [
            tool
            for tool in tools
            if not (type(tool) is dict and type(tool.get("name")) is str and normalise_tool_name(tool["name"]) in rules)
        ]
        if len(kept) == len(tools):
            return message
        return {**message, "result": {**result, "tools": kept}}
