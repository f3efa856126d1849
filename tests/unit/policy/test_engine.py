"""gateway/policy/engine.py: `decide`, table-driven (one named row per rule feature), the name
bypasses it must deny, determinism, and properties over random tool names.

Every row gives the policy (its TOML-equivalent dict), the tool's descriptor as the gateway saw
it listed, the request's arguments, and the expected outcome and rule id. Rows whose tool
descriptor is None are calls of a tool the server never listed (no ToolView)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.engine import (
    CallRequest,
    CompiledPolicy,
    Decision,
    PinState,
    SessionState,
    ToolView,
    combine,
    decide,
    server_request_decision,
)
from gateway.policy.flows import FlowVerdict
from gateway.policy.model import load_policy, parse_policy
from gateway.protocol.names import name_problem, normalise
from gateway.screening.scan import Finding

POLICIES = Path(__file__).resolve().parents[3] / "policies"
SERVER = "srv"
DIGEST = "a" * 64
PINNED_DIGEST = "b" * 64
#: An input schema that declares no properties: any arguments fit it.
ANY: dict[str, Any] = {"type": "object"}
FINDING = Finding(
    technique="hidden-instruction",
    path="description",
    start=0,
    end=11,
    excerpt="<IMPORTANT>",
    reason="text addressed to the model",
)


def _compile(raw: Mapping[str, Any]) -> CompiledPolicy:
    return CompiledPolicy.from_file(parse_policy({"version": 1, **raw}, "test.toml"))


def allow(rule_id: str, *tools: str, **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "tools": list(tools), "action": "allow", **extra}


def deny(rule_id: str, *tools: str, **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "tools": list(tools), "action": "deny", **extra}


def tool(name: str = "read", schema: Any = ANY, **extra: Any) -> dict[str, Any]:
    """A tool descriptor as a server lists it."""
    return {"name": name, "inputSchema": schema, **extra}


@dataclass(frozen=True)
class Case:
    policy: dict[str, Any]
    descriptor: dict[str, Any] | None  # None: the server never listed the tool
    args: dict[str, Any]
    outcome: str
    rule: str
    tool: str | None = None  # default: the descriptor's name
    server: str = SERVER
    pin: PinState = "pinned"
    findings: tuple[Finding, ...] = ()
    session: SessionState = field(default_factory=SessionState)
    inject: dict[str, Any] | None = None
    says: str = ""  # a fragment the decision's reason must contain


def row(
    row_id: str, policy: dict[str, Any], descriptor: dict[str, Any] | None, args: dict[str, Any], outcome: str, rule: str, **extra: Any
) -> Any:
    return pytest.param(Case(policy, descriptor, args, outcome, rule, **extra), id=row_id)


def _view(case: Case) -> ToolView | None:
    if case.descriptor is None:
        return None
    pinned_hash = PINNED_DIGEST if case.pin == "changed" else None
    return ToolView.build(case.server, case.descriptor, DIGEST, case.pin, pinned_hash=pinned_hash, findings=case.findings)


def _request(case: Case) -> CallRequest:
    name = case.tool if case.tool is not None else (case.descriptor or {}).get("name", "")
    return CallRequest(case.server, name, case.args)


def _decide(case: Case, policy: CompiledPolicy | None = None) -> Decision:
    return decide(_request(case), _view(case), case.session, policy if policy is not None else _compile(case.policy))


def _check(case: Case) -> Decision:
    decision = _decide(case)
    assert (decision.outcome, decision.rule) == (case.outcome, case.rule), decision.reason
    assert decision.forward is (case.outcome != "deny")
    assert (dict(decision.inject) if decision.inject is not None else None) == case.inject
    assert decision.reason
    assert case.says in decision.reason
    return decision


# -- one argument constraint on an allow rule ---------------------------------------------------------


def arg(row_id: str, spec: dict[str, Any], value: Any, allowed: bool, says: str = "") -> Any:
    """Rule 'c' allows srv.call when argument `v` satisfies `spec`; the call passes `value`."""
    policy = {"rules": [allow("c", "srv.call", arguments={"v": spec})]}
    return row(row_id, policy, tool("call"), {"v": value}, "allow" if allowed else "deny", "c", says=says)


ONE_TO_TWENTY = {"minimum": 1, "maximum": 20}
WORKSPACE = {"path_prefix": "/home/me/ws"}
FILTERS = {"schema": {"type": "object", "properties": {"site": {"type": "string", "maxLength": 5}}, "additionalProperties": False}}
READ_ONLY_ALLOWED = {"rules": [allow("ro", "*", annotations={"readOnlyHint": True})]}
NO_DESTRUCTIVE = {"default": "allow", "rules": [deny("no-destructive", "*", annotations={"destructiveHint": True})]}
NO_ETC_WRITES = {"default": "allow", "rules": [deny("no-etc", "srv.write", arguments={"path": {"path_prefix": "/etc"}})]}
SEARCH = {"rules": [allow("search", "srv.search", arguments={"region": {"fixed": "eu"}, "q": {"max_length": 50}})]}
SEARCH_SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "region": {"type": "string"}}}
DECLARED = {"type": "object", "properties": {"a": {"type": "integer"}}}
TYPED = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}

# fmt: off
TABLE = [
    # first match wins
    row("first-match-deny-before-allow", {"rules": [deny("d", "srv.read"), allow("a", "srv.read")]}, tool(), {}, "deny", "d"),
    row("first-match-allow-before-deny", {"rules": [allow("a", "srv.read"), deny("d", "srv.*")]}, tool(), {}, "allow", "a"),
    row("first-match-skips-rules-for-other-tools", {"rules": [deny("d", "srv.write"), allow("a", "srv.read")]}, tool(), {}, "allow", "a"),
    row("first-match-of-several-patterns-in-one-rule", {"rules": [allow("a", "srv.x", "srv.read")]}, tool(), {}, "allow", "a"),
    # the default
    row("default-deny-when-unspecified", {}, tool(), {}, "deny", "default.deny", says="srv.read"),
    row("default-deny-explicit", {"default": "deny", "rules": [allow("a", "srv.other")]}, tool(), {}, "deny", "default.deny"),
    row("default-allow-explicit", {"default": "allow", "rules": [deny("d", "srv.other")]}, tool(), {}, "allow", "default.allow"),
    # server-qualified globs
    row("glob-server-star", {"rules": [allow("a", "srv.*")]}, tool("anything"), {}, "allow", "a"),
    row("glob-server-star-not-another-server", {"rules": [allow("a", "srv.*")]}, tool(), {}, "deny", "default.deny", server="srv2"),
    row("glob-star-tool", {"default": "allow", "rules": [deny("d", "*.delete")]}, tool("delete"), {}, "deny", "d"),
    row("glob-star-tool-full-match-only", {"default": "allow", "rules": [deny("d", "*.delete")]}, tool("delete_all"), {}, "allow",
        "default.allow"),
    row("glob-question-mark-one-char", {"rules": [allow("a", "srv.read?")]}, tool("read1"), {}, "allow", "a"),
    row("glob-question-mark-not-two-chars", {"rules": [allow("a", "srv.read?")]}, tool("read12"), {}, "deny", "default.deny"),
    row("glob-question-mark-not-zero-chars", {"rules": [allow("a", "srv.read?")]}, tool("read"), {}, "deny", "default.deny"),
    row("glob-star-alone-matches-every-tool", {"rules": [allow("a", "*")]}, tool("x"), {}, "allow", "a", server="any"),
    row("glob-pattern-case-folded", {"rules": [allow("a", "SRV.Read")]}, tool(), {}, "allow", "a"),
    row("glob-name-of-128-characters", {"default": "allow", "rules": [deny("d", "srv.d*")]}, tool("d" * 128), {}, "deny", "d"),
    # an allow rule owns its tools
    row("allow-constraint-holds", {"rules": [allow("a", "srv.read", arguments={"path": WORKSPACE})]}, tool(), {"path": "/home/me/ws/x"},
        "allow", "a"),
    row("allow-constraint-fails-denied-by-that-rule", {"default": "allow", "rules": [allow("a", "srv.read", arguments={"path": WORKSPACE}),
        allow("later", "srv.read")]}, tool(), {"path": "/etc/passwd"}, "deny", "a", says="'path'"),
    # deny rules with argument conditions
    row("deny-condition-holds", NO_ETC_WRITES, tool("write"), {"path": "/etc/passwd"}, "deny", "no-etc"),
    row("deny-condition-holds-after-normalising", NO_ETC_WRITES, tool("write"), {"path": "/tmp/../etc/passwd"}, "deny", "no-etc"),
    row("deny-condition-fails-falls-through-to-default", NO_ETC_WRITES, tool("write"), {"path": "/tmp/x"}, "allow", "default.allow"),
    row("deny-condition-fails-falls-through-to-next-rule", {"rules": [*NO_ETC_WRITES["rules"], allow("w", "srv.write")]}, tool("write"),
        {"path": "/tmp/x"}, "allow", "w"),
    row("deny-conditions-all-must-hold", {"default": "allow", "rules": [deny("d", "srv.write", arguments={
        "path": {"path_prefix": "/etc"}, "mode": {"enum": ["w"]}})]}, tool("write"), {"path": "/etc/x", "mode": "r"}, "allow",
        "default.allow"),
    row("deny-conditions-all-hold", {"default": "allow", "rules": [deny("d", "srv.write", arguments={
        "path": {"path_prefix": "/etc"}, "mode": {"enum": ["w"]}})]}, tool("write"), {"path": "/etc/x", "mode": "w"}, "deny", "d"),
    row("deny-without-conditions-denies-every-call", {"default": "allow", "rules": [deny("d", "srv.write", reason="never")]}, tool("write"),
        {"anything": 1}, "deny", "d", says="never"),
    # enum: type and value
    arg("enum-int-matches-int", {"enum": [1]}, 1, True),
    arg("enum-int-rejects-true", {"enum": [1]}, True, False, says="one of [1]"),
    arg("enum-int-rejects-string", {"enum": [1]}, "1", False),
    arg("enum-true-rejects-int", {"enum": [True]}, 1, False),
    arg("enum-true-matches-true", {"enum": [True]}, True, True),
    arg("enum-string-rejects-int", {"enum": ["1"]}, 1, False),
    arg("enum-int-matches-equal-json-number", {"enum": [1]}, 1.0, True),
    arg("enum-rejects-null", {"enum": ["a"]}, None, False),
    # prefix
    arg("prefix-holds", {"prefix": "https://example.com/"}, "https://example.com/a", True),
    arg("prefix-lookalike-host", {"prefix": "https://example.com/"}, "https://example.com.evil/", False, says="must start with"),
    arg("prefix-non-string", {"prefix": "1"}, 12, False, says="must be a string"),
    # path_prefix
    arg("path-inside", WORKSPACE, "/home/me/ws/src/a.py", True),
    arg("path-the-directory-itself", WORKSPACE, "/home/me/ws", True),
    arg("path-the-directory-with-slash", WORKSPACE, "/home/me/ws/", True),
    arg("path-sibling-with-same-prefix", WORKSPACE, "/home/me/wsx/a", False, says="must be a path under"),
    arg("path-dotdot-traversal-out", WORKSPACE, "/home/me/ws/../.ssh/id_rsa", False),
    arg("path-dotdot-traversal-to-root", WORKSPACE, "/home/me/ws/../../../../etc/passwd", False),
    arg("path-dotdot-staying-inside", WORKSPACE, "/home/me/ws/a/../b", True),
    arg("path-nul-byte", WORKSPACE, "/home/me/ws/a\x00/../../.ssh", False),
    arg("path-nul-byte-at-end", WORKSPACE, "/home/me/ws/a\x00", False),
    arg("path-relative", WORKSPACE, "home/me/ws/a", False),
    arg("path-relative-dot", WORKSPACE, "./a", False),
    arg("path-double-leading-slash-fails-closed", WORKSPACE, "//home/me/ws/a", False),
    arg("path-non-string", WORKSPACE, ["/home/me/ws"], False),
    # RE2 pattern, whole-string match
    arg("pattern-full-match", {"pattern": "[a-z]+"}, "abc", True),
    arg("pattern-no-prefix-match", {"pattern": "[a-z]+"}, "abc1", False, says="must match the pattern"),
    arg("pattern-no-search", {"pattern": "[a-z]+"}, "1abc", False),
    arg("pattern-alternation-whole", {"pattern": "a|ab"}, "ab", True),
    arg("pattern-dollar-not-before-newline", {"pattern": "[a-z]+$"}, "abc\n", False),
    arg("pattern-unicode-class", {"pattern": "[\\p{L} ]{1,10}"}, "héllo wörld"[:10], True),
    arg("pattern-pathological-input-answered", {"pattern": "(a+)+b"}, "a" * 100_000 + "!", False),
    arg("pattern-pathological-pattern-still-matches", {"pattern": "(a+)+b"}, "a" * 1000 + "b", True),
    arg("pattern-non-string", {"pattern": "[0-9]+"}, 123, False, says="must be a string"),
    # numeric ranges
    arg("range-minimum-inclusive", ONE_TO_TWENTY, 1, True),
    arg("range-maximum-inclusive", ONE_TO_TWENTY, 20, True),
    arg("range-float-inside", ONE_TO_TWENTY, 1.0, True),
    arg("range-below", ONE_TO_TWENTY, 0, False, says="at least 1"),
    arg("range-above", ONE_TO_TWENTY, 21, False, says="at most 20"),
    arg("range-next-float-above-maximum", ONE_TO_TWENTY, math.nextafter(20, math.inf), False),
    arg("range-next-float-below-minimum", ONE_TO_TWENTY, math.nextafter(1, 0), False),
    arg("range-largest-float", ONE_TO_TWENTY, 1.7976931348623157e308, False),
    arg("range-huge-int", ONE_TO_TWENTY, 10**400, False, says="at most 20"),
    arg("range-huge-negative-int", ONE_TO_TWENTY, -(10**400), False, says="at least 1"),
    arg("range-huge-int-with-minimum-only", {"minimum": 0}, 10**400, True),
    arg("range-huge-int-against-float-bound", {"maximum": 1.5}, 10**400, False),
    arg("range-negative-zero-at-minimum-zero", {"minimum": 0}, -0.0, True),
    arg("range-smallest-subnormal-above-zero", {"minimum": 0, "maximum": 0}, 5e-324, False),
    arg("range-bool-true-is-not-a-number", ONE_TO_TWENTY, True, False, says="finite number"),
    arg("range-bool-false-is-not-a-number", {"minimum": 0}, False, False),
    arg("range-string-is-not-a-number", ONE_TO_TWENTY, "5", False),
    arg("range-nan-is-not-a-finite-number", ONE_TO_TWENTY, math.nan, False),
    arg("range-infinity-is-not-a-finite-number", {"minimum": 0}, math.inf, False),
    # max_length
    arg("max-length-at-limit", {"max_length": 3}, "abc", True),
    arg("max-length-over", {"max_length": 3}, "abcd", False, says="longer than 3"),
    arg("max-length-zero-empty", {"max_length": 0}, "", True),
    arg("max-length-counts-characters", {"max_length": 3}, "𝐝𝐝𝐝", True),
    arg("max-length-non-string", {"max_length": 3}, 1, False),
    # a JSON Schema fragment
    arg("schema-fragment-holds", FILTERS, {"site": "a.com"}, True),
    arg("schema-fragment-too-long", FILTERS, {"site": "example.com"}, False, says="rule's schema"),
    arg("schema-fragment-extra-property", FILTERS, {"x": 1}, False),
    arg("schema-fragment-wrong-type", FILTERS, "a.com", False),
    # optional vs missing
    row("missing-required-argument", {"rules": [allow("c", "srv.call", arguments={"v": {"enum": ["a"]}})]}, tool("call"), {}, "deny", "c",
        says="'v' is required"),
    row("missing-optional-argument", {"rules": [allow("c", "srv.call", arguments={"v": {"enum": ["a"], "optional": True}})]}, tool("call"),
        {}, "allow", "c"),
    row("present-optional-argument-still-checked", {"rules": [allow("c", "srv.call", arguments={"v": {"enum": ["a"], "optional": True}})]},
        tool("call"), {"v": "b"}, "deny", "c"),
    row("present-optional-argument-null-still-checked", {"rules": [allow("c", "srv.call", arguments={"v": {"enum": ["a"],
        "optional": True}})]}, tool("call"), {"v": None}, "deny", "c"),
    # fixed values
    row("fixed-injected", SEARCH, tool("search", SEARCH_SCHEMA), {"q": "mcp"}, "allow", "search", inject={"region": "eu"}),
    row("fixed-set-by-caller-denied", SEARCH, tool("search", SEARCH_SCHEMA), {"q": "mcp", "region": "us"}, "deny", "search",
        says="'region' is set by the gateway"),
    row("fixed-set-by-caller-to-same-value-denied", SEARCH, tool("search", SEARCH_SCHEMA), {"q": "mcp", "region": "eu"}, "deny", "search"),
    row("fixed-value-checked-against-pinned-schema", SEARCH, tool("search", {"type": "object", "properties": {
        "q": {"type": "string"}, "region": {"enum": ["us"]}}}), {"q": "x"}, "deny", "schema.arguments", says="region"),
    row("fixed-value-the-pinned-schema-does-not-declare", SEARCH, tool("search", {"type": "object", "properties": {"q": {}}}), {"q": "x"},
        "deny", "schema.extra-arguments", says="'region'"),
    # extra arguments
    row("extra-arguments-denied-by-default", {"default": "allow"}, tool("call", DECLARED), {"a": 1, "b": 2}, "deny",
        "schema.extra-arguments", says="'b'"),
    row("extra-arguments-denied-explicitly", {"default": "allow", "extra_arguments": "deny"}, tool("call", DECLARED), {"b": 2}, "deny",
        "schema.extra-arguments"),
    row("extra-arguments-allowed", {"default": "allow", "extra_arguments": "allow"}, tool("call", DECLARED), {"a": 1, "b": 2}, "allow",
        "default.allow"),
    row("extra-arguments-none-declared-by-schema", {"default": "allow"}, tool("call", ANY), {"b": 2}, "allow", "default.allow"),
    row("extra-arguments-after-an-allow-rule", {"rules": [allow("a", "srv.call")]}, tool("call", DECLARED), {"b": 2}, "deny",
        "schema.extra-arguments"),
    # the pinned input schema
    row("schema-arguments-wrong-type", {"default": "allow"}, tool("call", TYPED), {"n": "x"}, "deny", "schema.arguments", says="at n"),
    row("schema-arguments-missing-required", {"default": "allow"}, tool("call", TYPED), {}, "deny", "schema.arguments"),
    row("schema-arguments-bool-is-not-integer", {"default": "allow"}, tool("call", TYPED), {"n": True}, "deny", "schema.arguments"),
    row("schema-arguments-fit", {"default": "allow"}, tool("call", TYPED), {"n": 10**400}, "allow", "default.allow"),
    row("schema-invalid", {"default": "allow"}, tool("call", {"type": "objekt"}), {}, "deny", "schema.invalid", says="cannot be checked"),
    row("schema-invalid-not-an-object", {"default": "allow"}, tool("call", "object"), {}, "deny", "schema.invalid"),
    row("schema-invalid-after-an-allow-rule", {"rules": [allow("a", "srv.call")]}, tool("call", {"type": 5}), {}, "deny", "schema.invalid"),
    row("schema-invalid-a-deny-rule-decides-first", {"rules": [deny("d", "srv.call")]}, tool("call", {"type": "objekt"}), {}, "deny", "d"),
    # annotations
    row("annotation-matches", READ_ONLY_ALLOWED, tool(annotations={"readOnlyHint": True}), {}, "allow", "ro"),
    row("annotation-other-value", READ_ONLY_ALLOWED, tool(annotations={"readOnlyHint": False}), {}, "deny", "default.deny"),
    row("annotation-missing-never-matches", READ_ONLY_ALLOWED, tool(annotations={"destructiveHint": False}), {}, "deny", "default.deny"),
    row("annotations-missing-never-match", READ_ONLY_ALLOWED, tool(), {}, "deny", "default.deny"),
    row("annotation-string-true-is-not-true", READ_ONLY_ALLOWED, tool(annotations={"readOnlyHint": "true"}), {}, "deny", "default.deny"),
    row("annotation-one-is-not-true", READ_ONLY_ALLOWED, tool(annotations={"readOnlyHint": 1}), {}, "deny", "default.deny"),
    row("annotations-not-an-object", READ_ONLY_ALLOWED, tool(annotations=[["readOnlyHint", True]]), {}, "deny", "default.deny"),
    row("annotations-all-must-match", {"rules": [allow("ro", "*", annotations={"readOnlyHint": True, "openWorldHint": False})]},
        tool(annotations={"readOnlyHint": True, "openWorldHint": True}), {}, "deny", "default.deny"),
    row("annotation-deny-rule-matches", NO_DESTRUCTIVE, tool(annotations={"destructiveHint": True}), {}, "deny", "no-destructive"),
    row("annotation-deny-rule-missing-falls-through", NO_DESTRUCTIVE, tool(), {}, "allow", "default.allow"),
    # shadow mode
    row("shadow-policy-default-deny", {"mode": "shadow"}, tool(), {}, "shadow-deny", "default.deny"),
    row("shadow-policy-deny-rule", {"mode": "shadow", "rules": [deny("d", "srv.read")]}, tool(), {}, "shadow-deny", "d"),
    row("shadow-policy-allow-still-allows", {"mode": "shadow", "rules": [allow("a", "srv.read")]}, tool(), {}, "allow", "a"),
    row("shadow-policy-rule-in-enforce-mode", {"mode": "shadow", "rules": [deny("d", "srv.read", mode="enforce")]}, tool(), {}, "deny",
        "d"),
    row("shadow-rule-deny", {"default": "allow", "rules": [deny("d", "srv.read", mode="shadow")]}, tool(), {}, "shadow-deny", "d"),
    row("shadow-rule-allow-constraint-fails", {"rules": [allow("a", "srv.read", mode="shadow", arguments={"n": {"maximum": 1}})]}, tool(),
        {"n": 2}, "shadow-deny", "a"),
    row("shadow-policy-pins-changed", {"mode": "shadow", "default": "allow"}, tool(), {}, "shadow-deny", "pins.changed", pin="changed"),
    # pins
    row("pin-pinned-decided-by-rules", {"rules": [allow("a", "srv.read")]}, tool(), {}, "allow", "a"),
    row("pin-changed", {"default": "allow"}, tool(), {}, "deny", "pins.changed", pin="changed", says="airlock pin --diff"),
    row("pin-changed-before-an-allow-rule", {"rules": [allow("a", "srv.read")]}, tool(), {}, "deny", "pins.changed", pin="changed"),
    row("pin-new-unpinned-block", {"default": "allow", "pins": {"unpinned": "block"}}, tool(), {}, "deny", "pins.unpinned", pin="new"),
    row("pin-new-blocked-by-default", {"default": "allow"}, tool(), {}, "deny", "pins.unpinned", pin="new"),
    row("pin-new-allow-and-log", {"default": "allow", "pins": {"unpinned": "allow-and-log"}}, tool(), {}, "allow", "default.allow",
        pin="new"),
    row("pin-new-allow-and-log-rules-still-apply", {"pins": {"unpinned": "allow-and-log"}, "rules": [deny("d", "srv.read")]}, tool(), {},
        "deny", "d", pin="new"),
    row("pin-new-trust-on-first-use", {"pins": {"unpinned": "trust-on-first-use"}, "rules": [allow("a", "srv.read")]}, tool(), {}, "allow",
        "a", pin="new"),
    # scan findings
    row("scan-suspect-blocked", {"default": "allow", "pins": {"suspect": "block"}}, tool(), {}, "deny", "scan.poisoned-suspect",
        findings=(FINDING,), says="<IMPORTANT>"),
    row("scan-suspect-blocked-by-default", {"rules": [allow("a", "srv.read")]}, tool(), {}, "deny", "scan.poisoned-suspect",
        findings=(FINDING, FINDING), says="2 finding(s)"),
    row("scan-suspect-allow-and-log", {"pins": {"suspect": "allow-and-log"}, "rules": [allow("a", "srv.read")]}, tool(), {}, "allow", "a",
        findings=(FINDING,)),
    # the session and unknown tools
    row("session-server-blocked", {"default": "allow"}, tool(), {}, "deny", "pins.changed",
        session=SessionState(server_blocked="server 'srv' changed tool 'x'"), says="changed tool 'x'"),
    row("unknown-tool", {"default": "allow"}, None, {}, "deny", "pins.unknown-tool", tool="read", says="tools/list"),
    row("unknown-tool-even-if-a-rule-allows-it", {"rules": [allow("a", "srv.read")]}, None, {}, "deny", "pins.unknown-tool", tool="read"),
    row("bad-name-checked-before-unknown-tool", {"default": "allow"}, None, {}, "deny", "gateway.tool-name", tool="re\u200bad"),
]
# fmt: on


@pytest.mark.parametrize("case", TABLE)
def test_each_rule_feature_decides_as_its_row_says(case: Case) -> None:
    _check(case)


# -- bypasses: every one of these is a denial ----------------------------------------------------------

NO_DELETE = {"default": "allow", "rules": [deny("no-delete", "srv.delete")]}


def bypass(row_id: str, name: str, rule: str = "gateway.tool-name", policy: dict[str, Any] = NO_DELETE, **extra: Any) -> Any:
    return row(row_id, policy, tool(name), {}, "deny", rule, **extra)


# fmt: off
BYPASSES = [
    bypass("fullwidth-homoglyph", "ｄｅｌｅｔｅ", says="FULLWIDTH LATIN SMALL LETTER D"),
    bypass("math-alphanumeric-homoglyph", "𝐝𝐞𝐥𝐞𝐭𝐞"),
    bypass("cyrillic-ie-lookalike", "d\u0435lete", says="CYRILLIC"),
    bypass("zero-width-space-split", "del\u200bete", says="invisible character U+200B"),
    bypass("zero-width-joiner-split", "del\u200dete"),
    bypass("soft-hyphen-split", "del\u00adete"),
    bypass("bidi-override", "\u202eetelede", says="bidi control U+202E"),
    bypass("bidi-isolate", "delete\u2066"),
    bypass("unicode-tag-characters", "delete\U000e0041\U000e0042", says="U+E0041"),
    bypass("combining-accent", "de\u0301lete"),
    bypass("nul-byte", "delete\x00"),
    bypass("trailing-newline", "delete\n"),
    bypass("inner-space", "del ete"),
    bypass("longer-than-128-characters", "delete" + "e" * 123, says="129 characters"),
    bypass("empty-name", "", says="empty"),
    bypass("case-upper", "DELETE", rule="no-delete"),
    bypass("case-mixed", "DeLeTe", rule="no-delete"),
    bypass("second-server-does-not-inherit-an-allow", "read", "default.deny", {"rules": [allow("a-read", "a.read")]}, server="b"),
    bypass("second-server-not-matched-by-another-servers-glob", "read", "default.deny", {"rules": [allow("a-all", "a.*")]}, server="b"),
    # Server identities have no dots, so the first dot splits server from tool: server 'a''s tool
    # 'b.evil' is 'a.b.evil', which server b's glob cannot reach.
    bypass("dotted-tool-name-not-another-servers", "b.evil", rule="default.deny", policy={"rules": [allow("b-all", "b.*")]},
           server="a"),
]
# fmt: on


@pytest.mark.parametrize("case", BYPASSES)
def test_a_disguised_or_out_of_place_tool_name_is_denied(case: Case) -> None:
    decision = _check(case)
    assert decision.outcome == "deny"
    assert decision.forward is False


# -- determinism --------------------------------------------------------------------------------


def test_the_same_inputs_give_equal_decisions_every_time() -> None:
    for param in [*TABLE, *BYPASSES]:
        case: Case = param.values[0]
        policy = _compile(case.policy)
        view = _view(case)
        first = decide(_request(case), view, case.session, policy)
        again = decide(_request(case), view, case.session, policy)  # the rule memo is now warm
        fresh = _decide(case)  # a separately compiled policy and view
        assert first == again == fresh, param.id


def test_deciding_does_not_change_the_inputs() -> None:
    policy = _compile(SEARCH)
    arguments = {"q": "mcp"}
    descriptor = tool("search", SEARCH_SCHEMA)
    decision = decide(
        CallRequest(SERVER, "search", arguments), ToolView.build(SERVER, descriptor, DIGEST, "pinned"), SessionState(), policy
    )
    assert decision.inject == {"region": "eu"}
    assert arguments == {"q": "mcp"}
    assert descriptor == tool("search", SEARCH_SCHEMA)


# -- properties ---------------------------------------------------------------------------------

_ASCII_NAMES = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=140)
_X_NAMES = st.builds(lambda head, tail: head + tail, st.sampled_from(["x", "X"]), _ASCII_NAMES)


@settings(max_examples=400, deadline=None)
@given(name=st.one_of(_ASCII_NAMES, _X_NAMES))
def test_a_deny_rule_for_names_starting_with_x_is_never_bypassed_by_an_ascii_name(name: str) -> None:
    policy = _compile({"default": "allow", "rules": [deny("no-x", "*.x*")]})
    view = ToolView.build(SERVER, tool(name), DIGEST, "pinned")
    decision = decide(CallRequest(SERVER, name, {}), view, SessionState(), policy)
    if normalise(name).startswith("x"):
        assert decision.outcome == "deny"
        assert decision.rule in {"no-x", "gateway.tool-name"}


@settings(max_examples=400, deadline=None)
@given(name=st.text(max_size=40))
def test_a_name_outside_the_mcp_alphabet_is_denied_whatever_the_policy(name: str) -> None:
    policy = _compile({"default": "allow", "rules": [allow("all", "*")]})
    view = ToolView.build(SERVER, tool(name), DIGEST, "pinned")
    decision = decide(CallRequest(SERVER, name, {}), view, SessionState(), policy)
    if name_problem(name) is not None:
        assert (decision.outcome, decision.rule) == ("deny", "gateway.tool-name")
    else:
        assert (decision.outcome, decision.rule) == ("allow", "all")


# -- fixed arguments are hidden from the listed schema ---------------------------------------------


def test_the_arguments_an_allow_rule_fixes_are_the_ones_hidden_from_the_listing() -> None:
    policy = _compile({"rules": [deny("cond", "srv.search", arguments={"q": {"prefix": "x"}}), *SEARCH["rules"]]})
    assert policy.hidden_arguments(SERVER, "search", tool("search", SEARCH_SCHEMA)) == frozenset({"region"})
    assert policy.hidden_arguments(SERVER, "other", tool("other")) == frozenset()


# -- the shipped default policy ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "outcome", "rule"),
    [
        ({"readOnlyHint": True}, "allow", "read-only-tools"),
        ({"readOnlyHint": False}, "deny", "default.deny"),
        (None, "deny", "default.deny"),
    ],
    ids=["read-only", "not-read-only", "no-annotations"],
)
def test_the_shipped_default_policy_allows_only_read_only_tools(annotations: dict[str, bool] | None, outcome: str, rule: str) -> None:
    policy = CompiledPolicy.from_file(load_policy(POLICIES / "default.toml"))
    descriptor = tool() if annotations is None else tool(annotations=annotations)
    decision = decide(CallRequest(SERVER, "read", {}), ToolView.build(SERVER, descriptor, DIGEST, "new"), SessionState(), policy)
    assert (decision.outcome, decision.rule) == (outcome, rule)


# -- regressions: each test below failed against an earlier engine ----------------------------------


def test_a_deny_rules_path_condition_catches_a_path_written_with_two_leading_slashes() -> None:
    # POSIX resolves '//etc/passwd' to /etc/passwd, but posixpath.normpath keeps the two slashes.
    decision = _decide(Case(NO_ETC_WRITES, tool("write"), {"path": "//etc/passwd"}, "deny", "no-etc"))
    assert (decision.outcome, decision.rule) == ("deny", "no-etc")


def test_a_rule_on_trial_in_shadow_mode_does_not_let_through_a_call_the_enforced_policy_denies() -> None:
    # As in policies/example.toml: a shadow deny rule after the allow rules, default deny.
    enforced = {"rules": [allow("reads", "srv.read")]}
    trial = {"rules": [*enforced["rules"], deny("trial-no-destructive", "*", mode="shadow", annotations={"destructiveHint": True})]}
    delete = tool("delete", annotations={"destructiveHint": True})
    assert _decide(Case(enforced, delete, {}, "deny", "default.deny")).forward is False
    assert _decide(Case(trial, delete, {}, "deny", "default.deny")).forward is False


def test_a_string_argument_with_a_lone_surrogate_is_denied_not_raised() -> None:
    # jsonrpc.decode keeps '\ud800' escapes (the standard-library fallback), so this reaches decide.
    policy = {"rules": [allow("c", "srv.call", arguments={"v": {"pattern": "[a-z]+"}})]}
    decision = _decide(Case(policy, tool("call"), {"v": "\ud800"}, "deny", "c"))
    assert (decision.outcome, decision.rule) == ("deny", "c")


def test_a_pinned_schema_with_an_unresolvable_ref_is_denied_not_raised() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "https://example.com/schema.json"}}}
    decision = _decide(Case({"default": "allow"}, tool("call", schema), {"a": 1}, "deny", "schema.invalid"))
    assert decision.outcome == "deny"


@pytest.mark.parametrize(
    ("policy", "schema", "rules"),
    [
        ({"rules": [allow("c", "srv.call", arguments={"a": {"schema": {"multipleOf": 0.5}}})]}, ANY, {"c"}),
        ({"default": "allow"}, {"type": "object", "properties": {"a": {"multipleOf": 0.01}}}, {"default.allow", "schema.arguments"}),
    ],
    ids=["rule-schema-fragment", "pinned-input-schema"],
)
def test_a_huge_integer_against_multiple_of_is_answered_not_raised(policy: dict[str, Any], schema: dict[str, Any], rules: set[str]) -> None:
    decision = _decide(Case(policy, tool("call", schema), {"a": 10**400}, "deny", ""))
    assert decision.rule in rules


@pytest.mark.parametrize(
    ("path", "denied"),
    [
        pytest.param("/etc/passwd", True, id="inside"),
        pytest.param("/etc/../home/me/notes", False, id="dot-dot-out"),
        pytest.param("/home/me/../../etc/passwd", True, id="dot-dot-in"),
        pytest.param("etc/passwd", True, id="relative-cannot-be-told"),
        pytest.param("/etc/passwd\x00.txt", True, id="nul-truncation"),
        pytest.param("/etcetera/x", False, id="sibling-with-same-prefix"),
    ],
)
def test_a_deny_rules_path_condition_holds_whenever_the_path_might_be_under_it(path: str, denied: bool) -> None:
    decision = _decide(Case(NO_ETC_WRITES, tool("write"), {"path": path}, "deny", "no-etc"))
    assert (decision.outcome == "deny" and decision.rule == "no-etc") is denied


# -- combining a decision with the flow verdict, and server requests -------------------------
#
# One function each, shared by the live mediator and `airlock fork`: these rows are the rule.


@pytest.mark.parametrize(
    ("decision", "flow", "outcome", "rule"),
    [
        pytest.param("allow", "allow", "allow", "r1", id="both-allow"),
        pytest.param("allow", "deny", "deny", "f1", id="flow-deny-overrides-allow"),
        pytest.param("allow", "shadow-deny", "shadow-deny", "f1", id="flow-shadow-deny-overrides-allow"),
        pytest.param("shadow-deny", "deny", "deny", "f1", id="flow-deny-overrides-rule-shadow-deny"),
        pytest.param("shadow-deny", "shadow-deny", "shadow-deny", "r1", id="rule-shadow-deny-keeps-its-rule"),
        pytest.param("shadow-deny", "allow", "shadow-deny", "r1", id="flow-allow-keeps-rule-shadow-deny"),
    ],
)
def test_a_flow_verdict_overrides_the_rules_decision_by_precedence(decision: Any, flow: Any, outcome: str, rule: str) -> None:
    combined = combine(Decision(decision, "r1", "by rule", {"fixed": 1}), FlowVerdict(flow, "f1" if flow != "allow" else None, "by flow"))
    assert (combined.outcome, combined.rule) == (outcome, rule)
    assert combined.inject == {"fixed": 1}


@pytest.mark.parametrize(
    ("method", "settings_", "outcome", "rule"),
    [
        pytest.param("sampling/createMessage", {}, "allow", "server-requests.sampling", id="sampling-allowed-by-default"),
        pytest.param("sampling/createMessage", {"sampling": "deny"}, "deny", "server-requests.sampling", id="sampling-denied"),
        pytest.param("elicitation/create", {"elicitation": "deny"}, "deny", "server-requests.elicitation", id="elicitation-denied"),
        pytest.param("roots/list", {}, None, None, id="not-decided-by-the-policy"),
    ],
)
def test_server_requests_are_decided_by_their_setting(
    method: str, settings_: dict[str, str], outcome: str | None, rule: str | None
) -> None:
    policy = _compile({"default": "allow", "server_requests": settings_})
    decided = server_request_decision(method, SERVER, policy)
    assert (decided.outcome, decided.rule) == (outcome, rule) if decided is not None else outcome is None
    if decided is not None and decided.outcome == "deny":
        assert f'[server_requests] {rule.rpartition(".")[2] if rule else ""} = "allow"' in decided.reason
