"""Labels: what the gateway knows about where data came from and who may see it.

A label set is a bit mask, so joining two is `|`:
- integrity: `untrusted` set, or not (trusted);
- confidentiality: `private`, and `secret` (which always carries `private` too, so a rule on
  `private` also catches secret data);
- the `poisoned-suspect` flag.

Action classes (`read`, `write`, `exec`, `egress`) say what a tool does with its arguments. The
policy declares them; where it is silent they are derived from the tool's MCP annotations,
conservatively: only a tool that says it is read-only and closed-world is `read`; a read-only
tool that reaches the open world (a fetch) can carry data out in its arguments, so it is
`egress`, as is any other tool not marked closed-world (the MCP default is open-world); a
closed-world tool not marked read-only is `write`. `exec` is never derived: only the policy
knows a tool runs commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal

UNTRUSTED: Final = 1
PRIVATE: Final = 2
SECRET: Final = 4 | PRIVATE
SUSPECT: Final = 8
CONFIDENTIAL: Final = PRIVATE | SECRET

ActionClass = Literal["read", "write", "exec", "egress"]

#: The `_meta` key under which the gateway tells the client a result's labels. Keys of the
#: same namespace in an upstream's `_meta` are forged: they are removed (and logged).
META_NAMESPACE: Final = "dev.mcp-airlock/"
META_KEY: Final = META_NAMESPACE + "labels"

_BITS: Final = {"untrusted": UNTRUSTED, "private": PRIVATE, "secret": SECRET, "poisoned-suspect": SUSPECT}
_CONFIDENTIALITY: Final = {"public": 0, "private": PRIVATE, "secret": SECRET}


def mask_of(names: Iterable[str]) -> int:
    """The mask of label names (`untrusted`, `private`, `secret`, `poisoned-suspect`)."""
    mask = 0
    for name in names:
        mask |= _BITS[name]
    return mask


def confidentiality_mask(level: str | None) -> int:
    return _CONFIDENTIALITY[level] if level is not None else 0


def confidentiality(mask: int) -> str:
    if mask & 4:
        return "secret"
    return "private" if mask & PRIVATE else "public"


def names_of(mask: int) -> list[str]:
    """The label names in `mask`, most specific confidentiality only (`secret`, not both)."""
    out = []
    if mask & UNTRUSTED:
        out.append("untrusted")
    if mask & 4:
        out.append("secret")
    elif mask & PRIVATE:
        out.append("private")
    if mask & SUSPECT:
        out.append("poisoned-suspect")
    return out


def to_meta(mask: int, *, fields: Mapping[str, int] | None = None, source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The labels as the client sees them in `_meta[META_KEY]`."""
    meta: dict[str, Any] = {
        "integrity": "untrusted" if mask & UNTRUSTED else "trusted",
        "confidentiality": confidentiality(mask),
        "flags": ["poisoned-suspect"] if mask & SUSPECT else [],
    }
    if fields:
        meta["fields"] = {path: confidentiality(m) for path, m in fields.items()}
    if source:
        meta["source"] = dict(source)
    return meta


def derived_class(annotations: Any) -> ActionClass:
    """The action class MCP annotations imply, read conservatively (see the module doc)."""
    hints = annotations if type(annotations) is dict else {}
    read_only = hints.get("readOnlyHint") is True
    closed_world = hints.get("openWorldHint") is False
    if read_only and closed_world:
        return "read"
    if not closed_world:
        return "egress"
    return "write"
