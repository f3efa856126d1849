"""Information-flow rules: which labelled data may reach which tool. Pure.

After the rules allow a `tools/call`, every argument's labels (`provenance.Taint`: precise,
from the results whose values it contains, or coarse, everything the session has seen) are
checked against the policy's `[[flows]]` in order; the first that fires denies (or, in shadow,
is logged and the call forwarded). Declassifications (`[[declassify]]`) and readers (the
parties a result says can already see it) are the explicit, logged exceptions.

The policy's `[[tools]]` declarations say what each tool is (`ToolFacts`): its action class
(else derived from its annotations, see `labels.derived_class`), whether its results are
trusted, their confidentiality (whole and per field), its control and recipient arguments, and
the result fields that name readers. The first declaration matching a tool decides each key.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.labels.masks import (
    CONFIDENTIAL,
    PRIVATE,
    SUSPECT,
    UNTRUSTED,
    ActionClass,
    confidentiality_mask,
    derived_class,
    mask_of,
    names_of,
)
from gateway.labels.provenance import CLEAN, Provenance, Source, Taint
from gateway.policy.engine import Outcome, tool_glob
from gateway.policy.model import Declassification, FlowRule, PolicyFile, ResourceDeclaration, ServerDeclaration, ToolDeclaration
from gateway.protocol.names import normalise

_MEMO_LIMIT: Final = 10_000
#: What a flow rule's label names match: `private` matches private and secret data (either
#: bit: declassifying `private` releases the private bit only, so secret data still matches),
#: `secret` only secret data.
_RULE_BITS: Final = {"untrusted": UNTRUSTED, "private": PRIVATE | 4, "secret": 4, "poisoned-suspect": SUSPECT}


@dataclass(frozen=True, slots=True)
class ToolFacts:
    action: ActionClass
    declared_class: bool
    trusted: bool
    returns: int
    fields: Mapping[str, int]
    trusted_fields: tuple[str, ...]
    control: tuple[str, ...] | None  # None: every argument steers the action
    recipients: tuple[str, ...]
    readers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FlowVerdict:
    """The flow check of one call. `outcome` is `allow`, `deny` or `shadow-deny`; on a denial,
    `rule`, `argument`, `labels` and `source` say which flow fired on what."""

    outcome: Outcome
    rule: str | None = None
    reason: str | None = None
    argument: str | None = None
    labels: tuple[str, ...] = ()
    source: Source | None = None
    exceptions: tuple[str, ...] = ()  # declassification and reader exceptions that were used

    def error_data(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "argument": self.argument,
            "labels": list(self.labels),
            "source": self.source.to_json() if self.source is not None else None,
        }


ALLOWED: Final = FlowVerdict("allow")


def _matcher(patterns: list[str]) -> Callable[[str], bool]:
    compiled = [tool_glob(p) for p in patterns]
    return lambda qualified: any(c.fullmatch(qualified) for c in compiled)


def _rule_mask(names: Sequence[str]) -> int:
    mask = 0
    for name in names:
        mask |= _RULE_BITS[name]
    return mask


@dataclass(frozen=True, slots=True)
class _Flow:
    rule: FlowRule
    mask: int
    classes: frozenset[str]
    tools: Callable[[str], bool]

    def sink(self, qualified: str, action: str) -> bool:
        return action in self.classes or (bool(self.rule.tools) and self.tools(qualified))


@dataclass(frozen=True, slots=True)
class _Declass:
    rule: Declassification
    tools: Callable[[str], bool]
    values: frozenset[str]
    mask: int


@dataclass(slots=True)
class CompiledFlows:
    flows: tuple[_Flow, ...]
    declassify: tuple[_Declass, ...]
    declarations: tuple[tuple[ToolDeclaration, Callable[[str], bool]], ...]
    precise: bool
    cap: int
    min_token: int
    servers: tuple[tuple[ServerDeclaration, Callable[[str], bool]], ...] = ()
    resources: tuple[tuple[ResourceDeclaration, Callable[[str], bool], re.Pattern[str]], ...] = ()
    _facts: dict[tuple[str, str], ToolFacts] = field(default_factory=dict)

    @classmethod
    def from_file(cls, policy: PolicyFile) -> CompiledFlows:
        flows = tuple(_Flow(f, _rule_mask(f.labels), frozenset(f.to), _matcher(f.tools)) for f in policy.flows)
        declassify = tuple(
            _Declass(d, _matcher(d.tools), frozenset(p for v in d.values for p in parties(v)), mask_of(d.labels)) for d in policy.declassify
        )
        declarations = tuple((d, _matcher(d.tools)) for d in policy.tools)
        precise = any(f.mode == "precise" for f in policy.flows)
        servers = tuple((d, _matcher(d.servers)) for d in policy.servers)
        resources = tuple((d, _matcher(d.servers), uri_glob(d.uris)) for d in policy.resources)
        return cls(
            flows, declassify, declarations, precise, policy.labels.max_fingerprints, policy.labels.min_token_length, servers, resources
        )

    def new_provenance(self) -> Provenance:
        return Provenance(cap=self.cap, min_token=self.min_token, precise=self.precise)

    def facts(self, server: str, tool: str, annotations: Any, descriptor_hash: str | None) -> ToolFacts:
        """What the policy (and, where it is silent, the annotations) say about a tool."""
        key = (f"{server}.{tool}", descriptor_hash or "")
        found = self._facts.get(key)
        if found is not None:
            return found
        qualified = normalise(key[0])
        chosen: dict[str, Any] = {}
        for declaration, matches in self.declarations:
            if not matches(qualified):
                continue
            for name in declaration.model_fields_set - {"tools"}:
                chosen.setdefault(name, getattr(declaration, name))
        self._server_defaults(server, chosen)
        declared = chosen.get("class_")
        found = ToolFacts(
            action=declared if declared is not None else derived_class(annotations),
            declared_class=declared is not None,
            trusted=bool(chosen.get("trusted", False)),
            returns=confidentiality_mask(chosen.get("returns")),
            fields={path: confidentiality_mask(level) for path, level in chosen.get("fields", {}).items()},
            trusted_fields=tuple(chosen.get("trusted_fields", ())),
            control=tuple(chosen["control"]) if chosen.get("control") is not None else None,
            recipients=tuple(chosen.get("recipients", ())),
            readers=tuple(chosen.get("readers", ())),
        )
        if len(self._facts) >= _MEMO_LIMIT:
            self._facts.clear()
        self._facts[key] = found
        return found

    def _server_defaults(self, server: str, chosen: dict[str, Any]) -> None:
        """Fill `trusted` and `returns` from the first `[[servers]]` entries that set them."""
        name = normalise(server)
        for declaration, matches in self.servers:
            if matches(name):
                for key in declaration.model_fields_set & {"trusted", "returns"}:
                    chosen.setdefault(key, getattr(declaration, key))

    def source_facts(self, server: str, uri: str | None = None) -> ToolFacts:
        """What the policy says about a message `server` sends that is not a tool's result (a
        resource read at `uri`, a prompt, a completion, a notification, a request)."""
        chosen: dict[str, Any] = {}
        if uri is not None:
            name = normalise(server)
            for declaration, matches, uris in self.resources:
                if matches(name) and uris.fullmatch(uri):
                    for key in declaration.model_fields_set & {"trusted", "returns"}:
                        chosen.setdefault(key, getattr(declaration, key))
        self._server_defaults(server, chosen)
        return ToolFacts(
            action="read",
            declared_class=False,
            trusted=bool(chosen.get("trusted", False)),
            returns=confidentiality_mask(chosen.get("returns")),
            fields={},
            trusted_fields=(),
            control=None,
            recipients=(),
            readers=(),
        )

    def server_class(self, server: str) -> ActionClass | None:
        """The sink class the policy declares for `server` (`[[servers]] class`), if any."""
        name = normalise(server)
        for declaration, matches in self.servers:
            if declaration.class_ is not None and matches(name):
                return declaration.class_
        return None


def uri_glob(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regex for URI globs and templates: `*` any run, `?` one character, `{...}` (an RFC
    6570 expression) any run; case-insensitive (matching more only labels more)."""
    parts = []
    for pattern in patterns:
        out = []
        for piece in re.split(r"(\{[^{}]*\}|\*|\?)", pattern):
            out.append(".*" if piece == "*" or piece.startswith("{") else "." if piece == "?" else re.escape(piece))
        parts.append("".join(out))
    return re.compile("|".join(f"(?:{p})" for p in parts), re.IGNORECASE | re.DOTALL)


