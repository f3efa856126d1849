"""The descriptor lockfile: what each server showed the model when a human last reviewed it.

Stable, reviewable JSON (sorted keys, two-space indent, one descriptor per entry) so that a
re-pin is a readable diff in code review:

    {"format": "mcp-airlock-lock/1",
     "servers": {"everything": {"instructions": {"hash": ..., "descriptor": "..."},
                                "tools": {"echo": {"hash": ..., "descriptor": {...}}},
                                "prompts": {...}, "resources": {...}, "resourceTemplates": {...}}}}

Servers are keyed by identity (the config's upstream name, `--name`, or the name the server
gives itself in `initialize`), never by command line or path, so moving or upgrading the
command does not orphan the pins. The full descriptor is kept beside its hash so that
`airlock pin --diff` can say which field changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from gateway.errors import ConfigError
from gateway.protocol import jsonrpc
from gateway.screening.descriptors import FieldChange, Sha256Hex, descriptor_hash, diff
from gateway.trusted import read_trusted

LOCK_FORMAT: Final = "mcp-airlock-lock/1"
KINDS: Final = ("instructions", "tools", "prompts", "resources", "resourceTemplates")
PinStatus = Literal["pinned", "changed", "new"]


class LockError(ConfigError):
    """The lockfile cannot be read or is not a lockfile: fail closed (the gateway does not start)."""


@dataclass(frozen=True, slots=True)
class Pin:
    hash: Sha256Hex
    descriptor: Any


@dataclass(slots=True)
class ServerPins:
    """Pins of one server: kind -> item name (or URI) -> pin. Instructions: key "instructions"."""

    items: dict[str, dict[str, Pin]] = field(default_factory=dict)

    def get(self, kind: str, key: str) -> Pin | None:
        return self.items.get(kind, {}).get(key)

    def put(self, kind: str, key: str, descriptor: Any) -> Pin:
        pin = Pin(descriptor_hash(descriptor), descriptor)
        self.items.setdefault(kind, {})[key] = pin
        return pin

    def status(self, kind: str, key: str, digest: str) -> PinStatus:
        pin = self.get(kind, key)
        if pin is None:
            return "new"
        return "pinned" if pin.hash == digest else "changed"

    def names(self, kind: str) -> list[str]:
        return sorted(self.items.get(kind, {}))


@dataclass(slots=True)
class Lock:
    servers: dict[str, ServerPins] = field(default_factory=dict)

    def server(self, identity: str) -> ServerPins:
        return self.servers.setdefault(identity, ServerPins())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": LOCK_FORMAT,
            "servers": {
                identity: {
                    kind: {key: {"hash": pin.hash, "descriptor": pin.descriptor} for key, pin in items.items()}
                    for kind, items in pins.items.items()
                    if items
                }
                for identity, pins in self.servers.items()
            },
        }

    def to_bytes(self) -> bytes:
        """Stable text: the same pins always give the same bytes."""
        return jsonrpc.encode_pretty(self.to_json())

    @classmethod
    def from_json(cls, raw: Any, source: str) -> Lock:
        """Raises LockError naming the path of the first problem."""
        if type(raw) is not dict or raw.get("format") != LOCK_FORMAT:
            raise LockError(f'{source}: not an Airlock lockfile (expected "format": "{LOCK_FORMAT}"); write one with \'airlock pin\'')
        servers = raw.get("servers")
        if type(servers) is not dict:
            raise LockError(f"{source}: servers: expected an object of server identities")
        lock = cls()
        for identity, kinds in servers.items():
            if type(kinds) is not dict:
                raise LockError(f"{source}: servers.{identity}: expected an object of descriptor kinds")
            pins = lock.server(identity)
            for kind, items in kinds.items():
                if kind not in KINDS or type(items) is not dict:
                    raise LockError(f"{source}: servers.{identity}.{kind}: unknown kind (allowed: {', '.join(KINDS)})")
                for key, entry in items.items():
                    where = f"{source}: servers.{identity}.{kind}.{key}"
                    if type(entry) is not dict or set(entry) != {"hash", "descriptor"}:
                        raise LockError(f'{where}: expected {{"hash": ..., "descriptor": ...}}')
                    pin = pins.put(kind, key, entry["descriptor"])
                    if pin.hash != entry["hash"]:
                        raise LockError(f"{where}: the hash does not match the descriptor (edited by hand?); re-pin with 'airlock pin'")
        return lock

    @classmethod
    def load(cls, path: Path) -> Lock:
        data = read_trusted(path, "lockfile (write one with 'airlock pin')", LockError)
        try:
            raw = jsonrpc.decode(data, max_depth=jsonrpc.FILE_DEPTH)  # descriptors, a few levels in
        except Exception:
            raise LockError(f"{path}: the lockfile is not valid JSON; write it again with 'airlock pin'") from None
        return cls.from_json(raw, str(path))

    def save(self, path: Path) -> None:
        """Write atomically (a reader never sees half a lockfile)."""
        directory = path.parent if str(path.parent) else Path(".")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self.to_bytes())
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True, slots=True)
class Change:
    server: str
    kind: str
    key: str
    status: Literal["added", "removed", "changed"]
    fields: tuple[FieldChange, ...] = ()

    def describe(self) -> Iterator[str]:
        yield f"{self.status:8} {self.server} {self.kind} {self.key}"
        for change in self.fields:
            yield f"         {change.describe()}"


def compare(old: Lock, new: Lock) -> list[Change]:
    """What changed from `old` to `new`, item by item and field by field (sorted, stable)."""
    changes = []
    for server in sorted(set(old.servers) | set(new.servers)):
        before = old.servers.get(server, ServerPins())
        after = new.servers.get(server, ServerPins())
        for kind in KINDS:
            a: Mapping[str, Pin] = before.items.get(kind, {})
            b: Mapping[str, Pin] = after.items.get(kind, {})
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    changes.append(Change(server, kind, key, "removed"))
                elif key not in a:
                    changes.append(Change(server, kind, key, "added"))
                elif a[key].hash != b[key].hash:
                    changes.append(Change(server, kind, key, "changed", tuple(diff(a[key].descriptor, b[key].descriptor))))
    return changes
