"""The flight-log writer: one writer per log, write-ahead, hash-chained, batch-signed.

`append` runs on the event-loop thread, in message order, so sequence numbers and `prev`
links can never fork however many calls are in flight. It writes the entry's line to the OS
before returning, so a decision is in the log before the call it decides is forwarded (the
entry survives a crash or `kill -9` of the gateway in every fsync mode). Signing is batched:
a worker thread signs the Merkle root of the entries written since the last batch (Ed25519
releases the GIL) and the loop thread then appends a `checkpoint` entry with that signature.

fsync modes:
- `always`: fsync after every entry, before `append` returns (durable against power loss).
- `group` (default): the worker fsyncs once per batch, after at most `group_entries` entries
  or `group_ms` milliseconds.
- `off`: never fsync (the OS writes back when it likes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway import merkle, receipts
from gateway.canonical import ENTRY_DOMAIN, signing_bytes
from gateway.errors import EXIT_USAGE, EvidenceUnavailable, GatewayError
from gateway.rotation import verify_manifest
from gateway.signing import SignatureInvalid, key_id, public_raw, public_text, sign

log = structlog.get_logger("airlock.flightlog")

FsyncMode = Literal["always", "group", "off"]
FSYNC_MODES: Final = ("always", "group", "off")


#: Members of a `record` entry whose type the caller does not fix (see `signing_bytes`):
#: the request id as the client sent it (after `log_request_id`) and the data object.
_HOT_INSPECT: Final = ("request_id", "data")
_DOMAIN_LENGTH: Final = len(ENTRY_DOMAIN)


class LogOpenFailed(GatewayError):
    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class LogSettings:
    path: Path
    fsync: FsyncMode = "group"
    group_entries: int = 256
    group_ms: float = 5.0
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
        group_entries: int = 256,
        group_ms: float = 5.0,
        clock: receipts.TimestampSource = receipts.now_timestamp,
        inline_signing: bool = False,
    ) -> None:
        self.path = path
        self._fd = fd
        self._key = key
        self.key_id = key_id(key.public_key())
        self.session = session
        self.policy_hash = policy_hash
        self._fsync = fsync
        self._group_entries = max(1, group_entries)
        self._group_s = max(0.0, group_ms) / 1000
        self._clock = clock
        self._inline = inline_signing
        self._seq = 0
        self._prev = receipts.GENESIS_PREV
        self._pending: list[bytes] = []  # raw hashes written since the last signed batch
        self._pending_first = 0
        self._pending_real = 0  # of which not checkpoints
        self._signing: concurrent.futures.Future[tuple[dict[str, Any], str]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._deferred = False  # see `defer_writes`
        self._out: list[bytes] = []  # lines built but not yet written (deferred mode only)
        self._failed: EvidenceUnavailable | None = None
        self._lost = False  # lines were lost since the last `flush` (which reports it)
        self.entries_written = 0

    @classmethod
    def open(cls, settings: LogSettings, key: Ed25519PrivateKey, *, policy_hash: str | None,
             session: str | None = None, clock: receipts.TimestampSource = receipts.now_timestamp,
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
            "format": receipts.FORMAT_VERSION,
            "gateway_version": gateway_version,
            "public_key": public_text(self._key.public_key()),
            "ephemeral": ephemeral,
            "started": started or self._clock(),
            "fsync": self._fsync,
            **(extra or {}),
        }
        return self._write("genesis", {"data": data}, self_signed=True)

    def append(self, kind: receipts.Kind, **fields: Any) -> str:
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
        kind: receipts.Kind,
        server: str | None,
        tool: str | None,
        request_id: Any,
        descriptor_hash: str | None,
        args_hash: str | None,
        result_hash: str | None,
        decision: receipts.Decision | None,
        rule: str | None,
        reason: str | None,
        data: dict[str, Any],
    ) -> str:
        """`append` for the hot path (one call per decision and per result): positional, and
        the entry is built directly in canonical member order. In deferred mode the line is
        written by the next `flush`."""
        if self._closed:
            raise GatewayError("the flight log is closed")
        if self._failed is not None:
            raise self._failed
        entry = {
            "args_hash": args_hash, "data": data, "decision": decision, "descriptor_hash": descriptor_hash,
            "key_id": self.key_id, "kind": kind, "labels": [], "policy_hash": self.policy_hash, "prev": self._prev,
            "reason": reason, "request_id": request_id, "result_hash": result_hash, "rule": rule, "seq": self._seq,
            "server": server, "session": self.session, "tool": tool, "ts": self._clock(), "v": receipts.FORMAT_VERSION,
        }  # fmt: skip
        # `_commit`, inlined for the hot path (same steps, same bytes; no signature).
        payload = signing_bytes(entry, inspect=_HOT_INSPECT)
        raw_digest = hashlib.sha256(payload).digest()
        digest = raw_digest.hex()
        self._out.append(b"".join((payload[_DOMAIN_LENGTH:-1], b',"hash":"', digest.encode(), b'"}\n')))
        if not self._deferred:
            self._write_out()
        if not self._pending:
            self._pending_first = self._seq
        self._pending.append(raw_digest)
        self._seq += 1
        self._prev = digest
        self.entries_written += 1
        self._pending_real += 1
        if self._signing is None and (self._timer is None or self._pending_real >= self._group_entries):
            self._schedule_batch()
        return digest

    def _write(self, kind: receipts.Kind, fields: Mapping[str, Any], *, self_signed: bool = False) -> str:
        entry = receipts.build_entry(
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
        self._out.append(receipts.line_from_signed(payload, ENTRY_DOMAIN, digest, sign(self._key, payload) if self_signed else None))
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
        if self._inline:
            if self._pending_real >= self._group_entries:
                self._sign_now()
            return
        if self._signing is not None:
            return  # the running batch's completion starts the next one
        if self._pending_real >= self._group_entries:
            self._start_batch()
        elif self._timer is None:
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            self._timer = loop.call_later(self._group_s, self._start_batch)

    def _take_batch(self) -> tuple[dict[str, Any], list[bytes]]:
        """The statement for everything pending. Its Merkle root is computed here, on the loop
        thread, in one pass over the batch (cheaper per entry than an incremental tree, and the
        signer thread then runs no Python that would hold the GIL). Queued lines are written
        first: the batch's fsync must cover every entry it signs."""
        self._write_out()
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

    def _sign_batch(self, statement: dict[str, Any]) -> tuple[dict[str, Any], str]:
        signature = sign(self._key, receipts.batch_signing_bytes(statement))
        if self._fsync == "group":
            os.fsync(self._fd)
        return statement, signature

    def _write_checkpoint(self, statement: Mapping[str, Any], signature: str) -> None:
        self._write("checkpoint", {"data": {**statement, "count": statement["last"] - statement["first"] + 1, "sig": signature}})

    def _sign_now(self) -> None:
        if self._pending_real:
            statement, _ = self._take_batch()
            self._write_checkpoint(*self._sign_batch(statement))

    def _start_batch(self) -> None:
        self._timer = None
        if self._signing is not None or self._pending_real == 0 or self._closed:
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="airlock-signer")
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        try:
            statement, hashes = self._take_batch()
        except EvidenceUnavailable as exc:
            log.error("flight log write failed", error=exc.message)
            return
        future = self._executor.submit(self._sign_batch, statement)
        self._signing = future
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._batch_done, f, statement["first"], hashes))

    def _batch_done(self, future: concurrent.futures.Future[tuple[dict[str, Any], str]], first: int, hashes: list[bytes]) -> None:
        self._signing = None
        if self._closed:
            return
        try:
            statement, signature = future.result()
            self._write_checkpoint(statement, signature)
        except EvidenceUnavailable as exc:
            log.error("flight log write failed", error=exc.message)
            return
        except Exception:
            # Put the batch back in front, so that the next batch covers it: checkpoints must
            # cover every entry, in order.
            log.exception("signing a flight-log batch failed; the next batch will cover these entries")
            self._pending = hashes + self._pending
            self._pending_first = first
            self._pending_real += len(hashes)
        if self._pending_real:
            self._schedule_batch()

    # -- rotation --------------------------------------------------------------------------

    async def rotate(self, new_key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> None:
        """Hand the log over to `new_key` once the running batch is signed (see `rotate_now`)."""
        await self._settle_batches()
        self.rotate_now(new_key, manifest)

    async def _settle_batches(self) -> None:
        """Stop the batch timer and wait until no batch is being signed (a finishing batch may
        start the next one, hence the loop); the caller then signs the rest itself."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._signing is not None:
            await asyncio.wrap_future(self._signing)
            await asyncio.sleep(0)  # let _batch_done write its checkpoint
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
        self.key_id = key_id(new_key.public_key())
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
        if self._signing is not None:  # closed from outside the event loop with a batch running
            try:
                statement, signature = self._signing.result(timeout=30)
                self._write_checkpoint(statement, signature)
            except Exception:
                log.exception("the last running flight-log batch failed; the seal still covers its entries")
            self._signing = None
        self._sign_now()
        count = self._seq + 1
        self._write("seal", {"reason": reason, "data": {"count": count, "head": self._prev}}, self_signed=True)
        self._closed = True
        if self._fsync != "off":
            os.fsync(self._fd)
        os.close(self._fd)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def abandon(self) -> None:
        """Close the file without a seal (the verifier will report the log as unsealed). Lines
        still queued are written first: they are evidence too."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(EvidenceUnavailable):
                self.flush()
            os.close(self._fd)