def argument_taints(provenance: Provenance, arguments: Mapping[str, Any]) -> dict[str, Taint]:
    """Each argument's precise labels (coarse when the session is saturated)."""
    return {name: provenance.taint(value) for name, value in arguments.items()}


def check_flows(
    flows: CompiledFlows,
    server: str,
    tool: str,
    facts: ToolFacts,
    arguments: Mapping[str, Any],
    taints: Mapping[str, Taint],
    coarse: Taint,
    *,
    policy_shadow: bool,
    data: bool = False,
) -> FlowVerdict:
    """The first flow rule that fires on this call, or ALLOWED. Shadow rules (and a shadow
    policy) are remembered and evaluation goes on, so a trial rule never weakens the policy.
    `data`: the `arguments` are members of a message that is not a tool call's arguments
    (`params._meta.note` of any method, `params.argument.value` of a completion): they steer
    nothing, so rules on control arguments skip them; `tool` is then the method."""
    if not flows.flows:
        return ALLOWED
    qualified = normalise(f"{server}.{tool}")
    released, used = _declassified(flows, qualified, facts, arguments) if not data else (0, [])
    recipients = _recipients(facts, arguments)
    shadowed: FlowVerdict | None = None
    exceptions: list[str] = list(used)
    for flow in flows.flows:
        if not flow.sink(qualified, facts.action) or (data and flow.rule.arguments == "control"):
            continue
        names = list(arguments) if flow.rule.arguments == "any" or facts.control is None else [a for a in facts.control if a in arguments]
        for name in names:
            taint = taints.get(name, CLEAN) if flow.rule.mode == "precise" else coarse
            hit = taint.mask & flow.mask & ~released
            if not hit:
                continue
            if flow.rule.readers_may_receive and not hit & ~CONFIDENTIAL and _readers_see(taint, recipients):
                exceptions.append(f"readers:{flow.rule.id}")
                continue
            verdict = _denial(flow, facts, server, tool, name, hit, taint, policy_shadow, tuple(exceptions), data)
            if verdict.outcome == "deny":
                return verdict
            shadowed = shadowed or verdict
            break
    if shadowed is not None:
        return shadowed
    return FlowVerdict("allow", exceptions=tuple(exceptions)) if exceptions else ALLOWED


