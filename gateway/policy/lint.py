"""`airlock policy check`: findings about a valid policy that is probably not what its author
meant. Pure. Each finding names the rule and says what to change."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from gateway.policy.engine import CompiledPolicy, CompiledRule
from gateway.protocol.names import normalise
from gateway.screening.pins import Lock


@dataclass(frozen=True, slots=True)
class LintFinding:
    rule: str
    kind: str  # unreachable | shadowed | unknown-tool | permissive-default | shadow-mode
    message: str


def _covers(general: str, specific: str) -> bool:
    """Whether glob `general` matches every name glob `specific` matches (sound for the cases
    that matter: literals and trailing/leading wildcards; a `*` in `specific` is only covered
    by a `*` in `general`)."""
    general, specific = normalise(general), normalise(specific)
    if general == specific or general == "*":
        return True
    if "?" in specific:
        return False
    stand_in = specific.replace("*", "\x00\x00")  # one '?' in `general` cannot absorb it
    return fnmatch.fnmatchcase(stand_in, general.replace("[", "[[]"))


def lint(policy: CompiledPolicy, lock: Lock | None = None) -> list[LintFinding]:
    findings: list[LintFinding] = []
    earlier: list[CompiledRule] = []
    for rule in policy.rules:
        blockers = [e for e in earlier if e.unconditional or (e.rule.action == "allow" and not e.rule.annotations)]
        catch_all = next((e for e in blockers if "*" in e.rule.tools), None)
        if catch_all is not None:
            findings.append(
                LintFinding(
                    rule.id,
                    "unreachable",
                    f"rule {rule.id!r} can never match: rule {catch_all.id!r} before it matches every tool; move it up or remove it",
                )
            )
        elif rule.rule.tools and all(any(_covers(g, p) for e in blockers for g in e.rule.tools) for p in rule.rule.tools):
            by = next(e.id for e in blockers if any(_covers(g, p) for g in e.rule.tools for p in rule.rule.tools))
            findings.append(
                LintFinding(
                    rule.id,
                    "shadowed",
                    f"rule {rule.id!r} is shadowed: every tool it names is decided first by "
                    f"rule {by!r}; reorder the rules or narrow {by!r}",
                )
            )
        if lock is not None:
            known = [f"{server}.{tool}" for server, pins in lock.servers.items() for tool in pins.names("tools")]
            for pattern in rule.rule.tools:
                matcher = normalise(pattern).replace("[", "[[]")
                if not any(fnmatch.fnmatchcase(normalise(name), matcher) for name in known):
                    findings.append(
                        LintFinding(
                            rule.id,
                            "unknown-tool",
                            f"rule {rule.id!r}: {pattern!r} names no tool of any pinned "
                            "server; check the spelling (SERVER.TOOL) or pin the server",
                        )
                    )
        if rule.rule.mode == "shadow" and policy.source.mode != "shadow":
            findings.append(LintFinding(rule.id, "shadow-mode", f"rule {rule.id!r} is in shadow mode: what it denies is forwarded"))
        earlier.append(rule)
    if policy.source.default == "allow":
        findings.append(
            LintFinding(
                "default",
                "permissive-default",
                'the default allows every call no rule names; consider default = "deny" and explicit allow rules',
            )
        )
    if policy.source.mode == "shadow":
        findings.append(LintFinding("mode", "shadow-mode", "the whole policy is in shadow mode: nothing is denied, only logged"))
    return findings
