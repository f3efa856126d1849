"""The flight-log writer: one writer per log, write-ahead, hash-chained, batch-signed.

`append` runs on the event-loop thread, in message order, so sequence numbers and `prev`
links can never fork however many calls are in flight. It writes the entry's line to the OS
before returning, so a decision is in the log before the call it decides is forwarded (the
entry survives a crash or `kill -9` of the gateway in every fsync mode). Signing is batched:
after at most `group_entries` entries or `group_ms` milliseconds, the loop thread signs the
Merkle root of the entries written since the last batch (one signature per batch) and appends
a `checkpoint` entry with that signature.

fsync modes:
- `always`: fsync after every entry, before `append` returns (durable against power loss).
- `group` (default): a thread fsyncs once per batch, after the batch and its checkpoint are
  written; the next batch waits for that fsync, and then for `group_ms` unless it is full.
- `off`: never fsync (the OS writes back when it likes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import EXIT_USAGE, EvidenceUnavailable, GatewayError
from gateway.evidence import merkle
from gateway.evidence.canonical import ENTRY_DOMAIN, EntryTemplate, signing_bytes
from gateway.evidence.entry import (
    FORMAT_VERSION,
    GENESIS_PREV,
    Decision,
    Kind,
    TimestampSource,
    batch_signing_bytes,
    build_entry,
    line_from_signed,
    now_timestamp,
)
from gateway.evidence.failures import SignatureInvalid
from gateway.evidence.rotation import verify_manifest
from gateway.evidence.signing import key_id, public_raw, public_text, sign

log = structlog.get_logger("airlock.flightlog")

FsyncMode = Literal["always", "group", "off"]
FSYNC_MODES: Final = ("always", "group", "off")


#: Members of a `record` entry whose type the caller does not fix (see `signing_bytes`):
#: the request id as the client sent it (after `log_request_id`) and the data object.
_HOT_INSPECT: Final = ("request_id", "data")
_DOMAIN_LENGTH: Final = len(ENTRY_DOMAIN)
_sha256: Final = hashlib.sha256
#: Kinds written through `record`: no signature of their own, no labels.
_CHAINED_KINDS: Final = ("call", "result", "checkpoint")
#: The shortest wait before the batch timer looks again while the last batch's fsync runs.
_SYNC_POLL_S: Final = 0.001


class _Syncer:
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


class LogOpenFailed(GatewayError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class LogSettings:
    path: Path
    fsync: FsyncMode = "group"
    group_entries: int = 1024
    group_ms: float = 10.0
    #: Keep raw arguments and results in entries (for replay); off by default: hashes only.
    store_raw: bool = False


def resolve_log_path(path: Path, session: str) -> Path:
    """A directory gets a new file per run (`airlock-<time>-<session>.jsonl`); a file path is
    used as given and must not exist yet."""
    if path.is_dir():
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        return path / f"airlock-{stamp}-{session[:8]}.jsonl"
    return path


class FlightLog:
    """Appends entries to one log file. Use `open`, `start`, then `append`, then `close`."""

    def __init__(
        self,
        fd: int,
        path: Path,
        key: Ed25519PrivateKey,
        *,
        session: str,
        policy_hash: str | None,
        fsync: FsyncMode = "group",
        group_entries: int = 1024,
        group_ms: float = 10.0,
        clock: TimestampSource = now_timestamp,
        inline_signing: bool = False,
    ) -> None:
        self.path = path
        self._fd = fd
        self._key = key
        self._key_id: str = key_id(key.public_key())
        self._session = session
        self._policy_hash = policy_hash
        self._template = self._make_template()
        self._fsync = fsync
        self._group_entries = max(1, group_entries)
        self._group_s = max(0.0, group_ms) / 1000
        self._clock = clock
        self._inline = inline_signing
        self._seq = 0
        self._prev = GENESIS_PREV
        self._pending: list[bytes] = []  # raw hashes written since the last signed batch
        self._pending_first = 0
        self._pending_real = 0  # of which not checkpoints
        self._timer: asyncio.TimerHandle | None = None
        self._syncer: _Syncer | None = None  # mode `group`: the fsync thread, from the first batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._deferred = False  # see `defer_writes`
        self._out: list[bytes] = []  # lines built but not yet written (deferred mode only)
        self._failed: EvidenceUnavailable | None = None
        self._lost = False  # lines were lost since the last `flush` (which reports it)
        self.entries_written = 0

    # The members every entry repeats: read-only, since `_template` holds them serialised.

    @property
    def key_id(self) -> str:
        """The id of the key that signs from now on (it changes only by `rotate`)."""
        return self._key_id

    @property
    def session(self) -> str:
        return self._session

    @property
    def policy_hash(self) -> str | None:
        return self._policy_hash

    def _make_template(self) -> EntryTemplate:
        return EntryTemplate(session=self.session, key_id=self.key_id, policy_hash=self.policy_hash,
                             version=FORMAT_VERSION, kinds=_CHAINED_KINDS)  # fmt: skip

    @classmethod
    def open(cls, settings: LogSettings, key: Ed25519PrivateKey, *, policy_hash: str | None,
             session: str | None = None, clock: TimestampSource = now_timestamp,
             inline_signing: bool = False) -> FlightLog:  # fmt: skip
        """Create the log file (mode 0600, never an existing one).

        Raises:
            LogOpenFailed: the file exists or cannot be created.
        """
        session = session or secrets.token_hex(16)
        path = resolve_log_path(settings.path, session)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except FileExistsError:
            raise LogOpenFailed(f"flight log {path} already exists; give a new file or a directory with --log") from None
        except OSError as exc:
            raise LogOpenFailed(f"cannot create flight log {path}: {exc.strerror}") from None
        return cls(fd, path, key, session=session, policy_hash=policy_hash, fsync=settings.fsync,
                   group_entries=settings.group_entries, group_ms=settings.group_ms, clock=clock,
                   inline_signing=inline_signing)  # fmt: skip

    # -- writing ---------------------------------------------------------------------------

    def defer_writes(self) -> None:
        """Hot-path entries (`record`) are kept in memory until `flush`, so that one `write`
        (and, with fsync `always`, one fsync) covers every entry decided while handling one
        chunk of input. The caller must call `flush` before it forwards anything those entries
        decide: write-ahead then holds per chunk instead of per entry. Every other entry is
        written (with whatever is pending) as soon as it is made."""
        self._deferred = True

    def flush(self) -> None:
        """Write every pending line, in order, with one `write` (and fsync in mode `always`).
        This is the caller's commit point: it raises once for every loss since the last call,
        including lines lost by a write made inside the log (a batch, a non-deferred entry),
        so the caller can withdraw whatever those lines decided.

        Raises:
            EvidenceUnavailable: lines were lost; the log is failed from now on.
        """
        if self._out:
            with contextlib.suppress(EvidenceUnavailable):
                self._write_out()
        if self._lost:
            self._lost = False
            assert self._failed is not None
            raise self._failed

    def _write_out(self) -> None:
        """Write the queued lines now. On failure the log is failed, the loss is remembered for
        `flush` to report, and EvidenceUnavailable is raised."""
        if not self._out:
            return
        if self._failed is not None:
            self._out.clear()
            self._lost = True
            raise self._failed
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        try:
            view = memoryview(data)
            while view:  # a short write to a regular file: finish it
                view = view[os.write(self._fd, view) :]
            if self._fsync == "always":
                os.fsync(self._fd)
        except OSError as exc:
            self._lost = True
            self._failed = EvidenceUnavailable(
                f"the flight log {self.path} cannot be written ({exc.strerror or exc}); "
                "calls are refused until the gateway is restarted with a writable log"
            )
            raise self._failed from None

    def start(self, gateway_version: str, *, ephemeral: bool, started: str | None = None, extra: Mapping[str, Any] | None = None) -> str:
        """Write the self-signed genesis entry. Returns its hash."""
        data = {
            "format": FORMAT_VERSION,
            "gateway_version": gateway_version,
            "public_key": public_text(self._key.public_key()),
            "ephemeral": ephemeral,
            "started": started or self._clock(),
            "fsync": self._fsync,
            **(extra or {}),
        }
        return self._write("genesis", {"data": data}, self_signed=True)

    def append(self, kind: Kind, **fields: Any) -> str:
        """Write one entry now (write-ahead); returns its hash. Raises OSError if the disk
        refuses it: the caller must then not act on the decision (fail closed)."""
        if self._closed:
            raise GatewayError("the flight log is closed")
        entry_hash = self._write(kind, fields)
        if kind != "checkpoint":
            self._pending_real += 1
            self._schedule_batch()
        return entry_hash

    def record(
        self,
        kind: Kind,
        server: str | None,
        tool: str | None,
        request_id: Any,
        descriptor_hash: str | None,
        args_hash: str | None,
        result_hash: str | None,
        decision: Decision | None,
        rule: str | None,
        reason: str | None,
        data: dict[str, Any],
    ) -> str:
        """`append` for the hot path (one call per decision and per result, and the log's own
        checkpoints): positional, without labels, and the signing bytes come from the log's
        `EntryTemplate` (or, for a member the template does not take, from the entry built in
        canonical member order). In deferred mode the line is written by the next `flush` (a
        checkpoint's at once, with the lines queued before it). The chain moves on only once
        the line is queued or written, so a refused write leaves no gap."""
        if self._closed:
            raise GatewayError("the flight log is closed")
        if self._failed is not None:
            raise self._failed
        seq, prev, ts = self._seq, self._prev, self._clock()
        payload = self._template.entry_signing_bytes(
            kind, server, tool, request_id, descriptor_hash, args_hash, result_hash, decision, rule, reason, data, seq, prev, ts
        )
        if payload is None:  # the same bytes, or the error, from the entry
            entry = {
                "args_hash": args_hash, "data": data, "decision": decision, "descriptor_hash": descriptor_hash,
                "key_id": self.key_id, "kind": kind, "labels": [], "policy_hash": self.policy_hash, "prev": prev,
                "reason": reason, "request_id": request_id, "result_hash": result_hash, "rule": rule, "seq": seq,
                "server": server, "session": self.session, "tool": tool, "ts": ts, "v": FORMAT_VERSION,
            }  # fmt: skip
            payload = signing_bytes(entry, inspect=_HOT_INSPECT)
        raw_digest = _sha256(payload).digest()
        digest = raw_digest.hex()
        self._out.append(b"".join((payload[_DOMAIN_LENGTH:-1], b',"hash":"', digest.encode(), b'"}\n')))
        checkpoint = kind == "checkpoint"
        if checkpoint or not self._deferred:
            self._write_out()
        if not self._pending:
            self._pending_first = seq
        self._pending.append(raw_digest)
        self._seq = seq + 1
        self._prev = digest
        self.entries_written += 1
        if not checkpoint:
            self._pending_real += 1
            if self._timer is None or self._pending_real >= self._group_entries:
                self._schedule_batch()
        return digest

    def _write(self, kind: Kind, fields: Mapping[str, Any], *, self_signed: bool = False) -> str:
        entry = build_entry(
            kind, session=self.session, seq=self._seq, ts=self._clock(), key_id=self.key_id,
            prev=self._prev, policy_hash=self.policy_hash, **fields,
        )  # fmt: skip
        return self._commit(entry, self_signed)

    def _commit(self, entry: dict[str, Any], self_signed: bool, defer: bool = False, inspect: tuple[str, ...] | None = None) -> str:
        """Chain `entry` and write it (or, with `defer`, queue it for `flush`). The chain state
        moves on only once the line is queued or written, so a refused write leaves no gap."""
        if self._failed is not None:
            raise self._failed
        payload = signing_bytes(entry, inspect=inspect)
        raw_digest = hashlib.sha256(payload).digest()
        digest = raw_digest.hex()
        self._out.append(line_from_signed(payload, ENTRY_DOMAIN, digest, sign(self._key, payload) if self_signed else None))
        if not defer:
            self._write_out()
        if self_signed:
            self._pending = []  # signed by itself, and through the chain all before it
            self._pending_real = 0
        else:
            if not self._pending:
                self._pending_first = self._seq
            self._pending.append(raw_digest)
        self._seq += 1
        self._prev = digest
        self.entries_written += 1
        return digest

    # -- batch signing ---------------------------------------------------------------------

    def _schedule_batch(self) -> None:
        """Sign the pending entries now if there are `group_entries` of them (and the last
        batch's fsync is done), else make sure the batch timer runs."""
        if self._inline:
            if self._pending_real >= self._group_entries:
                self._sign_now()
            return
        if self._pending_real >= self._group_entries and not self._syncing():
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._batch()
        elif self._timer is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._timer = loop.call_later(self._group_s, self._on_timer)

    def _syncing(self) -> bool:
        return self._syncer is not None and self._syncer.busy

    def _on_timer(self) -> None:
        """The batch timer. A batch waits for the last batch's fsync, and then (unless it is
        full) for `group_ms` after it: batches and fsyncs come no more often than that."""
        self._timer = None
        if self._closed or self._pending_real == 0:
            return
        assert self._loop is not None
        if self._syncer is not None:
            if self._syncer.busy:
                # The fsync returns later than now, so the batch may not start before `group_ms`
                # from now: look again then (a full batch starts at the first `record` after it).
                self._timer = self._loop.call_later(max(self._group_s, _SYNC_POLL_S), self._on_timer)
                return
            wait = self._syncer.done_at + self._group_s - time.monotonic()
            if wait > 0 and self._pending_real < self._group_entries:
                self._timer = self._loop.call_later(wait, self._on_timer)
                return
        self._batch()

    def _take_batch(self) -> tuple[dict[str, Any], list[bytes]]:
        """The statement for everything pending, with the Merkle root of the batch (one pass
        over it). The caller writes the batch's checkpoint, which writes any queued lines
        before it, and only then syncs: the batch's fsync covers every entry it signs."""
        first, hashes = self._pending_first, self._pending
        statement = {
            "session": self.session,
            "key_id": self.key_id,
            "first": first,
            "last": first + len(hashes) - 1,
            "root": merkle.root(hashes).hex(),
            "head": hashes[-1].hex(),
        }
        self._pending = []
        self._pending_real = 0
        return statement, hashes

    def _sign_statement(self, statement: Mapping[str, Any]) -> str:
        return sign(self._key, batch_signing_bytes(statement))

    def _write_checkpoint(self, statement: Mapping[str, Any], signature: str) -> None:
        data = {**statement, "count": statement["last"] - statement["first"] + 1, "sig": signature}
        # The log's own entry: not through a subclass's `record` (replay's taps the calls it decides).
        FlightLog.record(self, "checkpoint", None, None, None, None, None, None, None, None, None, data)

    def _sign_now(self) -> None:
        """Sign the pending entries, write the checkpoint and (mode `group`) fsync, all before
        returning."""
        if self._pending_real:
            statement, _ = self._take_batch()
            self._write_checkpoint(statement, self._sign_statement(statement))
            if self._fsync == "group":
                os.fsync(self._fd)

    def _batch(self) -> None:
        """Sign the pending entries and write the checkpoint now, then (mode `group`) have the
        fsync thread sync the file: the batch and its checkpoint. The loop thread makes the one
        signature a batch takes (cheaper than handing it to a thread and back, on a machine
        whose cores the client and the server use too); the fsync, which waits for the disk,
        runs on the thread. Failures are logged: a lost line is reported by the next `flush`,
        and a batch that could not be signed is covered by the next one."""
        statement, hashes = self._take_batch()
        try:
            signature = self._sign_statement(statement)
        except Exception:
            # Put the batch back in front, so that the next batch covers it: checkpoints must
            # cover every entry, in order.
            log.exception("signing a flight-log batch failed; the next batch will cover these entries")
            self._pending_first = statement["first"]
            self._pending = hashes + self._pending
            self._pending_real += len(hashes)
            return
        try:
            self._write_checkpoint(statement, signature)  # and the lines queued before it
        except EvidenceUnavailable as exc:
            log.error("flight log write failed", error=exc.message)
            return
        if self._fsync == "group":
            if self._syncer is None:
                self._syncer = _Syncer(self._fd, self.path)
            self._syncer.request()

    # -- rotation --------------------------------------------------------------------------

    async def rotate(self, new_key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> None:
        """Hand the log over to `new_key` (see `rotate_now`), the batch timer stopped first."""
        await self._settle_batches()
        self.rotate_now(new_key, manifest)

    async def _settle_batches(self) -> None:
        """Stop the batch timer (batches are signed on the loop thread, so none is half done);
        the caller then signs the rest itself."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def rotate_now(self, new_key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> None:
        """Sign what the old key owes, then write a `rotation` entry (manifest signed by both
        keys, entry signed by the new key); later entries name and are signed by the new key.
        No batch may be running (use `rotate` from the event loop).

        Raises:
            SignatureInvalid: the manifest does not hand the current key over to `new_key`.
        """
        handed_to = verify_manifest(manifest, self._key.public_key())
        if public_raw(handed_to) != public_raw(new_key.public_key()):
            raise SignatureInvalid("the rotation manifest names another new key")
        self._sign_now()  # the old key vouches for every entry before the hand-over
        self._key = new_key
        self._key_id = key_id(new_key.public_key())
        self._template = self._make_template()
        self._write("rotation", {"data": {"manifest": dict(manifest)}}, self_signed=True)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self, reason: str = "clean shutdown") -> None:
        """Finish the running batch, sign the rest, write the signed seal, fsync, close."""
        await self._settle_batches()
        self.close(reason)

    def close(self, reason: str = "clean shutdown") -> None:
        """Synchronous close (no batch may be running): sign the rest, seal, fsync, close."""
        if self._closed:
            return
        if self._failed is not None:
            log.error("flight log left unsealed: it could not be written", path=str(self.path))
            self.abandon()
            return
        self._stop_syncer()
        self._sign_now()
        count = self._seq + 1
        self._write("seal", {"reason": reason, "data": {"count": count, "head": self._prev}}, self_signed=True)
        self._closed = True
        if self._fsync != "off":
            os.fsync(self._fd)
        os.close(self._fd)

    def abandon(self) -> None:
        """Close the file without a seal (the verifier will report the log as unsealed). Lines
        still queued are written first: they are evidence too."""
        if not self._closed:
            self._closed = True
            self._stop_syncer()
            with contextlib.suppress(EvidenceUnavailable):
                self.flush()
            os.close(self._fd)

    def _stop_syncer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._syncer is not None:
            self._syncer.stop()
            self._syncer = None
