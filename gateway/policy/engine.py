"""The compiled policy and `decide`: a pure function of the request, the tool's descriptor as
the gateway saw it, the session's state and the policy. No I/O, no clock, no randomness: the
same inputs always give the same Decision, and concurrent callers share nothing mutable except
a memo of which rules can match a tool name (a cache of a pure function).

Also the two rules the live gateway and `airlock fork` must apply alike: `combine` (a decision
and the flow verdict on the same call) and `server_request_decision` (`[server_requests]`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal

from gateway.policy.constraints import Check
from gateway.policy.model import PolicyFile, Rule, compile_pattern
from gateway.policy.schemacheck import SchemaCheck, schema_check
from gateway.protocol import methods
from gateway.protocol.names import name_problem, normalise
from gateway.screening.scan import Finding

if TYPE_CHECKING:  # flows builds on this module (`Outcome`, `tool_glob`): only its verdict type is needed here
    from gateway.policy.flows import FlowVerdict

Outcome = Literal["allow", "deny", "shadow-deny"]
PinState = Literal["pinned", "changed", "new"]
_RULE_CACHE_LIMIT: Final = 10_000
#: Requests a server sends the client that `[server_requests]` decides, by their setting there.
SERVER_REQUESTS: Final = {methods.SAMPLING: "sampling", methods.ELICITATION: "elicitation"}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: str
    reason: str
    #: Arguments the gateway sets (fixed values), merged into the forwarded call.
    inject: Mapping[str, Any] | None = None

    @property
    def forward(self) -> bool:
        return self.outcome != "deny"


@dataclass(frozen=True, slots=True)
class CallRequest:
    server: str
    tool: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolView:
    """One tool as the gateway saw it listed: its descriptor, hash, pin state and scan findings,
    and the check of its input schema (compiled on first use, once per distinct schema)."""

    server: str
    name: str
    hash: str
    descriptor: Mapping[str, Any]
    pin: PinState
    pinned_hash: str | None = None
    findings: tuple[Finding, ...] = ()
    schema: SchemaCheck | None = None  # None: the tool declares no input schema
    schema_problem: str | None = None  # the inputSchema is not even an object
    properties: frozenset[str] | None = None  # declared argument names; None: the schema declares none

    @classmethod
    def build(
        cls,
        server: str,
        descriptor: Mapping[str, Any],
        digest: str,
        pin: PinState,
        *,
        pinned_hash: str | None = None,
        findings: tuple[Finding, ...] = (),
    ) -> ToolView:
        schema = descriptor.get("inputSchema")
        check, problem, properties = None, None, None
        if type(schema) is dict:
            check = schema_check(schema)
            declared = schema.get("properties")
            if type(declared) is dict:
                properties = frozenset(declared)
        elif schema is not None:
            problem = "the tool's inputSchema is not an object"
        name = descriptor.get("name")
        return cls(server, name if type(name) is str else "", digest, descriptor, pin, pinned_hash, findings, check, problem, properties)


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the session knows that a decision may depend on. `server_blocked`: why every tool
    of the server is blocked (a pinned tool changed and the policy blocks the whole server)."""

    server_blocked: str | None = None


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    index: int
    matchers: tuple[re.Pattern[str], ...]
    checks: tuple[Check, ...]
    fixed: Mapping[str, Any]
    shadow: bool

    @property
    def id(self) -> str:
        return self.rule.id

    def matches(self, qualified: str) -> bool:
        return any(m.fullmatch(qualified) for m in self.matchers)

    def applies_to(self, descriptor: Mapping[str, Any] | None) -> bool:
        """The rule's `annotations` condition on the tool's descriptor (none: always)."""
        wanted = self.rule.annotations
        if not wanted:
            return True
        annotations = descriptor.get("annotations") if descriptor is not None else None
        if type(annotations) is not dict:
            return False
        return all(type(annotations.get(key)) is bool and annotations[key] is value for key, value in wanted.items())

    @property
    def unconditional(self) -> bool:
        """Decides every call of the tools it matches, whatever the arguments."""
        return not self.checks and not self.rule.annotations