def _denial(
    flow: _Flow,
    facts: ToolFacts,
    server: str,
    tool: str,
    argument: str,
    hit: int,
    taint: Taint,
    policy_shadow: bool,
    exceptions: tuple[str, ...],
    data: bool = False,
) -> FlowVerdict:
    culprit = taint.culprit(hit)
    labels = tuple(names_of(hit))
    origin = f" from {culprit.server}.{culprit.tool} (result {culprit.result_hash[:12]} at {culprit.time})" if culprit is not None else ""
    how = "contains a value" if flow.rule.mode == "precise" else "is sent in a session that has seen data"
    article = "an" if facts.action in ("exec", "egress") else "a"
    what = f"{argument} of {tool}" if data else f"argument {argument!r}"
    sink = f"server {server!r} is {article} {facts.action} sink" if data else f"{server}.{tool} is {article} {facts.action} tool"
    reason = f"flow rule {flow.rule.id!r}: {what} {how} labelled {'/'.join(labels)}{origin}; {sink}" + (
        f", and that flow is not allowed ({flow.rule.reason})" if flow.rule.reason else ", and that flow is not allowed"
    )
    shadow = flow.rule.action == "shadow" or policy_shadow
    return FlowVerdict("shadow-deny" if shadow else "deny", flow.rule.id, reason, argument, labels, culprit, exceptions)


