"""gateway/recording/replay.py: a recorded session replayed through the real relay and policy mediator
against a mock upstream answering from the cassette.

Cassettes are recorded here by the harness in fixtures/cassettes/generate.py: the real `Relay`
and `PolicyMediator` against an in-process "notes" server, teed into a `CassetteWriter` as the
runner does.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from gateway.cli.replay import add_parser as add_replay_parser
from gateway.errors import EXIT_DIFFERENT, EXIT_OK, EXIT_USAGE
from gateway.evidence.verify import verify_file
from gateway.policy.model import PolicyError
from gateway.protocol import jsonrpc
from gateway.recording.cassette import CassetteError, read_cassette
from gateway.recording.replay import replay
from gateway.recording.report import ExpectationsError, ReplayReport
from gateway.screening.pins import Lock
from tests.unit.helpers import compiled

ROOT = Path(__file__).resolve().parents[3]
CASSETTES = ROOT / "fixtures" / "cassettes"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_cassettes", CASSETTES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _generator()

ALLOW_ALL = compiled({"default": "allow"})
NO_DELETES = compiled({"default": "allow", "rules": [{"id": "no-deletes", "tools": ["notes.delete_note"], "action": "deny"}]})
NO_EMAIL = compiled({"default": "allow", "rules": [{"id": "no-deletes", "tools": ["notes.delete_note"], "action": "deny"},
                                                   {"id": "no-email", "tools": ["notes.send_email"], "action": "deny"}]})  # fmt: skip


def _record(tmp_path: Path, policy: Any = NO_DELETES, session: list[Any] | None = None, **options: Any) -> Path:
    path: Path = gen.record_session(tmp_path / "session.jsonl", policy, session if session is not None else gen.sample_session(), **options)
    return path


def _decisions(report: ReplayReport) -> list[tuple[str, str, str | None]]:
    return [(row.tool, row.live.decision, row.live.rule) for row in report.rows]


# -- same policy: same decisions, same bytes ------------------------------------------------------


def test_replaying_under_the_recording_policy_gives_the_recorded_decisions_and_no_differences(tmp_path: Path) -> None:
    report = replay(read_cassette(_record(tmp_path)), NO_DELETES)
    assert report.differences == []
    assert report.exit_code == EXIT_OK
    assert _decisions(report) == [("search_notes", "allow", "default.allow"), ("read_note", "allow", "default.allow"),
                                  ("delete_note", "deny", "no-deletes"), ("send_email", "allow", "default.allow"),
                                  ("read_note", "allow", "default.allow")]  # fmt: skip
    assert [row.recorded.decision for row in report.rows] == ["allow", "allow", "deny", "allow", "allow"]
    assert report.rows[2].recorded.rule == "no-deletes"
    assert report.rows[0].live.labels == ("untrusted",)


def test_two_replays_write_byte_identical_flight_logs_that_verify(tmp_path: Path) -> None:
    cassette = read_cassette(_record(tmp_path))
    first = replay(cassette, NO_DELETES, log_path=tmp_path / "one.jsonl")
    second = replay(cassette, NO_DELETES, log_path=tmp_path / "two.jsonl")
    assert first.log_path is not None and second.log_path is not None
    assert first.log_path.read_bytes() == second.log_path.read_bytes()
    report = verify_file(first.log_path, None)
    assert report.ephemeral  # the replay key is public: the log says so
    assert report.decisions == {"allow": 4, "deny": 1}


def test_the_table_shows_every_call_with_both_outcomes_and_the_difference_count(tmp_path: Path) -> None:
    table = replay(read_cassette(_record(tmp_path)), NO_EMAIL).table()
    lines = table.splitlines()
    assert lines[0].split() == ["#", "seq", "tool", "recorded", "replayed", "labels", "note"]
    assert "send_email" in lines[4] and "deny(no-email)" in lines[4]
    assert lines[-1] == "5 call(s), 1 difference(s)"


# -- another policy -------------------------------------------------------------------------------


def test_a_stricter_policy_is_reported_as_a_decision_difference(tmp_path: Path) -> None:
    report = replay(read_cassette(_record(tmp_path)), NO_EMAIL)
    assert report.exit_code == EXIT_DIFFERENT
    assert [(d.kind, d.call) for d in report.differences] == [("decision", 4)]
    assert "send_email" in report.differences[0].message


def test_a_call_the_recording_never_forwarded_is_reported_unanswerable_not_crashed_on(tmp_path: Path) -> None:
    report = replay(read_cassette(_record(tmp_path)), ALLOW_ALL)
    delete = report.rows[2]
    assert delete.tool == "delete_note"
    assert (delete.recorded.decision, delete.live.decision) == ("deny", "allow")
    assert delete.note is not None and delete.note.startswith("unanswerable")
    assert [(d.kind, d.call) for d in report.differences] == [("decision", 3)]
    assert _decisions(report)[3:] == [("send_email", "allow", "default.allow"), ("read_note", "allow", "default.allow")]


def test_shadow_mode_forwards_like_the_recording_so_it_is_no_difference_but_the_table_says_shadow_deny(tmp_path: Path) -> None:
    shadow = compiled({"default": "allow", "mode": "shadow", "rules": [
        {"id": "no-deletes", "tools": ["notes.delete_note"], "action": "deny"},
        {"id": "no-email", "tools": ["notes.send_email"], "action": "deny"}]})  # fmt: skip
    report = replay(read_cassette(_record(tmp_path, policy=ALLOW_ALL)), shadow)
    assert report.rows[3].live.decision == "shadow-deny"
    assert report.differences == []


# -- expectations -------------------------------------------------------------------------------


def test_an_expectations_file_replaces_the_recording_as_what_decisions_must_be(tmp_path: Path) -> None:
    cassette = read_cassette(_record(tmp_path))
    expect = orjson.loads((CASSETTES / "notes.expect.json").read_bytes())["calls"]
    assert replay(cassette, NO_EMAIL, expect=expect).differences == []
    report = replay(cassette, NO_DELETES, expect=expect)
    assert [(d.kind, d.call) for d in report.differences] == [("expectation", 4)]


def test_an_expectations_file_with_another_number_of_calls_is_a_difference(tmp_path: Path) -> None:
    expect = orjson.loads((CASSETTES / "notes.expect.json").read_bytes())["calls"][:-1]
    report = replay(read_cassette(_record(tmp_path)), NO_EMAIL, expect=expect)
    assert [d.kind for d in report.differences] == ["expectation"]
    assert "expected 4 call(s)" in report.differences[0].message


# -- descriptors against the lock ----------------------------------------------------------------


def _lock(tools: list[dict[str, Any]]) -> Lock:
    lock = Lock()
    for tool in tools:
        lock.server("notes").put("tools", tool["name"], tool)
    return lock


def test_a_descriptor_that_no_longer_matches_the_lock_is_reported(tmp_path: Path) -> None:
    reviewed = [dict(t) for t in gen.TOOLS]
    reviewed[1] = {**reviewed[1], "description": "Read one note (reviewed wording)."}
    report = replay(read_cassette(_record(tmp_path)), NO_DELETES, _lock(reviewed))
    drift = [d for d in report.differences if d.kind == "drift"]
    assert len(drift) == 1 and "read_note" in drift[0].message and "changed" in drift[0].message
    assert report.exit_code == EXIT_DIFFERENT
    # and the policy's default [pins] changed = "block-tool" now denies the drifted tool
    assert report.rows[1].live.rule == "pins.changed"


def test_tools_missing_from_or_added_to_the_lock_are_drift_too(tmp_path: Path) -> None:
    locked = [t for t in gen.TOOLS if t["name"] != "send_email"] + [{"name": "archive", "inputSchema": {"type": "object"}}]
    report = replay(read_cassette(_record(tmp_path)), NO_DELETES, _lock(locked))
    messages = sorted(d.message for d in report.differences if d.kind == "drift")
    assert any("archive" in m and "no longer listed" in m for m in messages)
    assert any("send_email" in m and "not in the lockfile" in m for m in messages)


def test_a_matching_lock_is_no_difference_and_is_not_modified(tmp_path: Path) -> None:
    lock = _lock(list(gen.TOOLS))
    before = lock.to_bytes()
    assert replay(read_cassette(_record(tmp_path)), NO_DELETES, lock).differences == []
    assert lock.to_bytes() == before


# -- what the mock upstream must get right ---------------------------------------------------------


def test_calls_in_flight_together_are_answered_where_the_recording_answered_them(tmp_path: Path) -> None:
    cassette = read_cassette(_record(tmp_path, answer_late=True))
    directions = [e.direction for e in cassette.entries]
    assert directions.index("u2g") > max(i for i, d in enumerate(directions) if d == "c2g")  # every answer came late
    report = replay(cassette, NO_DELETES)
    assert report.differences == []
    assert [row.live.decision for row in report.rows] == ["allow", "allow", "deny", "allow", "allow"]


def test_the_gateways_own_listing_is_answered_under_its_new_id(tmp_path: Path) -> None:
    # No tools/list from the client and no lock: the gateway lists the tools itself (id
    # airlock-fetch-<random>) before deciding the first call; replay must rewrite that id.
    session = [gen.handshake()[0], gen.call(2, "read_note", id=1), gen.call(3, "delete_note", id=1)]
    cassette = read_cassette(_record(tmp_path, session=session))
    fetched = [e.message for e in cassette.entries if e.direction == "g2u" and e.message.get("method") == "tools/list"]
    assert fetched and str(fetched[0]["id"]).startswith("airlock-fetch-")
    report = replay(cassette, NO_DELETES)
    assert report.differences == []
    assert _decisions(report) == [("read_note", "allow", "default.allow"), ("delete_note", "deny", "no-deletes")]


def test_a_redacted_cassette_still_replays_call_for_call(tmp_path: Path) -> None:
    path = _record(tmp_path, redact=["params.arguments.password", "result.structuredContent.token"])
    assert b"hunter2" not in path.read_bytes()
    assert replay(read_cassette(path), NO_DELETES).differences == []


def test_a_cassette_that_ends_with_a_call_in_flight_reports_it_unanswered(tmp_path: Path) -> None:
    path = _record(tmp_path)
    kept = [line for line in path.read_bytes().splitlines() if b'"seq":29' not in line and b'"seq":30' not in line]
    path.write_bytes(b"\n".join(kept) + b"\n")
    report = replay(read_cassette(path), NO_DELETES)
    last = report.rows[-1]
    assert last.note is not None and last.note.startswith("unanswered")
    assert last.live.decision == "allow"


def test_malformed_client_lines_in_a_recording_are_replayed_as_garbage_too(tmp_path: Path) -> None:
    session: list[Any] = [*gen.handshake(), b"{not json", gen.call(2, "read_note", id=1)]
    cassette = read_cassette(_record(tmp_path, session=session))
    assert any(e.message is None for e in cassette.entries)
    report = replay(cassette, NO_DELETES)
    assert report.differences == []


# -- command line -------------------------------------------------------------------------------


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_replay_parser(parser.add_subparsers())
    args = parser.parse_args(["replay", *argv])
    printed: list[str] = []
    code: int = args.handler(args, printed.append)
    assert printed and printed[0].startswith("#")
    return code


def test_the_command_exits_0_on_the_same_decisions_and_4_on_differences() -> None:
    fixture = str(CASSETTES / "notes.cassette.jsonl")
    assert _cli(fixture, "--policy", str(CASSETTES / "notes-record.toml"), "--lock", str(CASSETTES / "notes.lock.json")) == EXIT_OK
    assert _cli(fixture, "--policy", str(CASSETTES / "notes-strict.toml")) == EXIT_DIFFERENT
    strict_expected = ("--policy", str(CASSETTES / "notes-strict.toml"), "--expect", str(CASSETTES / "notes.expect.json"))
    assert _cli(fixture, *strict_expected) == EXIT_OK


def test_the_command_writes_the_replay_flight_log_where_asked(tmp_path: Path) -> None:
    fixture = str(CASSETTES / "notes.cassette.jsonl")
    assert _cli(fixture, "--policy", str(CASSETTES / "notes-record.toml"), "--log", str(tmp_path / "replay.jsonl")) == EXIT_OK
    assert verify_file(tmp_path / "replay.jsonl", None).entries > 0


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("bad.cassette.jsonl", b'{"format": "mcp-airlock-cassette/1"}\n', CassetteError),
        ("bad.expect.json", b'{"calls": [{"tool": "x"}]}', ExpectationsError),
        ("bad.policy.toml", b"version = 1\ndefault = 'maybe'\n", PolicyError),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, name: str, content: bytes, error: type[Exception]) -> None:
    files = {"cassette": CASSETTES / "notes.cassette.jsonl", "policy": CASSETTES / "notes-record.toml", "expect": None}
    path = tmp_path / name
    path.write_bytes(content)
    files[name.split(".")[1]] = path
    argv = [str(files["cassette"]), "--policy", str(files["policy"])]
    if files["expect"] is not None:
        argv += ["--expect", str(files["expect"])]
    with pytest.raises(error) as caught:
        _cli(*argv)
    assert getattr(caught.value, "exit_code", None) == EXIT_USAGE


def test_the_checked_in_sample_cassettes_are_what_the_generator_makes() -> None:
    assert gen.main(["--check"]) == 0


def test_the_cassette_message_bytes_fed_to_the_gateway_are_the_recorded_messages() -> None:
    cassette = read_cassette(CASSETTES / "notes.cassette.jsonl")
    assert all(jsonrpc.decode(e.line) == e.message for e in cassette.entries if e.message is not None)
