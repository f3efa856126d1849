"""Batch signatures of a flight log: the entries no signature covers yet, the timer that signs
them in batches on the event-loop thread, and (fsync mode `group`) the thread that fsyncs each
batch.

After at most `group_entries` entries or `group_ms` milliseconds, the loop thread signs the
Merkle root (RFC 6962) of the entries written since the last batch (one signature per batch)
and has the log append a `checkpoint` entry with that signature. In mode `group` a thread
then fsyncs once per batch, after the batch and its checkpoint are written; the next batch
waits for that fsync, and then for `group_ms` unless it is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Protocol

import structlog

from gateway.errors import EvidenceUnavailable
from gateway.evidence import merkle

log = structlog.get_logger("airlock.flightlog")

#: The shortest wait before the batch timer looks again while the last batch's fsync runs.
_SYNC_POLL_S: Final = 0.001


class BatchedLog(Protocol):
    """What batches need of their log: whose entries they are, and the key that signs now."""

    @property
    def session(self) -> str: ...

    @property
    def key_id(self) -> str: ...

    def sign_batch(self, statement: Mapping[str, Any]) -> str: ...

    def write_checkpoint(self, statement: Mapping[str, Any], signature: str) -> None: ...


class FsyncThread:
    """The fsync thread of a log in mode `group`: one fsync of the file per `request`, off the
    event loop. It syncs through its own descriptor of the file, so closing the log's never
    races with it. The loop learns that an fsync is done by looking (`busy`, `done_at`), not by
    being woken: this thread runs no Python but the loop below, so it hardly ever takes the GIL
    from the loop thread."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd = os.dup(fd)
        self._path = path
        self._requests: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._requested = 0
        self._done = 0
        #: `time.monotonic()` when the last fsync returned.
        self.done_at = 0.0
        self._thread = threading.Thread(target=self._run, name="airlock-fsync", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._done != self._requested

    def request(self) -> None:
        self._requested += 1
        self._requests.put(True)

    def stop(self) -> None:
        """Let the running fsync finish (waiting for it), then end the thread."""
        self._requests.put(False)
        self._thread.join()

    def _run(self) -> None:
        try:
            while self._requests.get():
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    with contextlib.suppress(Exception):  # nothing may end this thread: batches wait for it
                        log.error("flight log fsync failed; the next batch tries again", path=str(self._path), error=str(exc))
                self.done_at = time.monotonic()
                self._done += 1
        finally:
            os.close(self._fd)


class Batches:
    """The entries of one log that no signature covers yet, and when they are signed. `inline`:
    batches are signed as soon as they are full, within `add` (no timer, no thread). `sync`:
    fsync each batch (the log's fsync mode `group`)."""

    def __init__(self, owner: BatchedLog, fd: int, path: Path, *, sync: bool, group_entries: int, group_ms: float, inline: bool) -> None:
        self._owner = owner
        self._fd = fd
        self._path = path
        self._sync = sync
        self._group_entries = max(1, group_entries)
        self._group_s = max(0.0, group_ms) / 1000
        self._inline = inline
        self._pending: list[bytes] = []  # raw hashes written since the last signed batch
        self._first = 0
        self._real = 0  # of which not checkpoints
        self._timer: asyncio.TimerHandle | None = None
        self._syncer: FsyncThread | None = None  # mode `group`: the fsync thread, from the first batch
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, raw_digest: bytes, seq: int) -> None:
        """The entry `seq` (its raw hash), not a checkpoint, was chained: a later checkpoint
        must cover it. It counts towards the batch, which is signed now if it is full (and the
        last batch's fsync is done), else by the batch timer."""
        pending = self._pending
        if not pending:
            self._first = seq
        pending.append(raw_digest)
        self._real += 1
        if self._timer is None or self._real >= self._group_entries:
            self._schedule()

    def add_checkpoint(self, raw_digest: bytes, seq: int) -> None:
        """The checkpoint `seq` was chained: the next one covers it, but it starts no batch."""
        if not self._pending:
            self._first = seq
        self._pending.append(raw_digest)

    def covered(self) -> None:
        """A self-signed entry was chained: it covers, through the chain, every entry before it."""
        self._pending = []
        self._real = 0

    def _schedule(self) -> None:
        if self._inline:
            if self._real >= self._group_entries:
                self.sign_now()
            return
        if self._real >= self._group_entries and not (self._syncer is not None and self._syncer.busy):
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._batch()
        elif self._timer is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._timer = loop.call_later(self._group_s, self._on_timer)

    def _on_timer(self) -> None:
        """The batch timer. A batch waits for the last batch's fsync, and then (unless it is
        full) for `group_ms` after it: batches and fsyncs come no more often than that."""
        self._timer = None
        if self._real == 0:
            return
        assert self._loop is not None
        if self._syncer is not None:
            if self._syncer.busy:
                # The fsync returns later than now, so the batch may not start before `group_ms`
                # from now: look again then (a full batch starts at the first `record` after it).
                self._timer = self._loop.call_later(max(self._group_s, _SYNC_POLL_S), self._on_timer)
                return
            wait = self._syncer.done_at + self._group_s - time.monotonic()
            if wait > 0 and self._real < self._group_entries:
                self._timer = self._loop.call_later(wait, self._on_timer)
                return
        self._batch()

    def _take(self) -> tuple[dict[str, Any], list[bytes]]:
        """The statement for everything pending, with the Merkle root of the batch (one pass
        over it). The caller writes the batch's checkpoint, which writes any queued lines
        before it, and only then syncs: the batch's fsync covers every entry it signs."""
        first, hashes = self._first, self._pending
        statement = {
            "session": self._owner.session,
            "key_id": self._owner.key_id,
            "first": first,
            "last": first + len(hashes) - 1,
            "root": merkle.root(hashes).hex(),
            "head": hashes[-1].hex(),
        }
        self._pending = []
        self._real = 0
        return statement, hashes

    def sign_now(self) -> None:
        """Sign the pending entries, write the checkpoint and (`sync`) fsync, all before
        returning."""
        if self._real:
            statement, _ = self._take()
            self._owner.write_checkpoint(statement, self._owner.sign_batch(statement))
            if self._sync:
                os.fsync(self._fd)

    def _batch(self) -> None:
        """Sign the pending entries and write the checkpoint now, then (`sync`) have the
        fsync thread sync the file: the batch and its checkpoint. The loop thread makes the one
        signature a batch takes (cheaper than handing it to a thread and back, on a machine
        whose cores the client and the server use too); the fsync, which waits for the disk,
        runs on the thread. Failures are logged: a lost line is reported by the next `flush`,
        and a batch that could not be signed is covered by the next one."""
        statement, hashes = self._take()
        try:
            signature = self._owner.sign_batch(statement)
        except Exception:
            # Put the batch back in front, so that the next batch covers it: checkpoints must
            # cover every entry, in order.
            log.exception("signing a flight-log batch failed; the next batch will cover these entries")
            self._first = statement["first"]
            self._pending = hashes + self._pending
            self._real += len(hashes)
            return
        try:
            self._owner.write_checkpoint(statement, signature)  # and the lines queued before it
        except EvidenceUnavailable as exc:
            log.error("flight log write failed", error=exc.message)
            return
        if self._sync:
            if self._syncer is None:
                self._syncer = FsyncThread(self._fd, self._path)
            self._syncer.request()

    def stop_timer(self) -> None:
        """Stop the batch timer (batches are signed on the loop thread, so none is half done);
        the caller then signs the rest itself (`sign_now`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        """Stop the timer and end the fsync thread (after the fsync it runs)."""
        self.stop_timer()
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
