"""The compiled policy and `decide`: a pure function of the request, the tool's descriptor as
the gateway saw it, the session's state and the policy. No I/O, no clock, no randomness: the
same inputs always give the same Decision, and concurrent callers share nothing mutable except
a memo of which rules can match a tool name (a cache of a pure function).
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import jsonschema

from gateway import jsonrpc
from gateway.names import name_problem, normalise
from gateway.policy.model import ArgumentConstraint, PolicyFile, Rule, compile_pattern
from gateway.scan import Finding

Outcome = Literal["allow", "deny", "shadow-deny"]
PinState = Literal["pinned", "changed", "new"]
_RULE_CACHE_LIMIT: Final = 10_000


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
    and the compiled validator of its input schema (built once per descriptor hash)."""

    server: str
    name: str
    hash: str
    descriptor: Mapping[str, Any]
    pin: PinState
    pinned_hash: str | None = None
    findings: tuple[Finding, ...] = ()
    validator: Any = None  # a jsonschema validator, or None when the schema could not be compiled
    schema_problem: str | None = None
    properties: frozenset[str] | None = None  # declared argument names; None: the schema declares none

    @classmethod
    def build(cls, server: str, descriptor: Mapping[str, Any], digest: str, pin: PinState, *,
              pinned_hash: str | None = None, findings: tuple[Finding, ...] = ()) -> ToolView:  # fmt: skip
        schema = descriptor.get("inputSchema")
        validator, problem, properties = None, None, None
        if type(schema) is dict:
            try:
                validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
                validator_class.check_schema(schema)
                validator = validator_class(schema)
            except jsonschema.SchemaError as exc:
                problem = f"the tool's input schema is invalid: {exc.message}"
            except jsonschema.exceptions.UnknownType as exc:
                problem = f"the tool's input schema uses an unknown type: {exc.type}"
            declared = schema.get("properties")
            if type(declared) is dict:
                properties = frozenset(declared)
        elif schema is not None:
            problem = "the tool's inputSchema is not an object"
        name = descriptor.get("name")
        return cls(server, name if type(name) is str else "", digest, descriptor, pin, pinned_hash, findings, validator, problem,
                   properties)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the session knows that a decision may depend on. `server_blocked`: why every tool
    of the server is blocked (a pinned tool changed and the policy blocks the whole server)."""

    server_blocked: str | None = None


# -- compiled constraints -------------------------------------------------------------------------


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values by type as well as value (1, 1.0 and true are not the same)."""
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and value == value and value not in (float("inf"), float("-inf"))


@dataclass(frozen=True, slots=True)
class _Check:
    name: str
    spec: ArgumentConstraint
    pattern: Any
    validator: Any

    def failure(self, arguments: Mapping[str, Any]) -> str | None:
        """Why the argument does not satisfy the constraint, or None when it does."""
        spec, name = self.spec, self.name
        if name not in arguments:
            return None if spec.optional else f"argument {name!r} is required"
        value = arguments[name]
        if spec.enum is not None and not any(_json_equal(value, allowed) for allowed in spec.enum):
            return f"argument {name!r} must be one of {jsonrpc.encode(spec.enum).decode()}"
        if spec.minimum is not None or spec.maximum is not None:
            if not _number(value):
                return f"argument {name!r} must be a finite number"
            if spec.minimum is not None and value < spec.minimum:
                return f"argument {name!r} must be at least {spec.minimum}"
            if spec.maximum is not None and value > spec.maximum:
                return f"argument {name!r} must be at most {spec.maximum}"
        if spec.prefix is not None or spec.path_prefix is not None or spec.pattern is not None or spec.max_length is not None:
            if type(value) is not str:
                return f"argument {name!r} must be a string"
            if spec.max_length is not None and len(value) > spec.max_length:
                return f"argument {name!r} is longer than {spec.max_length} characters"
            if spec.prefix is not None and not value.startswith(spec.prefix):
                return f"argument {name!r} must start with {spec.prefix!r}"
            if spec.path_prefix is not None and not _under(value, spec.path_prefix):
                return f"argument {name!r} must be a path under {spec.path_prefix!r}"
            if self.pattern is not None and not _full_match(self.pattern, value):
                return f"argument {name!r} must match the pattern {spec.pattern!r}"
        if self.validator is not None:
            problem = _schema_problem(self.validator, value)
            if problem is not None:
                return f"argument {name!r} does not satisfy the rule's schema: {problem}"
        return None


def _full_match(pattern: Any, value: str) -> bool:
    try:
        return pattern.fullmatch(value) is not None
    except UnicodeEncodeError:  # a lone surrogate: not text any pattern can vouch for
        return False


def _schema_problem(validator: Any, value: Any) -> str | None:
    """The first schema violation, or why the schema could not be applied (an unresolvable
    `$ref`, a number too large for `multipleOf`): either way the value is not shown valid."""
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    except Exception as exc:  # the schema comes from the upstream: any failure denies
        return f"the schema cannot be applied ({type(exc).__name__}: {str(exc)[:200]})"
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{error.message}" + (f" at {where}" if where else "")


