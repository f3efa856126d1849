"""Attacks on the rules and argument checks (`policy.engine.decide`), as a prompt-injected model
that controls tool-call arguments would try them, through a real `PolicyMediator`.

Every test asserts the SECURE behaviour. A test marked `# BUG:` fails today: the comment says
the attack. The others are regression rows for attacks that are stopped."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import PolicyDenied
from gateway.mediation.interface import Forward, Refuse, Verdict
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import parse_policy

SERVER = "bank"
#: The tool's input schema types nothing (as many servers' schemas do: `{}` members, unions with
#: string, or no properties), so the pinned-schema check does not catch a type change.
LOOSE = {"name": "transfer", "inputSchema": {"type": "object"}}
TYPED = {"name": "transfer_typed", "inputSchema": {"type": "object", "properties": {"amount": {"type": "number"}}}}
DENY_RULES: list[dict[str, Any]] = [
    {"id": "no-big-transfer", "tools": ["bank.transfer*"], "action": "deny", "arguments": {"amount": {"minimum": 1000}}},
    {"id": "no-etc", "tools": ["bank.transfer*"], "action": "deny", "arguments": {"path": {"prefix": "/etc"}}},
    {"id": "no-etc-path", "tools": ["bank.transfer*"], "action": "deny", "arguments": {"file": {"path_prefix": "/etc"}}},
    {"id": "no-force", "tools": ["bank.transfer*"], "action": "deny", "arguments": {"mode": {"enum": ["force"]}}},
    {"id": "no-evil-host", "tools": ["bank.transfer*"], "action": "deny", "arguments": {"host": {"pattern": ".*evil.*"}}},
]


def mediator() -> PolicyMediator:
    policy = CompiledPolicy.from_file(parse_policy({"version": 1, "default": "allow", "rules": DENY_RULES}, "test.toml"))
    m = PolicyMediator(policy, identity=SERVER)
    verdict = m.on_client_request("tools/list", {"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
    assert isinstance(verdict, Forward)
    m.on_upstream_response("tools/list", verdict.context, {"jsonrpc": "2.0", "id": 0, "result": {"tools": [LOOSE, TYPED]}})
    return m


def call(tool: str, arguments: dict[str, Any]) -> Verdict:
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
    return mediator().on_client_request("tools/call", message)


def denied(verdict: Verdict) -> str | None:
    if isinstance(verdict, Refuse) and isinstance(verdict.error, PolicyDenied):
        return verdict.error.rule
    return None


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        pytest.param({"amount": 5000}, "no-big-transfer", id="number"),
        pytest.param({"amount": 5000.0}, "no-big-transfer", id="float"),
        pytest.param({"path": "/etc/passwd"}, "no-etc", id="prefix"),
        pytest.param({"file": "/etc/../etc/shadow"}, "no-etc-path", id="dot-dot"),
        pytest.param({"file": "//etc/shadow"}, "no-etc-path", id="double-slash"),
        pytest.param({"file": "etc/shadow"}, "no-etc-path", id="relative"),
        pytest.param({"file": "/etc\x00/x"}, "no-etc-path", id="nul"),
        pytest.param({"mode": "force"}, "no-force", id="enum"),
        pytest.param({"host": "www.evil.example"}, "no-evil-host", id="pattern"),
    ],
)
def test_a_deny_rule_condition_denies_the_values_it_names(arguments: dict[str, Any], rule: str) -> None:
    assert denied(call("transfer", arguments)) == rule


def test_a_numeric_string_for_a_typed_number_is_refused() -> None:
    # The deny rule's condition holds for a value it cannot read (and the pinned schema would refuse it too).
    assert denied(call("transfer_typed", {"amount": "5000"})) in ("no-big-transfer", "schema.arguments")


@pytest.mark.parametrize(
    ("arguments", "rule"),
    [
        pytest.param({"amount": "5000"}, "no-big-transfer", id="number-as-string"),
        pytest.param({"amount": [5000]}, "no-big-transfer", id="number-in-a-list"),
        pytest.param({"path": ["/etc/passwd"]}, "no-etc", id="prefix-string-in-a-list"),
        pytest.param({"file": ["/etc/shadow"]}, "no-etc-path", id="path-in-a-list"),
        pytest.param({"file": {"path": "/etc/shadow"}}, "no-etc-path", id="path-in-an-object"),
        pytest.param({"mode": ["force"]}, "no-force", id="enum-value-in-a-list"),
        pytest.param({"host": ["www.evil.example"]}, "no-evil-host", id="pattern-string-in-a-list"),
        pytest.param({"host": "www.evil.example\ud800"}, "no-evil-host", id="pattern-string-with-a-lone-surrogate"),
    ],
)
def test_a_deny_rule_condition_holds_for_a_value_whose_meaning_cannot_be_told(arguments: dict[str, Any], rule: str) -> None:
    # Regression (was a bug): a deny rule's conditions are evaluated with `_Check.failure(condition=True)`, which
    # treats "cannot tell" as "holds" only for an undecidable path. Any type mismatch ("must be a
    # finite number", "must be a string") or an unmatchable lone surrogate makes the condition
    # *fail*, so the deny rule is skipped and the next rule (here the default) allows. Servers
    # coerce "5000" to 5000 (pydantic lax mode) and many accept a string or a list of strings, so
    # the value the rule exists to stop reaches the tool. Expected: a condition on a value of
    # the wrong type holds (fail closed), as the docstring of `failure` promises.
    assert denied(call("transfer", arguments)) == rule