def tool_glob(pattern: str) -> re.Pattern[str]:
    """A tool glob as a regex over the normalised qualified name `server.tool` (`*` any run,
    `?` one character, `[` literal). Server identities have no dots, so the first dot splits
    server from tool: wildcards before it never cross it (`*.read` does not match tool `x.read`
    of any server); a pattern without a dot (only `*`) matches every tool of every server."""
    text = normalise(pattern)
    server, dot, tool = text.partition(".")

    def part(glob: str, star: str, one: str) -> str:
        return "".join(star if c == "*" else one if c == "?" else re.escape(c) for c in glob)

    if not dot:
        return re.compile(part(server, ".*", "."), re.DOTALL)
    return re.compile(part(server, "[^.]*", "[^.]") + r"\." + part(tool, ".*", "."), re.DOTALL)


def _literal_server(pattern: str) -> str | None:
    """The server a tool glob names, or None when its server part has a wildcard."""
    server = normalise(pattern).partition(".")[0]
    return None if "*" in server or "?" in server else server


@dataclass(slots=True)
class CompiledPolicy:
    source: PolicyFile
    hash: str
    rules: tuple[CompiledRule, ...]
    shadow: bool
    _candidates: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    _by_server: dict[str, tuple[CompiledRule, ...]] | None = None

    def _server_rules(self, server: str) -> tuple[CompiledRule, ...]:
        """The rules that can match a tool of `server`, in order: those naming it literally and
        those whose server part has a wildcard. Most rules name one server, so a tool is
        matched against a few rules, not all of them."""
        if self._by_server is None:
            named: dict[str, list[CompiledRule]] = {}
            wild: list[CompiledRule] = []
            for rule in self.rules:
                servers = {_literal_server(p) for p in rule.rule.tools}
                if None in servers:
                    wild.append(rule)
                    continue
                for name in servers:
                    named.setdefault(str(name), []).append(rule)
            merged = {name: tuple(sorted([*rules, *wild], key=lambda r: r.index)) for name, rules in named.items()}
            merged[""] = tuple(wild)  # any other server
            self._by_server = merged
        found = self._by_server.get(server)
        return found if found is not None else self._by_server[""]

    @classmethod
    def from_file(cls, policy: PolicyFile) -> CompiledPolicy:
        rules = []
        for index, rule in enumerate(policy.rules):
            checks = []
            fixed = {}
            for name, spec in rule.arguments.items():
                if spec.is_fixed:
                    fixed[name] = spec.fixed
                    continue
                pattern = compile_pattern(spec.pattern) if spec.pattern is not None else None
                validator = SchemaCheck(spec.schema_) if spec.schema_ is not None else None
                checks.append(Check(name, spec, pattern, validator))
            shadow = (rule.mode or policy.mode) == "shadow"
            rules.append(CompiledRule(rule, index, tuple(tool_glob(p) for p in rule.tools), tuple(checks), fixed, shadow))
        compiled = cls(policy, policy.policy_hash(), tuple(rules), policy.mode == "shadow")
        compiled._server_rules("")  # build the server index now, at start-up, not on the first listing
        return compiled

    def with_empty_memo(self) -> CompiledPolicy:
        """The same compiled policy (rules and server index) with an empty candidate memo, as
        a new gateway process has it right after start-up (for benchmarks)."""
        self._server_rules("")  # the index is built at start-up
        return CompiledPolicy(self.source, self.hash, self.rules, self.shadow, {}, self._by_server)

    def candidates(self, qualified: str) -> tuple[CompiledRule, ...]:
        """The rules whose tool patterns match `qualified` (normalised), in order; memoised."""
        found = self._candidates.get(qualified)
        if found is None:
            found = tuple(rule for rule in self._server_rules(qualified.partition(".")[0]) if rule.matches(qualified))
            if len(self._candidates) >= _RULE_CACHE_LIMIT:
                self._candidates.clear()
            self._candidates[qualified] = found
        return found

    def hidden_arguments(self, server: str, tool: str, descriptor: Mapping[str, Any]) -> frozenset[str]:
        """Arguments the first allow rule for this tool fixes: hidden from the listed schema."""
        for rule in self.candidates(normalise(f"{server}.{tool}")):
            if not rule.applies_to(descriptor):
                continue
            if rule.rule.action == "allow":
                return frozenset(rule.fixed)
            if not rule.checks:
                return frozenset()  # an unconditional deny decides first
        return frozenset()

    def hides(self, server: str, tool: str, descriptor: Mapping[str, Any]) -> bool:
        """True when every call of this tool is denied whatever its arguments (a deny rule with
        no argument conditions comes first, or no rule matches and the default is deny): the
        tool is removed from `tools/list`. Shadow rules hide nothing."""
        for rule in self.candidates(normalise(f"{server}.{tool}")):
            if not rule.applies_to(descriptor):
                continue
            if rule.rule.action == "allow":
                return False
            if not rule.checks:
                return not rule.shadow
        return self.source.default == "deny" and not self.shadow


