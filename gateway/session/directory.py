"""Which upstream of a hub session answers what: the servers' names and prefixes, which of them
are live, their capabilities, the resource URIs and URI templates each listed, and the names the
client sees (`SERVER__NAME`). Pure; `hub` owns one per session.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import structlog

from gateway import __version__
from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.protocol import jsonrpc

SEPARATOR: Final = "__"
HUB_NAME: Final = "mcp-airlock"
#: The capabilities the hub can route to one upstream; the others (tasks) it does not offer.
_ROUTED_CAPABILITIES: Final = frozenset({"tools", "prompts", "resources", "logging", "completions"})

log = structlog.get_logger("airlock.hub")


class Directory:
    """The upstreams of one hub session, by index."""

    def __init__(self, names: Sequence[str]) -> None:
        """Raises ValueError: a name empty, holding the separator, ending in '_', or repeated."""
        for name in names:
            if not name or SEPARATOR in name or name.endswith("_"):
                raise ValueError(f"server name {name!r}: must be non-empty, without {SEPARATOR!r} and not end in '_'")
        if len(set(names)) != len(names):
            raise ValueError("server names must be distinct")
        self.names = list(names)
        self._index = {name: i for i, name in enumerate(names)}
        self.live: set[int] = set(range(len(names)))  # upstreams initialised (or not yet tried)
        self.capabilities: dict[int, dict[str, Any]] = {}
        self._uris: dict[str, int | None] = {}  # None: listed by several upstreams (ambiguous)
        self._templates: list[tuple[str, int]] = []  # (fixed prefix of a URI template, upstream)

    def initialized(self, results: dict[int, Any], errors: dict[int, Any], requested: Any) -> dict[str, Any] | GatewayError:
        """The hub's `initialize` result from the upstreams' (`results` and `errors` by index): their
        routable capabilities and instructions merged, the requested protocol version if every
        upstream agreed to it, else the oldest they chose. An upstream that failed is left out of
        the session; when all failed, the error says why each did."""
        for index, error in errors.items():
            self.live.discard(index)
            log.error("an upstream failed to initialise; it is left out of this session", server=self.names[index], error=str(error)[:300])
        answered = {i: r for i, r in results.items() if type(r) is dict}
        if not answered:
            reasons = "; ".join(f"{self.names[i]}: {str(e)[:200]}" for i, e in sorted(errors.items()))
            return UpstreamUnavailable(f"no upstream server could be initialised ({reasons})")
        capabilities: dict[str, Any] = {}
        instructions: list[str] = []
        versions: set[str] = set()
        for index in sorted(answered):
            result = answered[index]
            offered = jsonrpc.members(result.get("capabilities"))
            self.capabilities[index] = offered
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

    def offering(self, capability: str) -> set[int]:
        """The live upstreams that offer `capability` (all live ones before `initialize`)."""
        return {i for i in self.live if capability in self.capabilities.get(i, {capability: {}})}

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

    def split(self, name: object) -> tuple[int, str] | None:
        """(upstream, its own name) for a client-side `SERVER__NAME`; None: no live upstream has it."""
        if type(name) is not str:
            return None
        server, sep, rest = name.partition(SEPARATOR)
        index = self._index.get(server)
        if not sep or not rest or index is None or index not in self.live:
            return None
        return index, rest

    def owner_of(self, uri: object) -> int | None:
        """The live upstream that listed `uri` (or owns the most specific template that matches it, or
        is the only one with resources); None: none, or ambiguous."""
        if type(uri) is not str:
            return None
        if uri in self._uris:
            index = self._uris[uri]
            return index if index is not None and index in self.live else None
        matches = [(len(prefix), i) for prefix, i in self._templates if uri.startswith(prefix)]
        longest = max((n for n, _ in matches), default=0)
        owners = {i for n, i in matches if n == longest}  # the most specific template; two owners: ambiguous
        if not owners:  # not listed (a link in a result, say): fine if only one upstream has resources
            owners = {i for i in self.live if "resources" in self.capabilities.get(i, {})}
        index = owners.pop() if len(owners) == 1 else None
        return index if index is not None and index in self.live else None
