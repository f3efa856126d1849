"""The policy file: TOML validated by pydantic, unknown keys rejected, every error naming the
file, the key path and what to write instead. See `policies/example.toml` for every feature.

Semantics, in one place:
- `rules` are tried in order; the first rule whose `tools` match the call decides (first match
  wins). Tools are server-qualified globs (`server.tool`, `*` and `?` wildcards), matched after
  NFKC normalisation and case folding of both the pattern and the name.
- `annotations` narrow a rule to tools whose (pinned, reviewed) descriptor carries exactly
  those MCP annotation values, e.g. `{ readOnlyHint = true }`; a tool without the annotation
  does not match.
- An `allow` rule owns the tools it matches: the call is allowed only if every `arguments`
  constraint holds, and denied by that rule (naming the argument) otherwise.
- A `deny` rule's `arguments` are conditions: it denies when all of them hold; when one does not,
  the next rule is tried. Without `arguments` it denies every call of its tools.
- No rule matches: `default` decides, and it is `deny` unless the file says otherwise.
- `mode = "shadow"` (for the whole policy or one rule) decides and logs `shadow-deny`, but
  forwards the call anyway: for trying a policy on real traffic before enforcing it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.evidence.canonical import canonical_json
from gateway.tomlfile import STRICT, read_toml, validate

POLICY_VERSION = 1


class PolicyError(ConfigError):
    """The policy file cannot be read or is invalid: the gateway does not start (fail closed)."""


class _Strict(BaseModel):
    model_config = STRICT | ConfigDict(populate_by_name=True)


SafeInt = Annotated[int, Field(ge=-(2**53 - 1), le=2**53 - 1)]  # exactly representable in the policy hash
JsonScalar = str | SafeInt | Annotated[float, Field(allow_inf_nan=False)] | bool
Number = Annotated[float, Field(allow_inf_nan=False)] | SafeInt
ToolPattern = Annotated[str, Field(min_length=1, max_length=300, pattern=r"^[^\s]+$")]


class ArgumentConstraint(_Strict):
    """Constraints on one argument. All given constraints must hold. An argument a constraint
    names must be present unless `optional = true`."""

    schema_: dict[str, Any] | None = Field(None, alias="schema", description="a JSON Schema (2020-12) the value must satisfy")
    enum: list[JsonScalar] | None = Field(None, min_length=1, description="the value must equal one of these (type and value)")
    prefix: str | None = Field(None, min_length=1, description="a string that must start with this")
    path_prefix: str | None = Field(
        None, pattern=r"^/", description="an absolute path that, once normalised ('..' resolved), must be this directory or below it"
    )
    pattern: str | None = Field(None, min_length=1, description="RE2 syntax (linear time), matched against the whole string")
    max_length: Annotated[int, Field(ge=0)] | None = None
    minimum: Number | None = None
    maximum: Number | None = None
    fixed: Any = Field(None, description="the gateway sets this value and hides the argument from the model (allow rules only)")
    optional: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> ArgumentConstraint:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if "fixed" in self.model_fields_set:
            others = self.model_fields_set - {"fixed"}
            if others:
                raise ValueError(f"a fixed argument takes no other constraint (remove {', '.join(sorted(others))})")
            _reject_non_finite(self.fixed, "fixed")
        return self

    @field_validator("pattern")
    @classmethod
    def _linear_pattern(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            compile_pattern(pattern)
        return pattern

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
            _reject_non_finite(schema, "schema")
        return schema

    @property
    def is_fixed(self) -> bool:
        return "fixed" in self.model_fields_set


class Rule(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="unique; named in denials and the flight log")]
    tools: list[ToolPattern] = Field(min_length=1, description="server-qualified globs: 'server.tool', '*.tool', 'server.*'")
    action: Literal["allow", "deny"]
    mode: Literal["enforce", "shadow"] | None = Field(None, description="overrides the policy's mode for this rule")
    reason: str | None = Field(None, max_length=500, description="told to the client when this rule denies")
    annotations: dict[Literal["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"], bool] = Field(
        default={},
        description="the rule applies only to tools whose pinned descriptor has exactly these annotation values (absent never matches)",
    )
    arguments: dict[str, ArgumentConstraint] = {}

    @model_validator(mode="after")
    def _fixed_only_on_allow(self) -> Rule:
        fixed = [name for name, c in self.arguments.items() if c.is_fixed]
        if fixed and self.action != "allow":
            raise ValueError(f"'fixed' arguments ({', '.join(fixed)}) belong on allow rules: a deny rule injects nothing")
        return self

    @field_validator("tools")
    @classmethod
    def _qualified(cls, tools: list[str]) -> list[str]:
        for pattern in tools:
            if pattern != "*" and "." not in pattern:
                raise ValueError(f"tool pattern {pattern!r} is not server-qualified: write 'SERVER.{pattern}' or '*.{pattern}'")
        return tools


class PinSettings(_Strict):
    unpinned: Literal["block", "allow-and-log", "trust-on-first-use"] = Field(
        default="block", description="a tool the lockfile does not have: block it, allow it (logged), or pin it on first sight"
    )
    changed: Literal["block-tool", "block-server"] = Field(
        default="block-tool", description="a pinned tool that changed: block that tool, or every tool of its server"
    )
    suspect: Literal["block", "allow-and-log"] = Field(default="block", description="a tool the poisoning scan flagged")


LabelName = Literal["untrusted", "private", "secret", "poisoned-suspect"]
ActionClassName = Literal["read", "write", "exec", "egress"]
Confidentiality = Literal["public", "private", "secret"]
FieldPath = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s]+$")]


class ToolDeclaration(_Strict):
    """What the policy knows about some tools: their action class, what their results carry,
    which arguments steer them, and which result fields name parties who can already see it.
    The first declaration matching a tool decides each key it sets."""

    tools: list[ToolPattern] = Field(min_length=1, description="server-qualified globs, as in rules")
    class_: ActionClassName | None = Field(
        None, alias="class", description="read, write, exec or egress; unset: derived from the tool's annotations (never looser)"
    )
    trusted: bool | None = Field(None, description="results of these tools are trusted (default: untrusted)")
    returns: Confidentiality | None = Field(None, description="the confidentiality of the whole result (default: public)")
    fields: dict[FieldPath, Confidentiality] = Field(
        default={}, description="confidentiality per field of structuredContent, as dotted paths ('account.iban'; '*' any member)"
    )
    trusted_fields: list[FieldPath] = Field(
        default=[], description="fields of structuredContent whose values are trusted though the result is not (mail headers)"
    )
    control: list[str] | None = Field(
        None, description="arguments that steer the action (recipient, URL, path, command, amount); unset: every argument"
    )
    recipients: list[str] = Field(default=[], description="arguments naming who receives what is sent (checked against readers)")
    readers: list[FieldPath] = Field(
        default=[], description="result fields naming parties who can already see the result (sender, recipients, sharees)"
    )


ServerPattern = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\s.]+$")]
UriPattern = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^[^\s]+$")]


class ServerDeclaration(_Strict):
    """What the policy knows about whole servers, in one place: what every kind of message they
    send carries (tool results, resources, prompts, completions, notifications, their requests),
    and what class of sink they are for everything a client sends them that is not a tool call's
    arguments (other methods' params, `_meta`, notifications). A `[[tools]]` or `[[resources]]`
    entry that sets a key wins over this for what it matches."""

    servers: list[ServerPattern] = Field(min_length=1, description="server-name globs ('*' any run, '?' one character)")
    class_: ActionClassName | None = Field(
        None,
        alias="class",
        description="the server as a sink for what is not a tool call's arguments; unset: every class of its listed tools "
        "(egress before it listed any)",
    )
    trusted: bool | None = Field(None, description="everything these servers send is trusted (default: untrusted)")
    returns: Confidentiality | None = Field(None, description="the confidentiality of everything these servers send")


class ResourceDeclaration(_Strict):
    """What the results of `resources/read` carry, by URI: globs (`*` any run, `?` one character)
    or URI templates (each `{...}` expression matches any run), matched against the URI read."""

    uris: list[UriPattern] = Field(min_length=1, description="URI globs or templates: 'file:///home/*/.ssh/*', 'bank://accounts/{id}'")
    servers: list[ServerPattern] = Field(default=["*"], description="server-name globs; default every server")
    trusted: bool | None = Field(None, description="the contents are trusted (default: untrusted)")
    returns: Confidentiality | None = Field(None, description="the confidentiality of the contents")


class FlowRule(_Strict):
    """Deny (or shadow) a call when an argument carrying one of `labels` reaches one of the
    sinks: a tool of a class in `to`, a tool matching `tools`, restricted to `arguments`."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    labels: list[LabelName] = Field(min_length=1, description="an argument carrying any of these (private also matches secret)")
    to: list[ActionClassName] = Field(default=[], description="sink classes")
    tools: list[ToolPattern] = Field(default=[], description="sink tools (globs); with `to`, either matches")
    arguments: Literal["any", "control"] = Field(default="any", description="which arguments: any, or only the control arguments")
    mode: Literal["precise", "coarse"] = Field(
        default="precise",
        description="precise: an argument carries the labels of the earlier results it contains; coarse: every argument carries "
        "everything the session has seen",
    )
    action: Literal["deny", "shadow"] = "deny"
    readers_may_receive: bool = Field(
        default=False, description="allow when every recipient of the call can already see the data (see readers and recipients)"
    )
    reason: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _has_sink(self) -> FlowRule:
        if not self.to and not self.tools:
            raise ValueError("a flow rule needs a sink: set 'to' (classes) or 'tools' (globs)")
        return self


class Declassification(_Strict):
    """An explicit exception to the flow rules, logged when used: calls of `tools` whose
    `argument` is one of `values` may receive data with the `labels` named."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
    tools: list[ToolPattern] = Field(min_length=1)
    argument: str = Field(min_length=1)
    values: list[str] = Field(min_length=1, description="exact values (compared after NFKC and casefold)")
    labels: list[LabelName] = Field(min_length=1, description="the labels these calls may receive")
    reason: str | None = Field(None, max_length=500)


class LabelSettings(_Strict):
    max_fingerprints: Annotated[int, Field(ge=100, le=10_000_000)] = Field(
        default=100_000, description="value fingerprints kept per session; beyond it the session's checks turn coarse (logged)"
    )
    min_token_length: Annotated[int, Field(ge=3, le=64)] = Field(
        default=6, description="the shortest identifier-like token (with a digit or one of @/:._-+=) that is fingerprinted"
    )


class ServerRequestSettings(_Strict):
    """Requests an upstream sends to the client. Whatever the setting, their text is labelled
    untrusted, and what the client answers goes to the upstream through the flow rules (the
    upstream is the sink: its class is `egress` unless a [[tools]] entry names
    'SERVER.sampling/createMessage' or 'SERVER.elicitation/create')."""

    sampling: Literal["allow", "deny"] = Field(default="allow", description="sampling/createMessage: the server asks the client's model")
    elicitation: Literal["allow", "deny"] = Field(default="allow", description="elicitation/create: the server asks the user")


class PolicyFile(_Strict):
    version: Literal[1] = Field(description="policy format version; write 1")
    name: str | None = None
    mode: Literal["enforce", "shadow"] = "enforce"
    default: Literal["deny", "allow"] = Field(default="deny", description="what happens when no rule matches")
    extra_arguments: Literal["deny", "allow"] = Field(
        default="deny", description="an argument the tool's pinned schema does not declare: deny the call, or let it through"
    )
    unknown_methods: Literal["refuse", "mediate"] = Field(
        default="refuse",
        description="a method the gateway does not class (a vendor extension): refuse it, or mediate it as an unknown read "
        "(its params through the flow rules as data sent to the server, its result labelled untrusted)",
    )
    pins: PinSettings = PinSettings()
    rules: list[Rule] = []
    labels: LabelSettings = LabelSettings()
    tools: list[ToolDeclaration] = Field(default=[], description="action classes, result labels and control arguments")
    servers: list[ServerDeclaration] = Field(default=[], description="labels of everything a server sends; its class as a sink")
    resources: list[ResourceDeclaration] = Field(default=[], description="labels of resources by URI")
    flows: list[FlowRule] = Field(default=[], description="information-flow rules, checked after the rules allow a call")
    declassify: list[Declassification] = []
    server_requests: ServerRequestSettings = ServerRequestSettings()

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyFile:
        seen: set[str] = set()
        tables: list[tuple[str, list[str]]] = [
            ("rules", [r.id for r in self.rules]),
            ("flows", [f.id for f in self.flows]),
            ("declassify", [d.id for d in self.declassify]),
        ]
        for table, ids in tables:
            for index, rule_id in enumerate(ids):
                if rule_id in seen:
                    raise ValueError(f"{table}[{index}].id: {rule_id!r} is used by an earlier rule; rule ids must be unique")
                seen.add(rule_id)
        return self

    def policy_hash(self) -> str:
        """SHA-256 of the canonical normalised policy: defaults filled in, so two files that
        mean the same thing hash the same; recorded in every flight-log entry."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json", by_alias=True))).hexdigest()