def _declassified(flows: CompiledFlows, qualified: str, facts: ToolFacts, arguments: Mapping[str, Any]) -> tuple[int, list[str]]:
    """The labels declassifications release for this call. A declassification applies when its
    argument holds only declassified values and every other recipient the call names (the
    tool's `recipients`) is one too: `to: me` does not release data to a `bcc: attacker`."""
    released = 0
    used = []
    for item in flows.declassify:
        if not item.tools(qualified):
            continue
        value = arguments.get(item.rule.argument)
        values = value if type(value) is list else [value]
        if not values or not all(type(v) is str and parties(v) and parties(v) <= item.values for v in values):
            continue
        others = [a for a in facts.recipients if a != item.rule.argument and arguments.get(a) not in (None, "", [])]
        if any(not _recipients_within(arguments[a], item.values) for a in others):
            continue
        released |= item.mask
        used.append(f"declassify:{item.rule.id}")
    return released, used


def _recipients_within(value: Any, allowed: frozenset[str]) -> bool:
    members = value if type(value) is list else [value]
    return all(type(m) is str and parties(m) <= allowed for m in members)


_SEPARATORS: Final = re.compile(r"[,;\s]+")
_PARTY_SEPARATORS: Final = re.compile(r"[\s,;<>()\[\]\"']+")


def parties(text: str) -> set[str]:
    """The parties a recipient or reader field names: the e-mail addresses in it
    when it has any ('Alice <alice@x.example>' is alice@x.example), else its comma- or
    space-separated words (a user or channel name)."""
    # Not the fingerprint normal form: parties are compared exactly, only lower-cased, so
    # 'busineß.example' is not 'business.example' and a fullwidth address is not the address.
    norm = unicodedata.normalize("NFC", text).lower()
    words = [p for p in _PARTY_SEPARATORS.split(norm) if p]
    found = {w.strip(".:") for w in words if "@" in w}
    return found or set(words)


def _recipients(facts: ToolFacts, arguments: Mapping[str, Any]) -> frozenset[str]:
    out: set[str] = set()
    for name in facts.recipients:
        value = arguments.get(name)
        for member in value if type(value) is list else [value]:
            if type(member) is str:
                out |= parties(member)
            elif member is not None:
                return frozenset({"\x00not-a-recipient"})  # a recipient the gateway cannot read is no reader
    return frozenset(out)


def _readers_see(taint: Taint, recipients: frozenset[str]) -> bool:
    """Every recipient can already see every confidential value the argument contains."""
    return bool(recipients) and bool(taint.reader_sets) and all(recipients <= readers for readers in taint.reader_sets)


def reader_values(structured: Any, paths: tuple[str, ...]) -> frozenset[str]:
    """The parties named in a result's reader fields (dotted paths; strings or lists of
    strings; comma-separated lists split), normalised."""
    out: set[str] = set()
    for path in paths:
        for value in _at(structured, path.split(".")):
            for member in value if type(value) is list else [value]:
                if type(member) is str:
                    out |= parties(member)
    return frozenset(out)


def _at(value: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [value]
    head, rest = parts[0], parts[1:]
    if head == "*":
        members = value if type(value) is list else list(value.values()) if type(value) is dict else []
        return [found for member in members for found in _at(member, rest)]
    if type(value) is dict and head in value:
        return _at(value[head], rest)
    return []
