"""Deferred flight-log writes and what the relay takes back when they fail.

- `FlightLog.defer_writes` / `flush`: hot-path entries are queued and written with one `write`;
  a refused write fails the log for good (`EvidenceUnavailable`).
- `Relay.track_uncommitted` / `commit` / `withdraw`: what was passed on since the last written
  log chunk is taken back (and answered with the error) when that chunk cannot be written.
- `LineWriter.discard`: the withdrawn lines leave the outgoing buffers, by identity.

No event loop is needed except where a test says so: the flight logs here sign inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import EVIDENCE_UNAVAILABLE, EvidenceUnavailable, GatewayError, PolicyDenied
from gateway.evidence.failures import LogUnsealed
from gateway.evidence.flightlog import FlightLog, FsyncMode, LogSettings
from gateway.evidence.signing import generate_key
from gateway.evidence.verify import verify_file, verify_lines
from gateway.mediation.interface import Forward, PassThrough, Refuse, Verdict
from gateway.protocol import jsonrpc
from gateway.protocol.jsonrpc import JsonObject, RequestId
from gateway.protocol.pipes import LineWriter
from gateway.session.evidence import LineTrace, WriteAhead
from gateway.session.relay import Relay
from tests.unit.helpers import policy_mediator

SESSION = "5e" * 16

# -- flight-log harness -------------------------------------------------------------------


def _open_file_log(path: Path, *, group_entries: int = 256) -> FlightLog:
    """A log on a new file, started (genesis written), signing inline."""
    log = FlightLog.open(LogSettings(path=path, group_entries=group_entries), generate_key(), policy_hash=None, inline_signing=True)
    log.start("test", ephemeral=True)
    return log


def _own_fd_log(path: Path, *, group_entries: int = 256, inline: bool = True, fsync: FsyncMode = "group") -> tuple[FlightLog, int]:
    """A started log on a file whose descriptor the test owns (to count its writes, or to make
    them fail later)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    log = FlightLog(
        fd, path, generate_key(), session=SESSION, policy_hash=None, fsync=fsync, group_entries=group_entries, inline_signing=inline
    )
    log.start("test", ephemeral=True)
    return log, fd


