"""gateway/evidence/flightlog.py: the typed entry a log's observer sees is the entry it wrote.

`FlightLog(on_entry=...)` hands each `Entry` to the observer once it is chained (replay reads
its decisions from it). Whatever path made the line (`record`'s template, `signing_bytes` for
a member the template does not take, or `append`), the observer's entry must hash to the line's
`hash`: it is the signed entry, not a copy that could drift from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.evidence.canonical import entry_hash
from gateway.evidence.entry import MEMBERS, Entry, entry_json
from gateway.evidence.flightlog import FlightLog, LogSettings
from gateway.evidence.signing import generate_key
from gateway.evidence.verify import verify_file


def test_the_observer_sees_every_entry_written_in_order_and_each_hashes_to_its_line(tmp_path: Path) -> None:
    seen: list[Entry] = []
    path = tmp_path / "log.jsonl"
    log = FlightLog.open(
        LogSettings(path=path, group_entries=2), generate_key(), policy_hash="ab" * 32, inline_signing=True, on_entry=seen.append
    )
    log.start("test", ephemeral=True)
    log.append("descriptor", server="srv", descriptor_hash="11" * 32, data={"list": "tools", "items": [], "next_cursor": None})
    call = log.record(
        kind="call",
        server="srv",
        tool="echo",
        request_id=1,
        args_hash="22" * 32,
        decision="allow",
        rule="default.allow",
        reason="no rule denies this call",
        data={},
    )
    log.record(
        kind="result",
        server="srv",
        tool="echo",
        request_id={"big_int": str(2**64)},
        result_hash="33" * 32,
        data={"call": call, "is_error": False},
    )  # the template gives up on this id: signing_bytes makes the bytes
    log.close()
    lines = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    assert [entry.kind for entry in seen] == [line["kind"] for line in lines]
    assert [entry.seq for entry in seen] == list(range(len(lines)))
    for entry, line in zip(seen, lines, strict=True):
        assert entry_hash(entry.to_json()) == line["hash"]
    assert {"call", "result", "checkpoint", "seal"} <= {entry.kind for entry in seen}
    verify_file(path)


def test_a_log_without_an_observer_writes_the_same_bytes_as_one_with(tmp_path: Path) -> None:
    key = generate_key()

    def write(name: str, observe: bool) -> bytes:
        path = tmp_path / name
        log = FlightLog.open(
            LogSettings(path=path),
            key,
            policy_hash=None,
            session="5e" * 16,
            clock=lambda: "2026-01-01T00:00:00.000000Z",
            inline_signing=True,
            on_entry=(lambda entry: None) if observe else None,
        )
        log.start("test", ephemeral=True, started="2026-01-01T00:00:00.000000Z")
        log.record(kind="call", server="srv", tool="echo", request_id="a", decision="deny", rule="r", reason="why", data={})
        log.close()
        return path.read_bytes()

    assert write("plain.jsonl", observe=False) == write("observed.jsonl", observe=True)


@pytest.mark.parametrize(
    "members",
    [
        pytest.param({"kind": "genesis", "data": {"format": 1}}, id="genesis"),
        pytest.param({"kind": "descriptor", "server": "srv", "labels": ["b", "a"], "data": {"list": "tools"}}, id="labels-sorted"),
        pytest.param({"kind": "call", "request_id": {"big_int": "1"}, "decision": "deny", "rule": "r", "reason": "x"}, id="call"),
        pytest.param({"kind": "seal", "reason": "clean shutdown", "v": 2}, id="seal"),
    ],
)
def test_entry_json_is_the_entrys_json_without_building_it(members: dict[str, Any]) -> None:
    header = {"session": "s", "seq": 3, "ts": "t", "key_id": "k", "prev": "p", "policy_hash": None}
    assert entry_json(**header, **members) == Entry(**header, **members).to_json()
    assert list(entry_json(**header, **members)) == list(MEMBERS)


@pytest.mark.parametrize(
    ("members", "error"),
    [
        pytest.param({"kind": "call", "tol": "x"}, TypeError, id="unknown-member"),
        pytest.param({"kind": "call", "session": None}, TypeError, id="missing-member"),
        pytest.param({"kind": "nonsense"}, ValueError, id="unknown-kind"),
    ],
)
def test_entry_json_refuses_what_entry_refuses(members: dict[str, Any], error: type[Exception]) -> None:
    header = {"session": "s", "seq": 3, "ts": "t", "key_id": "k", "prev": "p", "policy_hash": None}
    if members.get("session", "") is None:
        del header["session"]
        del members["session"]
    with pytest.raises(error):
        Entry(**{**header, **members})
    with pytest.raises(error):
        entry_json(**{**header, **members})