def _under(path: str, directory: str) -> bool:
    if "\x00" in path or not path.startswith("/"):
        return False
    resolved = "/" + posixpath.normpath(path).lstrip("/")  # normpath keeps a leading '//', the kernel does not
    base = "/" + posixpath.normpath(directory).lstrip("/")
    return resolved == base or resolved.startswith(base.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    rule: Rule
    index: int
    matchers: tuple[re.Pattern[str], ...]
    checks: tuple[_Check, ...]
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


def _glob(pattern: str) -> re.Pattern[str]:
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


@dataclass(slots=True)
class CompiledPolicy:
    source: PolicyFile
    hash: str
    rules: tuple[CompiledRule, ...]
    shadow: bool
    _candidates: dict[str, tuple[CompiledRule, ...]] = field(default_factory=dict)

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
                validator = jsonschema.Draft202012Validator(spec.schema_) if spec.schema_ is not None else None
                checks.append(_Check(name, spec, pattern, validator))
            shadow = (rule.mode or policy.mode) == "shadow"
            rules.append(CompiledRule(rule, index, tuple(_glob(p) for p in rule.tools), tuple(checks), fixed, shadow))
        return cls(policy, policy.policy_hash(), tuple(rules), policy.mode == "shadow")

    def candidates(self, qualified: str) -> tuple[CompiledRule, ...]:
        """The rules whose tool patterns match `qualified` (normalised), in order; memoised."""
        found = self._candidates.get(qualified)
        if found is None:
            found = tuple(rule for rule in self.rules if rule.matches(qualified))
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
        return _deny(policy, "pins.unknown-tool", f"tool {name!r} was not in the tools server {server!r} listed; call tools/list "
                     "first (only listed, checked tools can be called)")  # fmt: skip
    pins = policy.source.pins
    if tool.pin == "changed":
        return _deny(policy, "pins.changed", f"tool {name!r} of server {server!r} changed since it was pinned (pinned "
                     f"{(tool.pinned_hash or '')[:12]}, now {tool.hash[:12]}); review with 'airlock pin --diff' and, if the change "
                     "is expected, re-pin with 'airlock pin'")  # fmt: skip
    if tool.pin == "new" and pins.unpinned == "block":
        return _deny(policy, "pins.unpinned", f"tool {name!r} of server {server!r} is not in the lockfile; review it and pin it "
                     "with 'airlock pin' (or set [pins] unpinned in the policy)")  # fmt: skip
    if tool.findings and pins.suspect == "block":
        first = tool.findings[0]
        return _deny(policy, "scan.poisoned-suspect", f"tool {name!r} is poisoned-suspect: {first.reason} in {first.path} "
                     f"({first.excerpt!r}); {len(tool.findings)} finding(s) in all")  # fmt: skip
    decision = _by_rules(request, tool, policy)
    return decision


def _by_rules(request: CallRequest, tool: ToolView, policy: CompiledPolicy) -> Decision:
    """First match wins. A rule in shadow mode (in an enforcing policy) never weakens the
    policy: its denial is remembered and evaluation goes on; the call is then denied if the
    enforced rules deny it, and forwarded as `shadow-deny` (naming the shadow rule) if they
    allow it."""
    name, server, arguments = request.tool, request.server, request.arguments
    shadowed: Decision | None = None
    decision: Decision | None = None
    for rule in policy.candidates(normalise(f"{server}.{name}")):
        if not rule.applies_to(tool.descriptor):
            continue
        if rule.rule.action == "deny":
            if all(check.failure(arguments) is None for check in rule.checks):
                decision = _deny(policy, rule.id, rule.rule.reason or f"rule {rule.id!r} denies {server}.{name}", shadow=rule.shadow)
            else:
                continue
        else:
            failure = next((f for f in (check.failure(arguments) for check in rule.checks) if f is not None), None)
            if failure is not None:
                decision = _deny(policy, rule.id, f"{failure} (rule {rule.id!r})", shadow=rule.shadow)
            else:
                decision = _checked_allow(policy, rule.id, f"allowed by rule {rule.id!r}", tool, arguments, rule.fixed, rule.shadow)
        if decision.outcome == "shadow-deny" and not policy.shadow:
            shadowed = shadowed or decision
            decision = None
            continue
        break
    if decision is None:
        if policy.source.default == "allow":
            decision = _checked_allow(policy, "default.allow", "no rule matched; the policy's default allows", tool, arguments, {}, None)
        else:
            decision = _deny(policy, "default.deny", f"no rule allows {server}.{name}; add an allow rule for it to the policy")
    if shadowed is not None and decision.outcome == "allow":
        return shadowed
    return decision


def _checked_allow(policy: CompiledPolicy, rule: str, reason: str, tool: ToolView, arguments: Mapping[str, Any],
                   fixed: Mapping[str, Any], shadow: bool | None) -> Decision:  # fmt: skip
    """The allow, once the arguments fit the tool's pinned schema and no fixed argument was set
    by the caller."""
    for name in fixed:
        if name in arguments:
            return _deny(policy, rule, f"argument {name!r} is set by the gateway and may not be given", shadow=shadow)
    merged = {**arguments, **fixed} if fixed else arguments
    if tool.schema_problem is not None:
        return _deny(policy, "schema.invalid", f"{tool.schema_problem}; the call cannot be checked", shadow=shadow)
    if policy.source.extra_arguments == "deny" and tool.properties is not None:
        extra = sorted(set(merged) - tool.properties)
        if extra:
            return _deny(policy, "schema.extra-arguments", f"argument(s) {', '.join(map(repr, extra))} are not in the tool's "
                         "pinned input schema", shadow=shadow)  # fmt: skip
    if tool.validator is not None:
        problem = _schema_problem(tool.validator, dict(merged))
        if problem is not None:
            return _deny(policy, "schema.arguments", f"arguments do not match the tool's pinned input schema: {problem}", shadow=shadow)
    return Decision("allow", rule, reason, dict(fixed) if fixed else None)


def tool_matches(pattern: str, server: str, tool: str) -> bool:
    """Whether a rule's tool glob matches `server.tool` (for lints and tests)."""
    return fnmatch.fnmatchcase(normalise(f"{server}.{tool}"), normalise(pattern).replace("[", "[[]"))
