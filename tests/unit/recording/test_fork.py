"""`airlock fork`: re-decide a real flight log (written by `PolicyMediator` into a real
`FlightLog`) under another policy and list exactly what flips."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.fork import add_parser as add_fork_parser
from gateway.cli.fork import cmd_fork
from gateway.errors import EXIT_DIFFERENT, EXIT_OK, EXIT_USAGE, ConfigError
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.mediation.interface import Forward, Refuse, Verdict
from gateway.mediation.mediator import PolicyMediator
from gateway.policy.engine import CompiledPolicy
from gateway.policy.model import PolicyError, parse_policy
from gateway.recording.fork import ForkReport, LogRefused, fork, read_verified
from gateway.screening.pins import Lock

SERVER = "mail"
CODE = "483920-ALPHA"
MAIL = {"from": "bob@corp.example", "to": "me@example.com", "body": f"Your reset code is {CODE}."}
TOOLS = [
    {"name": "read_email", "inputSchema": {"type": "object"}, "annotations": {"readOnlyHint": True, "openWorldHint": False}},
    {"name": "send_email", "inputSchema": {"type": "object", "properties": {"to": {"type": "string"}, "body": {"type": "string"}}}},
    {"name": "fetch", "inputSchema": {"type": "object", "properties": {"url": {"type": "string"}}}, "annotations": {"readOnlyHint": True}},
    {"name": "delete_all", "inputSchema": {"type": "object"}},
]
NO_PRIVATE_EGRESS = {"id": "no-private-egress", "labels": ["private", "secret"], "to": ["egress"]}
NO_UNTRUSTED_CONTROL = {"id": "no-untrusted-control", "labels": ["untrusted"], "to": ["egress", "write", "exec"], "arguments": "control"}
RULES: list[dict[str, Any]] = [
    {"id": "no-delete", "tools": ["mail.delete_all"], "action": "deny"},
    {"id": "fetch-https", "tools": ["mail.fetch"], "action": "allow", "arguments": {"url": {"prefix": "https://"}}},
    {"id": "trial-send", "tools": ["mail.send_email"], "action": "deny", "mode": "shadow"},
]
POLICY: dict[str, Any] = {
    "version": 1,
    "default": "allow",
    "tools": [
        {"tools": ["mail.read_email"], "class": "read", "fields": {"body": "private"}, "trusted_fields": ["from", "to"]},
        {"tools": ["mail.send_email"], "class": "egress", "control": ["to"], "recipients": ["to"]},
    ],
    "rules": RULES,
    "flows": [NO_PRIVATE_EGRESS, NO_UNTRUSTED_CONTROL],
}
#: The calls of the recorded session, with what the original policy decided (seq filled in).
CALLS: list[tuple[str, dict[str, Any], str, str]] = [
    ("fetch", {"url": "http://early.example/"}, "deny", "fetch-https"),
    ("read_email", {}, "allow", "default.allow"),
    ("fetch", {"url": f"https://x.example/?q={CODE}"}, "deny", "no-private-egress"),
    ("fetch", {"url": "http://late.example/"}, "deny", "fetch-https"),
    ("delete_all", {}, "deny", "no-delete"),
    ("send_email", {"to": "me@example.com", "body": "hi"}, "shadow-deny", "trial-send"),
    ("fetch", {"url": "https://ok.example/page"}, "allow", "fetch-https"),
]


def compiled(raw: dict[str, Any]) -> CompiledPolicy:
    return CompiledPolicy.from_file(parse_policy(raw, "test.toml"))


def edited(**changes: Any) -> dict[str, Any]:
    return {**POLICY, **changes}


def lock_for(tools: list[dict[str, Any]]) -> Lock:
    lock = Lock()
    for tool in tools:
        lock.server(SERVER).put("tools", tool["name"], tool)
    return lock


def record(path: Path, *, store_raw: bool = True, policy: dict[str, Any] = POLICY, pinned: list[dict[str, Any]] = TOOLS,
           sampling: bool = False) -> dict[int, int]:  # fmt: skip
    """Run the session of `CALLS` through a `PolicyMediator` into a sealed flight log at `path`;
    returns the seq of each call's entry by its index in `CALLS`, checking each decision."""
    log = FlightLog.open(LogSettings(path=path), generate_key(), policy_hash=compiled(policy).hash, inline_signing=True)
    log.start("test", ephemeral=True)
    mediator = PolicyMediator(compiled(policy), identity=SERVER, lock=lock_for(pinned), flight_log=log, store_raw=store_raw)
    ids = itertools.count(1)
    listing = mediator.on_client_request("tools/list", {"jsonrpc": "2.0", "id": 0, "method": "tools/list"})
    assert isinstance(listing, Forward)
    mediator.on_upstream_response("tools/list", listing.context, {"jsonrpc": "2.0", "id": 0, "result": {"tools": TOOLS}})
    seqs = {}
    for index, (tool, arguments, decision, rule) in enumerate(CALLS):
        message = {"jsonrpc": "2.0", "id": next(ids), "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        verdict: Verdict = mediator.on_client_request("tools/call", message)
        entry = orjson.loads(path.read_bytes().splitlines()[-1])
        assert (entry["tool"], entry["decision"], entry["rule"]) == (tool, decision, rule)
        seqs[index] = entry["seq"]
        if isinstance(verdict, Forward):
            result = {"content": [{"type": "text", "text": json.dumps(MAIL)}], "structuredContent": MAIL} if tool == "read_email" else {
                "content": [{"type": "text", "text": "ok"}]}  # fmt: skip
            mediator.on_upstream_response("tools/call", verdict.context, {"jsonrpc": "2.0", "id": 0, "result": result})
        else:
            assert isinstance(verdict, Refuse)
    if sampling:  # the upstream asks the client's model (after every call: its text would label the session)
        params = {"messages": [{"role": "user", "content": {"type": "text", "text": "hello"}}], "maxTokens": 5}
        mediator.on_upstream_request("sampling/createMessage", {"jsonrpc": "2.0", "id": 99, "method": "sampling/createMessage",
                                                                 "params": params})  # fmt: skip
        seqs[len(CALLS)] = orjson.loads(path.read_bytes().splitlines()[-1])["seq"]
    log.close()
    return seqs


def forked(path: Path, policy: dict[str, Any], *, lock: bool = True) -> ForkReport:
    return fork(read_verified(path), compiled(policy), lock_for(TOOLS) if lock else None)


def flips(report: ForkReport) -> list[tuple[int, str]]:
    return [(row.seq, row.kind) for row in report.rows if row.status == "flip"]


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "flight.jsonl"


def test_forking_under_the_recorded_policy_flips_nothing_and_decides_every_call(log_path: Path) -> None:
    record(log_path)
    report = forked(log_path, POLICY)
    assert [row.status for row in report.rows] == ["unchanged"] * len(CALLS)
    assert report.recorded_policy_hash == report.policy_hash
    assert report.exit_code == EXIT_OK
    assert report.summary().endswith(f"{len(CALLS)} call(s) re-decided under policy {report.policy_hash[:12]} (the policy the log "
                                     f"was recorded under): 0 flip(s), 0 undecidable, {len(CALLS)} unchanged"[-120:])  # fmt: skip


def test_forking_under_an_edited_policy_lists_exactly_the_calls_that_flip(log_path: Path) -> None:
    seqs = record(log_path)
    rules = [
        {"id": "no-read", "tools": ["mail.read_email"], "action": "deny"},
        {"id": "fetch-https", "tools": ["mail.fetch"], "action": "allow", "arguments": {"url": {"prefix": "http"}}},
        {"id": "trial-send", "tools": ["mail.send_email"], "action": "deny"},
    ]
    report = forked(log_path, edited(rules=rules))
    assert flips(report) == [
        (seqs[0], "deny(fetch-https) -> allow(fetch-https)"),
        (seqs[1], "allow(default.allow) -> deny(no-read)"),
        (seqs[4], "deny(no-delete) -> allow(default.allow)"),
        (seqs[5], "shadow-deny(trial-send) -> deny(trial-send)"),
    ]
    assert report.flip_counts == {
        "deny(fetch-https) -> allow(fetch-https)": 1,
        "allow(default.allow) -> deny(no-read)": 1,
        "deny(no-delete) -> allow(default.allow)": 1,
        "shadow-deny(trial-send) -> deny(trial-send)": 1,
    }
    assert report.exit_code == EXIT_DIFFERENT
    # The flow denial is re-decided from the recorded labels: still denied by the flow rule.
    assert next(r for r in report.rows if r.seq == seqs[2]).status == "unchanged"
    # The late plain-http fetch was denied by its rule before any flow check, so the log has no
    # labels for its argument; the session had read private mail by then: it may or may not carry
    # them, and the fork says so rather than guess.
    assert [(r.seq, r.note) for r in report.of("undecidable")] == [
        (seqs[3], "needs the labels, readers or action class the log does not record")
    ]


def test_flips_are_counted_per_kind(log_path: Path) -> None:
    record(log_path)
    report = forked(log_path, edited(rules=[], default="deny"))
    counts = report.flip_counts
    assert counts["allow(default.allow) -> deny(default.deny)"] == 1
    assert counts["allow(fetch-https) -> deny(default.deny)"] == 1
    assert counts["deny(no-private-egress) -> deny(default.deny)"] == 1
    assert counts["deny(fetch-https) -> deny(default.deny)"] == 2
    assert counts["deny(no-delete) -> deny(default.deny)"] == 1
    assert counts["shadow-deny(trial-send) -> deny(default.deny)"] == 1
    assert sum(counts.values()) == len(CALLS)
    assert "    1  deny(no-delete) -> deny(default.deny)" in report.table().splitlines()


def test_removing_a_flow_rule_lets_its_flow_denials_through(log_path: Path) -> None:
    seqs = record(log_path)
    report = forked(log_path, edited(flows=[]))
    assert flips(report) == [(seqs[2], "deny(no-private-egress) -> allow(fetch-https)")]
    assert not report.of("undecidable")
    # With only the first of two flow rules removed, the second fires on the same labels.
    report = forked(log_path, edited(flows=[NO_UNTRUSTED_CONTROL]))
    assert flips(report) == [(seqs[2], "deny(no-private-egress) -> deny(no-untrusted-control)")]


def test_a_new_flow_rule_denies_from_the_recorded_labels(log_path: Path) -> None:
    seqs = record(log_path)
    no_untrusted_egress = {"id": "no-untrusted-egress", "labels": ["untrusted"], "to": ["egress"], "mode": "coarse"}
    report = forked(log_path, edited(flows=[no_untrusted_egress, *POLICY["flows"]]))
    # Every egress call the flows checked came after the untrusted mail was read.
    assert flips(report) == [
        (seqs[2], "deny(no-private-egress) -> deny(no-untrusted-egress)"),
        (seqs[5], "shadow-deny(trial-send) -> deny(no-untrusted-egress)"),
        (seqs[6], "allow(fetch-https) -> deny(no-untrusted-egress)"),
    ]


def test_a_call_the_original_run_did_not_flow_check_is_decided_from_the_labels_recorded_around_it(log_path: Path) -> None:
    seqs = record(log_path)
    # The fetch denied by its argument rule was never flow-checked: no labels were recorded. Without
    # the rule it would reach the new coarse flow, which turns on the labels the session had then.
    rules = [r for r in RULES if r["id"] != "fetch-https"]
    no_untrusted_egress = {"id": "no-untrusted-egress", "labels": ["untrusted"], "to": ["egress"], "mode": "coarse"}
    report = forked(log_path, edited(rules=rules, flows=[no_untrusted_egress]))
    # The calls before and after it recorded the session as untrusted: the bounds agree.
    assert next(r for r in report.rows if r.seq == seqs[3]).kind == "deny(fetch-https) -> deny(no-untrusted-egress)"
    # Before the mail was read the session was clean (no recorded labels before, none at the next call).
    assert next(r for r in report.rows if r.seq == seqs[0]).kind == "deny(fetch-https) -> allow(default.allow)"


def test_without_stored_arguments_argument_rules_are_undecidable_not_guessed(log_path: Path) -> None:
    seqs = record(log_path, store_raw=False)
    rules = [
        {"id": "no-read", "tools": ["mail.read_email"], "action": "deny"},
        {"id": "fetch-https", "tools": ["mail.fetch"], "action": "allow", "arguments": {"url": {"prefix": "http"}}},
    ]
    report = forked(log_path, edited(rules=rules))
    # Empty arguments are known from their hash: those calls are decided.
    assert flips(report) == [
        (seqs[1], "allow(default.allow) -> deny(no-read)"),
        (seqs[4], "deny(no-delete) -> allow(default.allow)"),
    ]
    undecidable = {row.seq: row.note for row in report.of("undecidable")}
    assert set(undecidable) == {seqs[0], seqs[2], seqs[3], seqs[5], seqs[6]}
    assert all(note is not None and "arguments" in note for note in undecidable.values())
    assert report.exit_code == EXIT_DIFFERENT


def test_without_stored_arguments_the_same_policy_flips_nothing(log_path: Path) -> None:
    record(log_path, store_raw=False)
    report = forked(log_path, POLICY)
    assert not report.of("flip")
    assert report.exit_code == EXIT_OK
    report.strict = True
    assert report.exit_code == (EXIT_DIFFERENT if report.of("undecidable") else EXIT_OK)


def test_without_the_descriptors_an_allow_is_undecidable_but_a_new_denial_is_not(log_path: Path) -> None:
    seqs = record(log_path)
    rules = [{"id": "no-read", "tools": ["mail.read_email"], "action": "deny"}, *RULES[1:]]
    report = forked(log_path, edited(rules=rules), lock=False)
    assert flips(report) == [(seqs[1], "allow(default.allow) -> deny(no-read)")]
    delete = next(r for r in report.rows if r.seq == seqs[4])
    assert delete.status == "undecidable"
    assert delete.note is not None and "descriptor" in delete.note and "--lock" in delete.note


def test_a_lock_whose_descriptor_differs_from_the_logged_hash_is_not_used(log_path: Path) -> None:
    seqs = record(log_path)
    other = [{**t, "description": "changed"} for t in TOOLS]
    report = fork(read_verified(log_path), compiled(edited(rules=RULES[1:])), lock_for(other))
    assert next(r for r in report.rows if r.seq == seqs[4]).status == "undecidable"


TAMPERING = {
    "edited decision": lambda lines: [line.replace(b'"decision":"deny"', b'"decision":"allow"', 1) for line in lines],
    "dropped line": lambda lines: lines[:3] + lines[4:],
    "truncated tail": lambda lines: lines[:-1],
    "reordered lines": lambda lines: [lines[0], lines[2], lines[1], *lines[3:]],
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_a_log_that_does_not_verify_is_refused_with_the_verifiers_error(log_path: Path, tamper: Any) -> None:
    record(log_path)
    lines = log_path.read_bytes().splitlines(keepends=True)
    changed = tamper(lines)
    assert changed != lines
    log_path.write_bytes(b"".join(changed))
    with pytest.raises(LogRefused) as caught:
        read_verified(log_path)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.exit_code == EXIT_USAGE
    assert "does not verify" in caught.value.message


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fork_parser(parser.add_subparsers())
    return parser.parse_args(["fork", *argv])


def _policy_file(tmp_path: Path, raw: dict[str, Any], name: str) -> Path:
    path = tmp_path / name
    path.write_text(_toml(raw))
    return path


def _toml(raw: dict[str, Any]) -> str:
    """The policy as TOML: scalars, lists and inline tables at the top, arrays of tables."""

    def value(v: Any) -> str:
        if type(v) is dict:
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(m)}" for k, m in v.items()) + " }"
        if type(v) is list:
            return "[" + ", ".join(value(m) for m in v) + "]"
        return json.dumps(v)  # strings, booleans and integers are written alike in JSON and TOML

    tables = {k: v for k, v in raw.items() if type(v) is list and v and type(v[0]) is dict}
    out = [f"{k} = {value(v)}" for k, v in raw.items() if k not in tables]
    for name, items in tables.items():
        for item in items:
            out.append(f"[[{name}]]")
            out.extend(f"{json.dumps(k)} = {value(v)}" for k, v in item.items())
    return "\n".join(out) + "\n"