# -- the decision ----------------------------------------------------------------------------------


def _deny(policy: CompiledPolicy, rule: str, reason: str, *, shadow: bool | None = None) -> Decision:
    return Decision("shadow-deny" if (policy.shadow if shadow is None else shadow) else "deny", rule, reason)


def decide(request: CallRequest, tool: ToolView | None, session: SessionState, policy: CompiledPolicy) -> Decision:
    """Decide one `tools/call`. Pure and deterministic. Denials name the rule and say what to
    change; the order of checks is: the name, the session's pin state, the tool's pin and scan
    state, then the rules (first match wins), then the default."""
    name, server = request.tool, request.server
    problem = name_problem(name)
    if problem is not None:
        return _deny(policy, "gateway.tool-name", f"{problem}; the call was not forwarded")
    if session.server_blocked is not None:
        return _deny(policy, "pins.changed", session.server_blocked)
    if tool is None:
        return _deny(
            policy,
            "pins.unknown-tool",
            f"tool {name!r} was not in the tools server {server!r} listed; call tools/list "
            "first (only listed, checked tools can be called)",
        )
    pins = policy.source.pins
    if tool.pin == "changed":
        return _deny(
            policy,
            "pins.changed",
            f"tool {name!r} of server {server!r} changed since it was pinned (pinned "
            f"{(tool.pinned_hash or '')[:12]}, now {tool.hash[:12]}); review with 'airlock pin --diff' and, if the change "
            "is expected, re-pin with 'airlock pin'",
        )
    if tool.pin == "new" and pins.unpinned == "block":
        return _deny(
            policy,
            "pins.unpinned",
            f"tool {name!r} of server {server!r} is not in the lockfile; review it and pin it "
            "with 'airlock pin' (or set [pins] unpinned in the policy)",
        )
    if tool.findings and pins.suspect == "block":
        first = tool.findings[0]
        return _deny(
            policy,
            "scan.poisoned-suspect",
            f"tool {name!r} is poisoned-suspect: {first.reason} in {first.path} "
            f"({first.excerpt!r}); {len(tool.findings)} finding(s) in all",
        )
    decision = _by_rules(request, tool, policy)
    return decision


