"""What the upstreams behind a hub offer: each one's capabilities (from its `initialize`
answer), the resources it listed and its resource templates; from those, the merged `initialize`
answer, listed items as the client sees them, and which upstream a resource URI belongs to. No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import structlog

from gateway import __version__
from gateway.protocol import jsonrpc

SEPARATOR: Final = "__"
HUB_NAME: Final = "mcp-airlock"
_ROUTED_CAPABILITIES: Final = frozenset({"tools", "prompts", "resources", "logging", "completions"})

log = structlog.get_logger("airlock.hub")


class Catalogue:
    def __init__(self, names: Sequence[str]) -> None:
        """`names[i]`: upstream i's server name (its prefix)."""
        self.names = list(names)
        self._capabilities: dict[int, dict[str, Any]] = {}
        self._uris: dict[str, int | None] = {}  # None: listed by several upstreams (ambiguous)
        self._templates: list[tuple[str, int]] = []  # (fixed prefix of a URI template, upstream)

    def offers(self, index: int, capability: str) -> bool:
        """Whether upstream `index` offers `capability` (assumed until it has initialised)."""
        return capability in self._capabilities.get(index, {capability: {}})

    def initialized(self, results: dict[int, dict[str, Any]], requested: Any) -> dict[str, Any]:
        """The hub's `initialize` result from the upstreams' (`results`, by upstream, not empty):
        their capabilities merged (only those the hub can route), instructions under each server's
        name, and the protocol version the client asked for if every upstream agreed, else the
        oldest they answered."""
        capabilities: dict[str, Any] = {}
        instructions: list[str] = []
        versions: set[str] = set()
        for index in sorted(results):
            result = results[index]
            offered = jsonrpc.members(result.get("capabilities"))
            self._capabilities[index] = offered
            for key, value in offered.items():
                if key not in _ROUTED_CAPABILITIES:
                    continue  # e.g. tasks: the hub cannot route them, so it does not offer them
                if type(value) is dict and type(capabilities.get(key)) is dict:
                    capabilities[key] = {**capabilities[key], **{k: v for k, v in value.items() if v or k not in capabilities[key]}}
                else:
                    capabilities.setdefault(key, value)
            if type(result.get("instructions")) is str and result["instructions"]:
                instructions.append(f"## {self.names[index]}\n{result['instructions']}")
            if type(result.get("protocolVersion")) is str:
                versions.add(result["protocolVersion"])
        version = requested if versions == {requested} else min(versions) if versions else requested
        merged: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": {"name": HUB_NAME, "version": __version__},
        }
        if instructions:
            merged["instructions"] = "\n\n".join(instructions)
        return merged

    def exported(self, index: int, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        """A listed item as the client sees it: names prefixed, resource URIs remembered."""
        if kind in ("tools", "prompts") and type(item.get("name")) is str:
            return {**item, "name": f"{self.names[index]}{SEPARATOR}{item['name']}"}
        if kind == "resources" and type(item.get("uri")) is str:
            owner = self._uris.setdefault(item["uri"], index)
            if owner is not None and owner != index:  # two servers claim it: which one answers is not for them to decide
                self._uris[item["uri"]] = None
                log.warning(
                    "two upstreams list the same resource; reads of it are refused",
                    uri=item["uri"][:200],
                    server=self.names[owner],
                    also=self.names[index],
                )
        elif kind == "resourceTemplates" and type(item.get("uriTemplate")) is str:
            prefix = item["uriTemplate"].split("{", 1)[0]
            if prefix and (prefix, index) not in self._templates:
                self._templates.append((prefix, index))
        return item

    def uri_owner(self, uri: object, live: set[int]) -> int | None:
        """The upstream (of `live`) that a resource URI belongs to; None: none, or not one alone."""
        if type(uri) is not str:
            return None
        if uri in self._uris:
            index = self._uris[uri]
            return index if index is not None and index in live else None
        matches = [(len(prefix), i) for prefix, i in self._templates if uri.startswith(prefix)]
        longest = max((n for n, _ in matches), default=0)
        owners = {i for n, i in matches if n == longest}  # the most specific template; two owners: ambiguous
        if not owners:  # not listed (a link in a result, say): fine if only one upstream has resources
            owners = {i for i in live if "resources" in self._capabilities.get(i, {})}
        index = owners.pop() if len(owners) == 1 else None
        return index if index is not None and index in live else None