def test_the_command_prints_a_table_and_exits_4_when_something_flips(tmp_path: Path, log_path: Path) -> None:
    record(log_path)
    lock = tmp_path / "airlock.lock"
    lock_for(TOOLS).save(lock)
    out: list[str] = []
    same = _args(str(log_path), "--policy", str(_policy_file(tmp_path, POLICY, "same.toml")), "--lock", str(lock))
    assert cmd_fork(same, out.append) == EXIT_OK
    assert out[-1].splitlines()[-1].endswith(f"0 flip(s), 0 undecidable, {len(CALLS)} unchanged")
    other = _policy_file(tmp_path, edited(rules=RULES[1:]), "edited.toml")
    assert cmd_fork(_args(str(log_path), "--policy", str(other), "--lock", str(lock), "--json"), out.append) == EXIT_DIFFERENT
    report = json.loads(out[-1])
    assert report["flip_counts"] == {"deny(no-delete) -> allow(default.allow)": 1}
    assert report["exit_code"] == EXIT_DIFFERENT


def test_the_command_refuses_a_bad_policy(tmp_path: Path, log_path: Path) -> None:
    record(log_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('version = 1\ndefault = "sometimes"\n')
    with pytest.raises(PolicyError) as caught:
        cmd_fork(_args(str(log_path), "--policy", str(bad)), lambda _: None)
    assert caught.value.exit_code == EXIT_USAGE


def test_a_tool_the_lockfile_did_not_pin_is_re_decided_under_the_new_pins_settings(log_path: Path) -> None:
    allowing = edited(pins={"unpinned": "allow-and-log"})
    seqs = record(log_path, policy=allowing, pinned=[t for t in TOOLS if t["name"] != "read_email"])
    assert not forked(log_path, allowing).of("flip")
    blocking = forked(log_path, POLICY)
    assert flips(blocking) == [(seqs[1], "allow(default.allow) -> deny(pins.unpinned)")]
    # Trust on first use takes the pin at the listing: the call is decided as before.
    assert not forked(log_path, edited(pins={"unpinned": "trust-on-first-use"})).of("flip")


def test_an_annotations_condition_needs_the_descriptor(log_path: Path) -> None:
    seqs = record(log_path)
    read_only = {"id": "read-only", "tools": ["mail.*"], "action": "deny", "annotations": {"readOnlyHint": True}}
    report = forked(log_path, edited(rules=[read_only, *RULES]), lock=False)
    assert {r.seq: r.note for r in report.of("undecidable")}[
        seqs[1]
    ] == "needs the tool's descriptor (pass --lock with a lockfile that pins it)"
    assert (seqs[1], "allow(default.allow) -> deny(read-only)") in flips(forked(log_path, edited(rules=[read_only, *RULES])))


def test_a_server_request_is_re_decided_by_the_server_requests_setting(log_path: Path) -> None:
    seqs = record(log_path, sampling=True)
    report = forked(log_path, edited(server_requests={"sampling": "deny"}))
    assert flips(report) == [(seqs[len(CALLS)], "allow(server-requests.sampling) -> deny(server-requests.sampling)")]