def _by_rules(request: CallRequest, tool: ToolView, policy: CompiledPolicy) -> Decision:
    """First match wins. A deny rule in shadow mode (in an enforcing policy) never weakens the
    policy: its denial is remembered and evaluation goes on; the call is then denied if the
    enforced rules deny it, and forwarded as `shadow-deny` (naming the shadow rule) if they
    allow it. An allow rule in shadow mode allows its tools and trials its argument constraints:
    a failing constraint is `shadow-deny` (forwarded); the pinned-schema checks still apply."""
    name, server, arguments = request.tool, request.server, request.arguments
    shadowed: Decision | None = None
    decision: Decision | None = None
    for rule in policy.candidates(normalise(f"{server}.{name}")):
        if not rule.applies_to(tool.descriptor):
            continue
        if rule.rule.action == "deny":
            if not all(check.failure(arguments, condition=True) is None for check in rule.checks):
                continue
            denial = _deny(policy, rule.id, rule.rule.reason or f"rule {rule.id!r} denies {server}.{name}", shadow=rule.shadow)
            if denial.outcome == "shadow-deny" and not policy.shadow:
                shadowed = shadowed or denial  # a trial deny: remembered, and the enforced rules still decide
                continue
            decision = denial
            break
        failure = next((f for f in (check.failure(arguments) for check in rule.checks) if f is not None), None)
        if failure is not None:
            # A trial allow rule: the tool is allowed, its argument constraints are only logged.
            decision = _deny(policy, rule.id, f"{failure} (rule {rule.id!r})", shadow=rule.shadow)
        else:
            decision = _checked_allow(policy, rule.id, f"allowed by rule {rule.id!r}", tool, arguments, rule.fixed)
        break
    if decision is None:
        if policy.source.default == "allow":
            decision = _checked_allow(policy, "default.allow", "no rule matched; the policy's default allows", tool, arguments, {})
        else:
            decision = _deny(policy, "default.deny", f"no rule allows {server}.{name}; add an allow rule for it to the policy")
    if shadowed is not None and decision.outcome == "allow":
        return shadowed
    return decision


def _checked_allow(
    policy: CompiledPolicy, rule: str, reason: str, tool: ToolView, arguments: Mapping[str, Any], fixed: Mapping[str, Any]
) -> Decision:
    """The allow, once the arguments fit the tool's pinned schema and no fixed argument was set
    by the caller. These are the gateway's own checks: a rule's trial mode does not relax them,
    only the policy's."""
    for name in fixed:
        if name in arguments:
            return _deny(policy, rule, f"argument {name!r} is set by the gateway and may not be given")
    merged = {**arguments, **fixed} if fixed else arguments
    if tool.schema_problem is not None:
        return _deny(policy, "schema.invalid", f"{tool.schema_problem}; the call cannot be checked")
    if policy.source.extra_arguments == "deny" and tool.properties is not None:
        extra = sorted(set(merged) - tool.properties)
        if extra:
            return _deny(
                policy, "schema.extra-arguments", f"argument(s) {', '.join(map(repr, extra))} are not in the tool's pinned input schema"
            )
    if tool.schema is not None:
        problem = tool.schema.problem(merged)
        if problem is not None and problem == tool.schema.schema_problem():
            return _deny(policy, "schema.invalid", f"{problem}; the call cannot be checked")
        if problem is not None:
            return _deny(policy, "schema.arguments", f"arguments do not match the tool's pinned input schema: {problem}")
    return Decision("allow", rule, reason, dict(fixed) if fixed else None)


def tool_matches(pattern: str, server: str, tool: str) -> bool:
    """Whether a rule's tool glob matches `server.tool` (for lints and tests)."""
    return fnmatch.fnmatchcase(normalise(f"{server}.{tool}"), normalise(pattern).replace("[", "[[]"))


def combine(decision: Decision, verdict: FlowVerdict) -> Decision:
    """The decision on a call from the rules' `decision` and the flow rules' `verdict` on it (the
    flow check runs only on a call the rules forward). A flow denial overrides every forwarding
    decision; a flow `shadow-deny` overrides only an `allow` (a rule's `shadow-deny` keeps
    naming its rule); an allowing verdict leaves the decision as it is. Fixed arguments stay."""
    if verdict.outcome != "allow" and (decision.outcome == "allow" or verdict.outcome == "deny"):
        return Decision(verdict.outcome, verdict.rule or "", verdict.reason or "", decision.inject)
    return decision


def server_request_decision(method: str, server: str, policy: CompiledPolicy) -> Decision | None:
    """How `[server_requests]` decides the request `method` that `server` sends the client
    (sampling, elicitation), or None for a method it does not decide (forwarded as it is)."""
    setting = SERVER_REQUESTS.get(method)
    if setting is None:
        return None
    allowed = getattr(policy.source.server_requests, setting) == "allow"
    reason = f"{method} from server {server!r} is " + (
        "allowed" if allowed else f'denied by the policy (set [server_requests] {setting} = "allow" to let it through)'
    )
    return Decision("allow" if allowed else "deny", f"server-requests.{setting}", reason)
