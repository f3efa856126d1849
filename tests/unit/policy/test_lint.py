"""gateway/policy/lint.py: findings about a valid policy that is probably not what its author
meant (unreachable and shadowed rules, rules naming no pinned tool, a permissive default, shadow
mode). Each finding names the rule and says what to change."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.policy.engine import CompiledPolicy
from gateway.policy.lint import LintFinding, lint
from gateway.policy.model import load_policy, parse_policy
from gateway.screening.pins import Lock

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def _compile(raw: dict[str, Any]) -> CompiledPolicy:
    return CompiledPolicy.from_file(parse_policy({"version": 1, **raw}, "test.toml"))


def _rule(rule_id: str, action: str, *tools: str, **extra: Any) -> dict[str, Any]:
    return {"id": rule_id, "tools": list(tools), "action": action, **extra}


def _kinds(findings: list[LintFinding]) -> list[tuple[str, str]]:
    return [(finding.rule, finding.kind) for finding in findings]


def _lock() -> Lock:
    lock = Lock()
    lock.server("srv").put("tools", "read", {"name": "read"})
    return lock


# -- unreachable and shadowed rules ---------------------------------------------------------------

CONDITION = {"path": {"path_prefix": "/etc"}}

# fmt: off
ORDERING = [
    pytest.param([_rule("all", "deny", "*"), _rule("later", "allow", "srv.read")], [("later", "unreachable")],
                 id="after-a-catch-all-deny"),
    pytest.param([_rule("all", "allow", "*"), _rule("later", "deny", "srv.read")], [("later", "unreachable")],
                 id="after-a-catch-all-allow"),
    pytest.param([_rule("all", "deny", "*"), _rule("b", "allow", "x.y"), _rule("c", "allow", "z.*")],
                 [("b", "unreachable"), ("c", "unreachable")], id="every-rule-after-a-catch-all"),
    pytest.param([_rule("srv-all", "deny", "srv.*"), _rule("later", "allow", "srv.read")], [("later", "shadowed")],
                 id="shadowed-by-a-server-glob"),
    pytest.param([_rule("reads", "deny", "*.read"), _rule("later", "allow", "a.read", "b.read")], [("later", "shadowed")],
                 id="shadowed-by-a-tool-glob-for-every-pattern"),
    pytest.param([_rule("a", "deny", "a.read"), _rule("b", "deny", "b.read"), _rule("later", "allow", "a.read", "b.read")],
                 [("later", "shadowed")], id="shadowed-by-two-earlier-rules-together"),
    pytest.param([_rule("srv-all", "deny", "*.*"), _rule("later", "allow", "srv.read")], [("later", "shadowed")],
                 id="shadowed-by-star-dot-star"),
    pytest.param([_rule("srv-all", "deny", "SRV.*"), _rule("later", "allow", "srv.READ")], [("later", "shadowed")],
                 id="shadowed-after-case-folding"),
    pytest.param([_rule("same", "deny", "srv.read"), _rule("later", "allow", "srv.read")], [("later", "shadowed")],
                 id="shadowed-by-the-same-name"),
    pytest.param([_rule("re", "deny", "srv.re*"), _rule("later", "allow", "srv.read*")], [("later", "shadowed")],
                 id="shadowed-glob-by-a-wider-glob"),
    pytest.param([_rule("owner", "allow", "srv.*", arguments=CONDITION), _rule("later", "deny", "srv.read")], [("later", "shadowed")],
                 id="shadowed-by-an-allow-rule-with-constraints-which-owns-its-tools"),
    pytest.param([_rule("srv-all", "deny", "srv.*"), _rule("later", "allow", "srv.read", "other.read")], [],
                 id="not-when-one-pattern-is-not-covered"),
    pytest.param([_rule("one", "deny", "srv.?"), _rule("later", "allow", "srv.*")], [], id="not-when-the-earlier-glob-is-narrower"),
    pytest.param([_rule("read", "deny", "srv.read"), _rule("later", "allow", "srv.read*")], [], id="not-a-glob-by-a-literal"),
    pytest.param([_rule("cond", "deny", "srv.*", arguments=CONDITION), _rule("later", "allow", "srv.read")], [],
                 id="not-after-a-deny-rule-with-argument-conditions"),
    pytest.param([_rule("cond", "deny", "*", arguments=CONDITION), _rule("later", "allow", "srv.read")], [],
                 id="not-after-a-catch-all-deny-rule-with-argument-conditions"),
    pytest.param([_rule("ro", "allow", "*", annotations={"readOnlyHint": True}), _rule("later", "deny", "srv.read")], [],
                 id="not-after-a-catch-all-allow-rule-with-annotations"),
    pytest.param([_rule("d", "deny", "srv.*", annotations={"destructiveHint": True}), _rule("later", "allow", "srv.read")], [],
                 id="not-after-a-deny-rule-with-annotations"),
    pytest.param([_rule("a", "allow", "srv.read"), _rule("b", "deny", "srv.write")], [], id="not-for-disjoint-rules"),
]
# fmt: on


@pytest.mark.parametrize(("rules", "expected"), ORDERING)
def test_a_rule_an_earlier_rule_always_decides_first_is_flagged(rules: list[dict[str, Any]], expected: list[tuple[str, str]]) -> None:
    assert _kinds(lint(_compile({"rules": rules}))) == expected


def test_an_unreachable_finding_names_the_catch_all_and_says_what_to_do() -> None:
    [finding] = lint(_compile({"rules": [_rule("all", "deny", "*"), _rule("later", "allow", "srv.read")]}))
    assert "'later'" in finding.message and "'all'" in finding.message
    assert "move it up or remove it" in finding.message


def test_a_shadowed_finding_names_the_earlier_rule_and_says_what_to_do() -> None:
    [finding] = lint(_compile({"rules": [_rule("srv-all", "deny", "srv.*"), _rule("later", "allow", "srv.read")]}))
    assert "'later' is shadowed" in finding.message and "'srv-all'" in finding.message
    assert "reorder the rules or narrow 'srv-all'" in finding.message


# -- rules that name no pinned tool ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "unknown"),
    [
        pytest.param(["srv.read"], [], id="pinned-name"),
        pytest.param(["SRV.Read"], [], id="pinned-name-other-case"),
        pytest.param(["srv.*"], [], id="server-glob"),
        pytest.param(["*.read"], [], id="tool-glob"),
        pytest.param(["srv.rea?"], [], id="question-mark"),
        pytest.param(["*"], [], id="catch-all"),
        pytest.param(["srv.write"], ["srv.write"], id="unpinned-tool"),
        pytest.param(["other.read"], ["other.read"], id="unpinned-server"),
        pytest.param(["other.*"], ["other.*"], id="glob-over-an-unpinned-server"),
        pytest.param(["srv.read", "srv.raed"], ["srv.raed"], id="one-misspelt-pattern-of-two"),
    ],
)
def test_a_rule_pattern_that_names_no_pinned_tool_is_flagged(patterns: list[str], unknown: list[str]) -> None:
    findings = lint(_compile({"rules": [_rule("r", "allow", *patterns)]}), _lock())
    assert _kinds(findings) == [("r", "unknown-tool")] * len(unknown)
    for finding, pattern in zip(findings, unknown, strict=True):
        assert repr(pattern) in finding.message
        assert "check the spelling (SERVER.TOOL) or pin the server" in finding.message


def test_without_a_lockfile_no_rule_is_flagged_as_naming_an_unknown_tool() -> None:
    assert lint(_compile({"rules": [_rule("r", "allow", "nowhere.nothing")]})) == []


def test_with_an_empty_lockfile_every_rule_names_an_unknown_tool() -> None:
    findings = lint(_compile({"rules": [_rule("a", "allow", "srv.read"), _rule("b", "deny", "*")]}), Lock())
    assert _kinds(findings) == [("a", "unknown-tool"), ("b", "unknown-tool")]


# -- the default and shadow mode ------------------------------------------------------------------


def test_a_permissive_default_is_flagged() -> None:
    [finding] = lint(_compile({"default": "allow"}))
    assert (finding.rule, finding.kind) == ("default", "permissive-default")
    assert 'default = "deny"' in finding.message


def test_a_deny_default_is_not_flagged() -> None:
    assert lint(_compile({"default": "deny"})) == []


def test_a_policy_in_shadow_mode_is_flagged_once() -> None:
    findings = lint(_compile({"mode": "shadow", "rules": [_rule("r", "deny", "srv.x", mode="shadow")]}))
    assert _kinds(findings) == [("mode", "shadow-mode")]
    assert "nothing is denied" in findings[0].message


def test_a_rule_in_shadow_mode_in_an_enforcing_policy_is_flagged() -> None:
    findings = lint(_compile({"rules": [_rule("trial", "deny", "srv.x", mode="shadow"), _rule("on", "deny", "srv.y", mode="enforce")]}))
    assert _kinds(findings) == [("trial", "shadow-mode")]
    assert "forwarded" in findings[0].message


def test_findings_come_in_rule_order_then_the_policy_wide_ones() -> None:
    policy = _compile({"mode": "shadow", "default": "allow", "rules": [_rule("all", "deny", "*"), _rule("later", "allow", "other.x")]})
    assert _kinds(lint(policy, _lock())) == [
        ("later", "unreachable"),
        ("later", "unknown-tool"),
        ("default", "permissive-default"),
        ("mode", "shadow-mode"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("default.toml", []), ("strict.toml", []), ("example.toml", [("trial-no-destructive", "shadow-mode")])],
)
def test_the_shipped_policies_lint_as_expected(name: str, expected: list[tuple[str, str]]) -> None:
    assert _kinds(lint(CompiledPolicy.from_file(load_policy(POLICIES / name)))) == expected