def _fill_disk(fd: int) -> None:
    """From now on every write to `fd` fails with ENOSPC (the descriptor becomes /dev/full)."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        os.dup2(full, fd)
    finally:
        os.close(full)


def _dev_full_log(*, group_entries: int = 256) -> FlightLog:
    """A log every write to which fails (not started: the genesis entry could not be written)."""
    fd = os.open("/dev/full", os.O_WRONLY)
    key = generate_key()
    return FlightLog(fd, Path("/dev/full"), key, session=SESSION, policy_hash=None, group_entries=group_entries, inline_signing=True)


def _record(log: FlightLog, request_id: Any) -> str:
    """A `call` entry as `PolicyMediator` records an allowed call."""
    return log.record(
        kind="call",
        server="srv",
        tool="echo",
        request_id=request_id,
        args_hash="ab" * 32,
        decision="allow",
        rule="default.allow",
        reason="no rule denies this call",
        data={},
    )


def _entries(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _lines(path: Path) -> list[bytes]:
    with open(path, "rb") as stream:
        return list(stream)


def _assert_unavailable(error: BaseException, path: Path) -> None:
    assert isinstance(error, EvidenceUnavailable)
    assert isinstance(error, GatewayError)
    assert error.code == EVIDENCE_UNAVAILABLE
    assert str(path) in error.message
    assert "cannot be written" in error.message


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "flight.jsonl"


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, fd: int) -> list[int]:
    """Count calls of `os.<name>` (the flight log writes and fsyncs through `os`) on `fd`."""
    calls: list[int] = []
    real = getattr(os, name)

    def counting(target: int, *args: Any) -> Any:
        if target == fd:
            calls.append(target)
        return real(target, *args)

    monkeypatch.setattr(os, name, counting)
    return calls


# -- deferred writes on a real file -------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 7, 50])
def test_deferred_records_reach_the_file_only_at_flush_and_then_verify(log_path: Path, count: int) -> None:
    log = _open_file_log(log_path)
    log.defer_writes()
    before = log_path.read_bytes()
    digests = [_record(log, request_id) for request_id in range(count)]
    assert log_path.read_bytes() == before
    log.flush()
    entries = _entries(log_path)
    assert [e["kind"] for e in entries] == ["genesis"] + ["call"] * count
    assert [e["seq"] for e in entries] == list(range(count + 1))
    assert [e["hash"] for e in entries[1:]] == digests
    assert [e["request_id"] for e in entries[1:]] == list(range(count))
    assert all(later["prev"] == earlier["hash"] for earlier, later in itertools.pairwise(entries))
    log.close()
    report = verify_file(log_path)
    assert report.sealed
    assert report.kinds["call"] == count
    assert verify_lines(_lines(log_path)).entries == report.entries


def test_flush_writes_every_queued_line_with_one_write(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, fd = _own_fd_log(log_path)
    log.defer_writes()
    count_writes = _count_calls(monkeypatch, "write", fd)
    for request_id in range(5):
        _record(log, request_id)
    assert count_writes == []
    log.flush()
    assert len(count_writes) == 1
    log.close()
    verify_file(log_path)


def test_flush_with_nothing_queued_writes_nothing(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, fd = _own_fd_log(log_path)
    log.defer_writes()
    count_writes = _count_calls(monkeypatch, "write", fd)
    before = log_path.read_bytes()
    log.flush()
    _record(log, 1)
    log.flush()
    written = log_path.read_bytes()
    log.flush()
    log.flush()
    assert len(count_writes) == 1
    assert log_path.read_bytes() == written != before
    log.close()
    verify_file(log_path)


def test_without_defer_writes_every_record_is_written_before_it_returns(log_path: Path) -> None:
    log = _open_file_log(log_path)
    digest = _record(log, 1)
    assert _entries(log_path)[-1]["hash"] == digest
    log.flush()  # nothing queued: a no-op
    log.close()
    verify_file(log_path)


def test_a_deferred_flush_in_mode_always_is_fsynced(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, fd = _own_fd_log(log_path, fsync="always")
    log.defer_writes()
    synced = _count_calls(monkeypatch, "fsync", fd)
    _record(log, 1)
    _record(log, 2)
    assert synced == []
    log.flush()
    assert len(synced) == 1
    log.close()
    verify_file(log_path)


def test_an_entry_that_is_not_deferred_writes_the_queued_lines_first(log_path: Path) -> None:
    log = _open_file_log(log_path)
    log.defer_writes()
    first = _record(log, 1)
    second = _record(log, 2)
    descriptor = log.append("descriptor", server="srv", descriptor_hash="cd" * 32, data={"tools": [], "next_cursor": None})
    # Written at once, and behind the entries it chains to.
    assert [e["hash"] for e in _entries(log_path)[1:]] == [first, second, descriptor]
    third = _record(log, 3)
    log.flush()
    assert _entries(log_path)[-1]["hash"] == third
    log.close()
    assert verify_file(log_path).kinds["descriptor"] == 1


@pytest.mark.parametrize("count", [4, 5, 9, 13])
def test_a_batch_signature_in_deferred_mode_writes_the_queued_lines_before_its_checkpoint(log_path: Path, count: int) -> None:
    log = _open_file_log(log_path, group_entries=4)
    log.defer_writes()
    digests = [_record(log, request_id) for request_id in range(count)]
    batches = count // 4
    # Every fourth record signs a batch: its lines and the checkpoint are written without a flush.
    written = _entries(log_path)
    assert [e["kind"] for e in written] == ["genesis"] + (["call"] * 4 + ["checkpoint"]) * batches
    log.flush()
    entries = _entries(log_path)
    assert [e["hash"] for e in entries if e["kind"] == "call"] == digests
    checkpoints = [e for e in entries if e["kind"] == "checkpoint"]
    assert len(checkpoints) == batches
    first = 1
    for index, checkpoint in enumerate(checkpoints):
        statement = checkpoint["data"]
        # The batch is every entry since the last one (the previous checkpoint included), in order.
        assert (statement["first"], statement["last"]) == (first, checkpoint["seq"] - 1)
        assert statement["count"] == statement["last"] - statement["first"] + 1
        assert statement["head"] == digests[4 * index + 3] == entries[checkpoint["seq"] - 1]["hash"]
        first = checkpoint["seq"]
    log.close()
    report = verify_file(log_path)
    assert report.sealed
    assert report.checkpoints >= batches
    assert report.unsigned_tail == 0


def test_abandon_writes_the_queued_lines_and_leaves_the_log_unsealed(log_path: Path) -> None:
    log = _open_file_log(log_path)
    log.defer_writes()
    digests = [_record(log, request_id) for request_id in range(3)]
    log.abandon()
    entries = _entries(log_path)
    assert [e["hash"] for e in entries[1:]] == digests
    with pytest.raises(LogUnsealed) as caught:
        verify_file(log_path)
    assert caught.value.report is not None
    assert caught.value.report.entries == 4
    assert not caught.value.report.sealed
    log.abandon()  # twice: nothing more
    log.close()  # after abandon: nothing either
    assert len(_entries(log_path)) == 4


# -- group commit: batches signed on the loop thread, fsynced on the fsync thread ------------

FSYNC_THREAD = "airlock-fsync"


class Fsyncs:
    """Stands in for `os.fsync` (the flight log syncs through `os`): records, for every fsync,
    whether it ran on the fsync thread and how long the file was then, tells the loop when one
    has started, and holds the fsync thread in the first `held` fsyncs until `release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, loop: asyncio.AbstractEventLoop, *, held: int = 0) -> None:
        self.seen: list[tuple[bool, int]] = []
        self.started = asyncio.Queue[int]()
        self._loop = loop
        self._held = held
        self._gate = threading.Event()
        real = os.fsync

        def fsync(fd: int) -> None:
            on_thread = threading.current_thread().name == FSYNC_THREAD
            self.seen.append((on_thread, os.fstat(fd).st_size))
            loop.call_soon_threadsafe(self.started.put_nowait, len(self.seen))
            if on_thread and len(self.seen) <= self._held:
                self._gate.wait(10)
            real(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def release(self) -> None:
        self._gate.set()

    async def next_start(self) -> int:
        async with asyncio.timeout(10):
            return await self.started.get()


def _fsync_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == FSYNC_THREAD]


def test_in_mode_group_a_batch_is_fsynced_on_the_fsync_thread_after_its_checkpoint_is_written(
    log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        log, _ = _own_fd_log(log_path, group_entries=4, inline=False)
        log.defer_writes()
        fsyncs = Fsyncs(monkeypatch, asyncio.get_running_loop())
        for request_id in range(4):
            _record(log, request_id)  # the fourth fills the batch: signed and written now
        assert [e["kind"] for e in _entries(log_path)] == ["genesis"] + ["call"] * 4 + ["checkpoint"]
        assert await fsyncs.next_start() == 1
        assert fsyncs.seen == [(True, log_path.stat().st_size)]  # the batch and its checkpoint
        log.close()

    asyncio.run(scenario())
    assert _fsync_threads() == []
    report = verify_file(log_path)
    assert report.sealed
    assert report.checkpoints == 1  # nothing was written after it but the seal


def test_in_mode_group_the_next_batch_waits_for_the_last_batchs_fsync(log_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        log, _ = _own_fd_log(log_path, group_entries=2, inline=False)
        log.defer_writes()
        fsyncs = Fsyncs(monkeypatch, asyncio.get_running_loop(), held=1)
        _record(log, 1)
        _record(log, 2)
        assert await fsyncs.next_start() == 1  # and held there
        first_batch = log_path.stat().st_size
        for request_id in range(3, 7):
            _record(log, request_id)  # full batches, but the last fsync has not returned
        log.flush()
        assert [e["kind"] for e in _entries(log_path)].count("checkpoint") == 1
        fsyncs.release()
        assert await fsyncs.next_start() == 2  # the waiting batch: signed, written, then synced
        entries = _entries(log_path)
        assert [e["kind"] for e in entries].count("checkpoint") == 2
        assert entries[-1]["kind"] == "checkpoint"
        assert entries[-1]["data"]["count"] == 5  # calls 3 to 6 and the first checkpoint
        assert fsyncs.seen == [(True, first_batch), (True, log_path.stat().st_size)]
        log.close()

    asyncio.run(scenario())
    assert _fsync_threads() == []
    assert verify_file(log_path).sealed


@pytest.mark.parametrize("fsync", ["group", "always", "off"])
def test_closing_a_log_ends_its_fsync_thread_and_leaves_no_descriptor_open(log_path: Path, fsync: FsyncMode) -> None:
    descriptors = set(os.listdir("/proc/self/fd"))

    async def scenario() -> None:
        log = FlightLog.open(LogSettings(path=log_path, fsync=fsync, group_entries=2), generate_key(), policy_hash=None)
        log.start("test", ephemeral=True)
        for request_id in range(5):
            _record(log, request_id)
        assert len(_fsync_threads()) == (1 if fsync == "group" else 0)
        await log.aclose()

    asyncio.run(scenario())
    assert _fsync_threads() == []
    assert set(os.listdir("/proc/self/fd")) == descriptors
    assert verify_file(log_path).sealed


def test_abandoning_a_group_log_ends_its_fsync_thread(log_path: Path) -> None:
    async def scenario() -> None:
        log, _ = _own_fd_log(log_path, group_entries=2, inline=False)
        for request_id in range(3):
            _record(log, request_id)
        assert len(_fsync_threads()) == 1
        log.abandon()

    asyncio.run(scenario())
    assert _fsync_threads() == []
    with pytest.raises(LogUnsealed):
        verify_file(log_path)


# -- a log that cannot be written ----------------------------------------------------------


def test_a_refused_flush_raises_evidence_unavailable_naming_the_path() -> None:
    log = _dev_full_log()
    log.defer_writes()
    try:
        _record(log, 1)  # queued: nothing is written yet, so nothing fails yet
        _record(log, 2)
        with pytest.raises(EvidenceUnavailable) as caught:
            log.flush()
        _assert_unavailable(caught.value, Path("/dev/full"))
        assert "No space left on device" in caught.value.message
    finally:
        log.abandon()


def test_a_failed_log_stays_failed() -> None:
    log = _dev_full_log()
    log.defer_writes()
    try:
        _record(log, 1)
        with pytest.raises(EvidenceUnavailable) as first:
            log.flush()
        with pytest.raises(EvidenceUnavailable) as later_record:
            _record(log, 2)
        assert later_record.value is first.value
        with pytest.raises(EvidenceUnavailable) as later_append:
            log.append("descriptor", server="srv", data={"tools": []})
        assert later_append.value is first.value
        log.flush()  # nothing queued: nothing at stake, no error
        log.flush()
        with pytest.raises(EvidenceUnavailable):
            _record(log, 3)  # still failed after the quiet flushes
    finally:
        log.close()


def test_a_write_that_is_not_deferred_fails_the_log_too() -> None:
    log = _dev_full_log()
    try:
        with pytest.raises(EvidenceUnavailable) as caught:
            log.start("test", ephemeral=True)
        _assert_unavailable(caught.value, Path("/dev/full"))
        with pytest.raises(EvidenceUnavailable) as later:
            _record(log, 1)
        assert later.value is caught.value
    finally:
        log.close()


def test_a_refused_flush_leaves_what_was_written_before_intact_and_close_leaves_no_seal(log_path: Path) -> None:
    log, fd = _own_fd_log(log_path)
    log.defer_writes()
    written = [_record(log, request_id) for request_id in range(3)]
    log.flush()
    _record(log, 3)
    _record(log, 4)
    _fill_disk(fd)
    with pytest.raises(EvidenceUnavailable) as caught:
        log.flush()
    _assert_unavailable(caught.value, log_path)
    with pytest.raises(EvidenceUnavailable):
        _record(log, 5)
    log.close()  # a failed log: closed without a seal, and without raising
    log.close()
    entries = _entries(log_path)
    assert [e["hash"] for e in entries[1:]] == written
    assert "seal" not in {e["kind"] for e in entries}
    with pytest.raises(LogUnsealed) as unsealed:
        verify_file(log_path)  # intact as far as it goes: unsealed, nothing worse
    assert unsealed.value.report is not None
    assert unsealed.value.report.entries == 4


def test_abandon_on_a_failed_log_does_not_raise(log_path: Path) -> None:
    log, fd = _own_fd_log(log_path)
    log.defer_writes()
    _record(log, 1)
    _fill_disk(fd)
    with pytest.raises(EvidenceUnavailable):
        log.flush()
    log.abandon()
    assert [e["kind"] for e in _entries(log_path)] == ["genesis"]


def test_abandon_writes_queued_lines_best_effort_when_the_disk_refuses_them(log_path: Path) -> None:
    log, fd = _own_fd_log(log_path)
    log.defer_writes()
    _record(log, 1)
    _fill_disk(fd)
    log.abandon()  # the write fails; abandon still closes quietly
    assert [e["kind"] for e in _entries(log_path)] == ["genesis"]
    with pytest.raises(GatewayError, match="closed"):
        _record(log, 2)


@pytest.mark.parametrize("inline", [pytest.param(True, id="inline-signing"), pytest.param(False, id="signer-thread")])
def test_entries_lost_when_a_batch_writes_the_queue_make_the_next_flush_fail(log_path: Path, inline: bool) -> None:
    # The caller flushes before it forwards what the queued entries decide, and forwards if the
    # flush returns. When a batch (started by the record that fills it) writes the queue and the
    # disk refuses it, those entries are gone: the caller's flush must not report success.
    async def scenario() -> None:
        log, fd = _own_fd_log(log_path, group_entries=4, inline=inline)
        log.defer_writes()
        try:
            for request_id in range(3):
                _record(log, request_id)
            _fill_disk(fd)
            with contextlib.suppress(EvidenceUnavailable):  # refusing this entry itself is fine
                _record(log, 3)  # fills the batch: its write of the queue is refused
            with pytest.raises(EvidenceUnavailable):
                log.flush()  # the three entries queued before were never written
        finally:
            log.close()

    asyncio.run(scenario())  # the signer thread's batches are scheduled on a running loop
    assert [e["kind"] for e in _entries(log_path)] == ["genesis"]


# -- relay harness ---------------------------------------------------------------------------

ERROR = EvidenceUnavailable("the flight log /tmp/x.jsonl cannot be written (No space left on device); calls are refused")


class Wire:
    """A relay writing into two lists, tracking what it passes on."""

    def __init__(self, mediator: Any = None, *, track: bool = True) -> None:
        self.to_client: list[bytes] = []
        self.to_upstream: list[bytes] = []
        self.relay = Relay(mediator if mediator is not None else PassThrough(), self.to_client.append, self.to_upstream.append)
        if track:
            self.relay.track_uncommitted()

    def request(self, request_id: RequestId, method: str = "tools/call") -> bytes:
        """Send a request from the client; returns the line forwarded for it."""
        sent = len(self.to_upstream)
        self.relay.from_client(_request(request_id, method))
        assert len(self.to_upstream) == sent + 1
        return self.to_upstream[-1]

    def respond(self, request_id: RequestId) -> bytes:
        """The upstream answers; returns the line relayed to the client."""
        sent = len(self.to_client)
        self.relay.from_upstream(_line({"jsonrpc": "2.0", "id": request_id, "result": {"content": [], "echo": request_id}}))
        assert len(self.to_client) == sent + 1
        return self.to_client[-1]

    def withdraw(self) -> tuple[set[int], list[Any]]:
        """withdraw(ERROR): the line ids it returns and the messages it sent the client."""
        sent = len(self.to_client)
        withdrawn = self.relay.withdraw(ERROR)
        return withdrawn, [jsonrpc.decode(line) for line in self.to_client[sent:]]


def _line(message: Any) -> bytes:
    return jsonrpc.encode(message)


def _request(request_id: RequestId, method: str = "tools/call") -> bytes:
    params: JsonObject = {"name": "echo", "arguments": {"message": "hi"}} if method == "tools/call" else {}
    return _line({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})


def _refusal(request_id: RequestId) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "error": ERROR.to_error_object()}


class RefuseCalls(PassThrough):
    """Refuses every tools/call, forwards everything else."""

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        if method == "tools/call":
            return Refuse(PolicyDenied("test.deny", "no calls"))
        return Forward()

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> JsonObject:
        return message

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        return None


class EncodedResponses(PassThrough):
    """Forwards everything; hands responses back already encoded (as `PolicyMediator` does)."""

    def on_client_request(self, method: str, message: JsonObject) -> Verdict:
        return Forward(message={**message, "params": {"rewritten": True}})

    def on_upstream_response(self, method: str, context: Any, message: JsonObject) -> bytes:
        return jsonrpc.encode(message)

    def on_upstream_notification(self, method: str, message: JsonObject) -> None:
        return None


# -- Relay.withdraw -----------------------------------------------------------------------------


def test_withdraw_answers_every_request_forwarded_since_commit_with_the_error() -> None:
    wire = Wire()
    forwarded = [wire.request(1), wire.request("a", "ping"), wire.request(2**60, "resources/read")]
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(line) for line in forwarded}
    assert answers == [_refusal(1), _refusal("a"), _refusal(2**60)]
    assert answers[0]["error"]["code"] == EVIDENCE_UNAVAILABLE
    assert wire.relay.pending_client_requests == 0
    assert wire.relay.counters.refused == 3


def test_a_late_response_to_a_withdrawn_request_is_dropped() -> None:
    wire = Wire()
    wire.request(1)
    wire.withdraw()
    sent = len(wire.to_client)
    wire.relay.from_upstream(_line({"jsonrpc": "2.0", "id": 1, "result": {}}))
    assert len(wire.to_client) == sent
    assert wire.relay.counters.unsolicited == 1


def test_withdraw_answers_a_relayed_response_with_the_error_instead() -> None:
    wire = Wire()
    wire.request(7)
    wire.relay.commit()
    relayed = wire.respond(7)
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(relayed)}
    assert answers == [_refusal(7)]


def test_a_request_forwarded_and_answered_in_the_same_window_gets_exactly_one_error() -> None:
    wire = Wire()
    forwarded = wire.request(1)
    relayed = wire.respond(1)
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(forwarded), id(relayed)}
    assert answers == [_refusal(1)]
    assert wire.relay.counters.refused == 1


def test_an_id_reused_in_the_same_window_gets_one_error_per_request() -> None:
    wire = Wire()
    wire.request(1)
    wire.respond(1)
    wire.request(1)  # allowed again once answered
    _, answers = wire.withdraw()
    assert answers == [_refusal(1), _refusal(1)]
    assert wire.relay.pending_client_requests == 0


def test_a_method_sent_as_a_notification_is_withdrawn_without_an_answer() -> None:
    wire = Wire()
    wire.relay.from_client(_line({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo", "arguments": {}}}))
    assert len(wire.to_upstream) == 1
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(wire.to_upstream[0])}
    assert answers == []


@pytest.mark.parametrize(
    "notification",
    [
        pytest.param({"jsonrpc": "2.0", "method": "notifications/initialized"}, id="initialized"),
        pytest.param({"jsonrpc": "2.0", "method": "notifications/roots/list_changed"}, id="roots-list-changed"),
        pytest.param({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}}, id="progress"),
    ],
)
def test_notifications_are_not_answered_by_withdraw(notification: JsonObject) -> None:
    wire = Wire()
    wire.relay.from_client(_line(notification))
    assert len(wire.to_upstream) == 1
    _, answers = wire.withdraw()
    assert answers == []
    assert wire.to_client == []


def test_a_request_cancelled_in_the_same_window_is_not_answered() -> None:
    wire = Wire()
    forwarded = wire.request(1)
    wire.relay.from_client(_line({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}))
    withdrawn, answers = wire.withdraw()
    assert id(forwarded) in withdrawn
    assert answers == []  # no answer is owed after a cancellation


def test_after_commit_withdraw_takes_nothing_back_and_sends_nothing() -> None:
    wire = Wire()
    wire.request(1)
    wire.request(2)
    wire.respond(1)
    wire.relay.from_client(_line({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo"}}))
    wire.relay.commit()
    client, upstream = list(wire.to_client), list(wire.to_upstream)
    withdrawn, answers = wire.withdraw()
    assert withdrawn == set()
    assert answers == []
    assert (wire.to_client, wire.to_upstream) == (client, upstream)
    assert wire.relay.pending_client_requests == 1  # request 2 is still open, and answered later
    wire.respond(2)
    assert jsonrpc.decode(wire.to_client[-1])["result"]["echo"] == 2


def test_withdraw_twice_takes_back_once() -> None:
    wire = Wire()
    wire.request(1)
    first, answers = wire.withdraw()
    assert len(first) == 1 and len(answers) == 1
    assert wire.withdraw() == (set(), [])


def test_tracking_goes_on_after_withdraw_and_commit() -> None:
    wire = Wire()
    wire.request(1)
    wire.withdraw()
    later = wire.request(2)
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(later)}
    assert answers == [_refusal(2)]
    wire.request(3)
    wire.relay.commit()
    assert wire.withdraw() == (set(), [])


def test_without_tracking_withdraw_takes_nothing_back() -> None:
    wire = Wire(track=False)
    wire.request(1)
    wire.respond(1)
    wire.request(2)
    wire.relay.commit()  # harmless without tracking
    assert wire.withdraw() == (set(), [])
    assert wire.relay.pending_client_requests == 1


def test_a_refused_request_is_not_withdrawn_and_gets_only_its_refusal() -> None:
    wire = Wire(RefuseCalls())
    wire.relay.from_client(_request(1))
    assert wire.to_upstream == []
    withdrawn, answers = wire.withdraw()
    assert withdrawn == set()
    assert answers == []
    assert [jsonrpc.decode(line)["id"] for line in wire.to_client] == [1]


def test_messages_from_the_upstreams_own_requests_are_not_withdrawn() -> None:
    wire = Wire()
    wire.relay.from_upstream(_line({"jsonrpc": "2.0", "id": 99, "method": "sampling/createMessage", "params": {}}))
    wire.relay.from_client(_line({"jsonrpc": "2.0", "id": 99, "result": {}}))
    wire.relay.from_upstream(_line({"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}))
    assert len(wire.to_client) == 2 and len(wire.to_upstream) == 1
    withdrawn, answers = wire.withdraw()
    assert withdrawn == set()
    assert answers == []


def test_the_lines_withdrawn_are_the_ones_sent_when_the_mediator_rewrites_and_encodes() -> None:
    wire = Wire(EncodedResponses())
    forwarded = wire.request(1)
    assert jsonrpc.decode(forwarded)["params"] == {"rewritten": True}
    wire.relay.commit()
    relayed = wire.respond(1)
    forwarded_again = wire.request(2)
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(relayed), id(forwarded_again)}
    assert answers == [_refusal(1), _refusal(2)]


def test_withdraw_with_an_error_carrying_data_sends_it() -> None:
    wire = Wire()
    wire.request(1)
    error = EvidenceUnavailable("cannot be written", data={"path": "/x"})
    wire.relay.withdraw(error)
    expected = {"code": EVIDENCE_UNAVAILABLE, "message": "cannot be written", "data": {"path": "/x"}}
    assert jsonrpc.decode(wire.to_client[-1])["error"] == expected


_OPS = st.lists(st.sampled_from(["request", "answer", "commit", "method-notification"]), max_size=30)


@settings(max_examples=200, deadline=None)
@given(ops=_OPS, data=st.data())
def test_withdraw_answers_each_uncommitted_exchange_once_and_takes_back_exactly_the_uncommitted_lines(
    ops: list[str], data: st.DataObject
) -> None:
    wire = Wire()
    committed_open: set[RequestId] = set()  # forwarded before the last commit, not answered
    window_open: set[RequestId] = set()  # forwarded since the last commit, not answered
    window_answered: set[RequestId] = set()  # answered since the last commit
    window_lines: list[bytes] = []  # every line passed on since the last commit
    for number, op in enumerate(ops):
        if op == "request":
            request_id: RequestId = number if number % 2 else f"r{number}"
            window_lines.append(wire.request(request_id, data.draw(st.sampled_from(["tools/call", "ping", "resources/read"]))))
            window_open.add(request_id)
        elif op == "answer" and (committed_open or window_open):
            request_id = data.draw(st.sampled_from(sorted(committed_open | window_open, key=repr)))
            window_lines.append(wire.respond(request_id))
            committed_open.discard(request_id)
            window_open.discard(request_id)
            window_answered.add(request_id)
        elif op == "method-notification":
            wire.relay.from_client(_line({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "echo"}}))
            window_lines.append(wire.to_upstream[-1])
        elif op == "commit":
            wire.relay.commit()
            committed_open |= window_open
            window_open, window_answered, window_lines = set(), set(), []
    withdrawn, answers = wire.withdraw()
    assert withdrawn == {id(line) for line in window_lines}
    answered = [message["id"] for message in answers]
    assert len(answered) == len(set(answered))  # never two answers for one request
    assert set(answered) == window_open | window_answered
    assert all(message == _refusal(message["id"]) for message in answers)
    assert wire.relay.pending_client_requests == len(committed_open)
    assert wire.withdraw() == (set(), [])


# -- LineWriter.discard -----------------------------------------------------------------------


class FakeTransport:
    """A write transport that keeps what it is given; `on_write` runs before each write."""

    def __init__(self, on_write: Any = None) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.on_write = on_write

    def write(self, data: bytes) -> None:
        if self.on_write is not None:
            self.on_write(data)
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0


def _distinct_lines(count: int) -> list[bytes]:
    return [f'{{"jsonrpc":"2.0","id":{n},"result":{{}}}}'.encode() for n in range(count)]


def _writer() -> tuple[LineWriter, FakeTransport]:
    writer, transport = LineWriter("test"), FakeTransport()
    writer.attach(transport)
    return writer, transport


@pytest.mark.parametrize(
    "dropped",
    [
        pytest.param({1, 3}, id="some"),
        pytest.param({0}, id="first"),
        pytest.param({4}, id="last"),
        pytest.param({0, 1, 2, 3}, id="all-but-last"),
        pytest.param({2}, id="middle"),
    ],
)
def test_discard_drops_exactly_those_lines_and_keeps_the_others_in_order(dropped: set[int]) -> None:
    writer, transport = _writer()
    lines = _distinct_lines(5)
    for line in lines:
        writer.add(line)
    writer.discard({id(lines[n]) for n in dropped})
    writer.flush()
    kept = [line for n, line in enumerate(lines) if n not in dropped]
    assert transport.writes == [b"".join(line + b"\n" for line in kept)]
    assert writer.written == len(kept)


def test_discard_goes_by_identity_not_by_equal_bytes() -> None:
    writer, transport = _writer()
    first = b"".join([b'{"jsonrpc":"2.0",', b'"method":"x"}'])
    second = b"".join([b'{"jsonrpc":"2.0",', b'"method":"x"}'])
    assert first == second and first is not second
    writer.add(first)
    writer.add(second)
    writer.discard({id(first)})
    writer.flush()
    assert transport.writes == [second + b"\n"]


@pytest.mark.parametrize("ids", [pytest.param(set(), id="empty"), pytest.param({id(object())}, id="unknown")])
def test_discard_of_nothing_buffered_changes_nothing(ids: set[int]) -> None:
    writer, transport = _writer()
    lines = _distinct_lines(3)
    for line in lines:
        writer.add(line)
    writer.discard(ids)
    writer.flush()
    assert transport.writes == [b"".join(line + b"\n" for line in lines)]


def test_discard_on_an_empty_buffer_and_of_every_line_writes_nothing() -> None:
    writer, transport = _writer()
    writer.discard({1, 2, 3})
    lines = _distinct_lines(2)
    for line in lines:
        writer.add(line)
    writer.discard({id(line) for line in lines})
    writer.flush()
    assert transport.writes == []
    assert writer.written == 0
    later = _distinct_lines(1)[0]
    writer.add(later)  # the writer goes on as usual
    writer.flush()
    assert transport.writes == [later + b"\n"]


def test_discard_before_the_transport_is_attached_keeps_the_rest_for_it() -> None:
    writer = LineWriter("test")
    lines = _distinct_lines(3)
    for line in lines:
        writer.add(line)
    writer.discard({id(lines[1])})
    writer.flush()  # not attached: kept
    transport = FakeTransport()
    writer.attach(transport)
    writer.flush()
    assert transport.writes == [lines[0] + b"\n" + lines[2] + b"\n"]


# -- composed: a log chunk, the relay and the writers (as `run_stdio` does per chunk) ------------


class Gateway:
    """`run_stdio`'s per-chunk plumbing without the pipes: a relay around a `PolicyMediator` that
    allows every call and records it (its lockfile pins `echo`, so calls need no `tools/list`
    first), a LineWriter per side, and the session's `WriteAhead` (which defers the log and
    tracks the relay). `end_chunk` commits, as every front does once a chunk has been relayed."""

    def __init__(self, log: FlightLog, path: Path) -> None:
        self.log = log
        self.path = path
        self.to_client, self.to_upstream = LineWriter("client"), LineWriter("upstream")
        self.client, self.upstream = FakeTransport(), FakeTransport(self._entries_first)
        self.to_client.attach(self.client)
        self.to_upstream.attach(self.upstream)
        self.relay = Relay(policy_mediator(pinned=["echo"], flight_log=log), self.to_client.add, self.to_upstream.add)
        self.write_ahead = WriteAhead(log, self.to_client)
        self.write_ahead.track(self.relay, self.to_upstream)

    def _entries_first(self, data: bytes) -> None:
        """Write-ahead: every call forwarded is in the log file before the upstream gets it."""
        logged = {entry["request_id"] for entry in _entries(self.path) if entry["kind"] == "call"}
        for line in data.splitlines():
            message = jsonrpc.decode(line)
            if message.get("method") == "tools/call":
                assert message["id"] in logged, f"call {message['id']} forwarded before its entry was in the flight log"

    def end_chunk(self) -> None:
        self.write_ahead.commit()

    def client_chunk(self, *messages: JsonObject) -> None:
        for message in messages:
            self.relay.from_client(_line(message))
        self.end_chunk()

    def upstream_chunk(self, *messages: JsonObject) -> None:
        for message in messages:
            self.relay.from_upstream(_line(message))
        self.end_chunk()

    def sent_upstream(self) -> list[Any]:
        return [jsonrpc.decode(line) for line in b"".join(self.upstream.writes).splitlines()]

    def sent_client(self) -> list[Any]:
        return [jsonrpc.decode(line) for line in b"".join(self.client.writes).splitlines()]


def _call(request_id: RequestId) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {"name": "echo", "arguments": {"n": request_id}}}


def _result(request_id: RequestId) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": f"r{request_id}"}]}}


def test_a_chunk_whose_entries_are_written_is_forwarded_after_them(log_path: Path) -> None:
    gateway = Gateway(_open_file_log(log_path), log_path)
    gateway.client_chunk(_call(1), _call(2), {"jsonrpc": "2.0", "method": "notifications/initialized"}, _call(3))
    assert len(gateway.upstream.writes) == 1  # one write per chunk, after the log's
    assert [m.get("id") for m in gateway.sent_upstream()] == [1, 2, None, 3]
    gateway.upstream_chunk(_result(1), _result(2), _result(3))
    assert [m["id"] for m in gateway.sent_client()] == [1, 2, 3]
    assert all("result" in m for m in gateway.sent_client())
    calls = [e for e in _entries(log_path) if e["kind"] == "call"]
    assert [(e["request_id"], e["tool"], e["decision"], e["rule"]) for e in calls] == [
        (n, "echo", "allow", "default.allow") for n in (1, 2, 3)
    ]
    gateway.log.close()
    report = verify_file(log_path)
    assert (report.kinds["call"], report.kinds["result"]) == (3, 3)


def test_a_chunk_whose_entries_cannot_be_written_is_withdrawn_and_refused(log_path: Path) -> None:
    log, fd = _own_fd_log(log_path)
    gateway = Gateway(log, log_path)
    gateway.client_chunk(_call(1))  # written and forwarded
    _fill_disk(fd)
    gateway.client_chunk(_call(2), {"jsonrpc": "2.0", "method": "notifications/initialized"}, _call(3))
    assert [m.get("id") for m in gateway.sent_upstream()] == [1, None]  # 2 and 3 never left
    assert [_unavailable(message, log_path) for message in gateway.sent_client()] == [2, 3]
    # The answer to 1 (forwarded before the disk filled) cannot be recorded either: withheld.
    gateway.upstream_chunk(_result(1))
    assert _unavailable(gateway.sent_client()[-1], log_path) == 1
    # The log stays failed: a later call is refused at once; a ping needs no evidence.
    gateway.client_chunk(_call(4), {"jsonrpc": "2.0", "id": 5, "method": "ping"})
    assert [m.get("id") for m in gateway.sent_upstream()] == [1, None, 5]
    assert _unavailable(gateway.sent_client()[-1], log_path) == 4
    gateway.upstream_chunk({"jsonrpc": "2.0", "id": 5, "result": {}})
    assert gateway.sent_client()[-1] == {"jsonrpc": "2.0", "id": 5, "result": {}}
    gateway.log.close()
    with pytest.raises(LogUnsealed):
        verify_file(log_path)  # what was written is intact: call 1, and no seal


def _unavailable(message: Any, path: Path) -> RequestId:
    """The id of `message`, an EvidenceUnavailable error naming the log at `path`."""
    assert set(message) == {"jsonrpc", "id", "error"}
    assert message["error"]["code"] == EVIDENCE_UNAVAILABLE
    assert str(path) in message["error"]["message"]
    assert "cannot be written" in message["error"]["message"]
    request_id: RequestId = message["id"]
    return request_id


def test_no_call_leaves_unrecorded_when_the_batch_that_fills_a_chunk_cannot_be_written(log_path: Path) -> None:
    # As the gateway runs: batches signed on a signer thread, started from the loop.
    async def scenario() -> Gateway:
        log, fd = _own_fd_log(log_path, group_entries=4, inline=False)
        gateway = Gateway(log, log_path)
        _fill_disk(fd)
        gateway.client_chunk(_call(1), _call(2), _call(3), _call(4), _call(5))
        log.close()
        return gateway

    gateway = asyncio.run(scenario())
    assert [e["kind"] for e in _entries(log_path)] == ["genesis"]
    assert gateway.sent_upstream() == []  # none of these calls is in the log
    assert sorted(_unavailable(message, log_path) for message in gateway.sent_client()) == [1, 2, 3, 4, 5]


# -- LineTrace: the client lines a re-encoding front (the hub) made from a relay's line ---------


def test_the_client_lines_made_from_a_relay_line_are_found_by_its_id_until_the_commit() -> None:
    sent: list[bytes] = []
    trace = LineTrace(sent.append, enabled=True)
    relay_line = _request(1)
    trace.from_relay(lambda line: [trace.to_client(_line({"re-encoded": n})) for n in range(2)])(relay_line)
    trace.to_client(_line({"made from": "nothing"}))  # not while a relay line is delivered: not traced
    assert trace.client_lines({id(relay_line)}) == {id(sent[0]), id(sent[1])}
    assert trace.client_lines({id(sent[2])}) == set()
    trace.clear()
    assert trace.client_lines({id(relay_line)}) == set()


def test_without_a_flight_log_nothing_is_traced() -> None:
    sent: list[bytes] = []
    trace = LineTrace(sent.append, enabled=False)
    relay_line = _request(1)
    trace.from_relay(trace.to_client)(relay_line)
    assert sent == [relay_line]
    assert trace.client_lines({id(relay_line)}) == set()