def _reject_non_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError(f"{where}: NaN and infinities are not allowed")
    if type(value) is int and not -(2**53 - 1) <= value <= 2**53 - 1:
        raise ValueError(f"{where}: integers beyond 2**53 are not allowed (the policy hash cannot represent them)")
    if isinstance(value, dict):
        for key, member in value.items():
            _reject_non_finite(member, f"{where}.{key}")
    elif isinstance(value, list):
        for index, member in enumerate(value):
            _reject_non_finite(member, f"{where}[{index}]")


def compile_pattern(pattern: str) -> Any:
    """An RE2 regex (linear-time matching, no backtracking). Raises ValueError with RE2's reason."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the error goes into our message, not onto stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        why = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(f"not a valid RE2 pattern ({why}); RE2 has no backreferences or lookaround") from None


def parse_policy(raw: dict[str, Any], source: str) -> PolicyFile:
    return validate(PolicyFile, raw, source, PolicyError)


def load_policy(path: Path) -> PolicyFile:
    """Raises PolicyError (unreadable, not TOML, or invalid; the message names file and key)."""
    return parse_policy(read_toml(path, "policy file", PolicyError), str(path))


def policy_schema() -> dict[str, Any]:
    """JSON Schema of the policy file, for editors."""
    schema = PolicyFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "MCP Airlock policy"
    return schema
