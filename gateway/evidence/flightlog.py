"""The flight-log writer: one writer per log, write-ahead, hash-chained, batch-signed.

`append` and `record` run on the event-loop thread, in message order, so sequence numbers and
`prev` links can never fork however many calls are in flight. `append` writes the entry's line
to the OS before returning, so a decision is in the log before the call it decides is forwarded
(the entry survives a crash or `kill -9` of the gateway in every fsync mode). Signing is batched
(`gateway.evidence.batches`): a later `checkpoint` entry signs the Merkle root of the entries
written since the last one.

fsync modes:
- `always`: fsync after every entry, before `append` returns (durable against power loss).
- `group` (default): a thread fsyncs once per batch, after the batch and its checkpoint are
  written; the next batch waits for that fsync, and then for `group_ms` unless it is full.
- `off`: never fsync (the OS writes back when it likes).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import EXIT_USAGE, EvidenceUnavailable, GatewayError
from gateway.evidence.batches import Batches
from gateway.evidence.canonical import ENTRY_DOMAIN, EntryTemplate, batch_signing_bytes, recorded_signing_bytes
from gateway.evidence.entry import (
    FORMAT_VERSION,
    GENESIS_PREV,
    Decision,
    Entry,
    Kind,
    TimestampSource,
    entry_json,
    line_from_signed,
    now_timestamp,
)
from gateway.evidence.failures import SignatureInvalid
from gateway.evidence.rotation import verify_manifest
from gateway.evidence.signing import key_id, public_raw, public_text, sign

log = structlog.get_logger("airlock.flightlog")

FsyncMode = Literal["always", "group", "off"]
FSYNC_MODES: Final = ("always", "group", "off")
#: What an observer of a log is given: each entry, once it is chained (see `FlightLog`).
EntryObserver = Callable[[Entry], None]


#: Members of a `record` entry whose type the caller does not fix (see `signing_bytes`):
#: the request id as the client sent it (after `log_request_id`) and the data object.
_HOT_INSPECT: Final = ("request_id", "data")
_DOMAIN_LENGTH: Final = len(ENTRY_DOMAIN)
_sha256: Final = hashlib.sha256
#: Kinds written through `record`: no signature of their own, no labels.
_CHAINED_KINDS: Final = ("call", "result", "checkpoint")


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


def _create(path: Path) -> int:
    """A descriptor of the new log file at `path` (mode 0600, never an existing file).

    Raises:
        LogOpenFailed: the file exists or cannot be created.
    """
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    except FileExistsError:
        raise LogOpenFailed(f"flight log {path} already exists; give a new file or a directory with --log") from None
    except OSError as exc:
        raise LogOpenFailed(f"cannot create flight log {path}: {exc.strerror}") from None


def _template(session: str, key_id: str, policy_hash: str | None) -> EntryTemplate:
    return EntryTemplate(session=session, key_id=key_id, policy_hash=policy_hash, version=FORMAT_VERSION, kinds=_CHAINED_KINDS)


class _Lines:
    """The log file and the lines queued for it: one `write` for all of them (and an fsync in
    mode `always`). A failed write fails the log for good; `lost` says lines were lost since
    the last `flush`, which reports it."""

    __slots__ = ("failed", "fd", "fsync_each", "lost", "path", "queued")

    def __init__(self, fd: int, path: Path, *, fsync_each: bool) -> None:
        self.fd, self.path, self.fsync_each = fd, path, fsync_each
        self.queued: list[bytes] = []
        self.failed: EvidenceUnavailable | None = None
        self.lost = False

    def write_out(self) -> None:
        """Write the queued lines now. On failure the log is failed, the loss is remembered for
        `flush` to report, and EvidenceUnavailable is raised."""
        queued = self.queued
        if not queued:
            return
        if self.failed is not None:
            queued.clear()
            self.lost = True
            raise self.failed
        data = b"".join(queued) if len(queued) > 1 else queued[0]
        queued.clear()
        try:
            view = memoryview(data)
            while view:  # a short write to a regular file: finish it
                view = view[os.write(self.fd, view) :]
            if self.fsync_each:
                os.fsync(self.fd)
        except OSError as exc:
            self.lost = True
            self.failed = EvidenceUnavailable(
                f"the flight log {self.path} cannot be written ({exc.strerror or exc}); "
                "calls are refused until the gateway is restarted with a writable log"
            )
            raise self.failed from None


class FlightLog:
    """Appends entries to one log file. Use `open`, `start`, then `append`, then `close`.

    `on_entry`, if given, sees every entry once it is chained (queued or written), in order:
    replay reads the decisions it compares from it. The live gateway passes none, and then no
    `Entry` is built for a `record`."""

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
        on_entry: EntryObserver | None = None,
    ) -> None:
        self.path = path
        self._key = key
        self._key_id: str = key_id(key.public_key())
        self._session = session
        self._policy_hash = policy_hash
        self._template = _template(session, self._key_id, policy_hash)
        self._fsync = fsync
        self._clock = clock
        self._on_entry = on_entry
        self._seq = 0
        self._prev = GENESIS_PREV
        self._batches = Batches(
            self, fd, path, sync=fsync == "group", group_entries=group_entries, group_ms=group_ms, inline=inline_signing
        )
        self._closed = False
        self._deferred = False  # see `defer_writes`
        self._lines = _Lines(fd, path, fsync_each=fsync == "always")
        self._out = self._lines.queued  # lines built but not yet written (deferred mode only)
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

    @classmethod
    def open(cls, settings: LogSettings, key: Ed25519PrivateKey, *, policy_hash: str | None,
             session: str | None = None, clock: TimestampSource = now_timestamp,
             inline_signing: bool = False, on_entry: EntryObserver | None = None) -> FlightLog:  # fmt: skip
        """Create the log file (mode 0600, never an existing one).

        Raises:
            LogOpenFailed: the file exists or cannot be created.
        """
        session = session or secrets.token_hex(16)
        path = resolve_log_path(settings.path, session)
        fd = _create(path)
        return cls(fd, path, key, session=session, policy_hash=policy_hash, fsync=settings.fsync,
                   group_entries=settings.group_entries, group_ms=settings.group_ms, clock=clock,
                   inline_signing=inline_signing, on_entry=on_entry)  # fmt: skip

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
        lines = self._lines
        if lines.queued:
            with contextlib.suppress(EvidenceUnavailable):
                lines.write_out()
        if lines.lost:
            lines.lost = False
            assert lines.failed is not None
            raise lines.failed

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
        return self._write(kind, fields)

    def record(self, *, kind: Kind, server: str | None = None, tool: str | None = None, request_id: Any = None,
               descriptor_hash: str | None = None, args_hash: str | None = None, result_hash: str | None = None,
               decision: Decision | None = None, rule: str | None = None, reason: str | None = None,
               data: dict[str, Any]) -> str:  # fmt: skip
        """`append` for the hot path (one call per decision and per result, and the log's own
        checkpoints), without labels: the signing bytes come from the log's `EntryTemplate`
        (or, for a member the template does not take, from `signing_bytes` of the entry). In
        deferred mode the line is written by the next `flush` (a checkpoint's at once, with the
        lines queued before it). The chain moves on only once the line is queued or written, so
        a refused write leaves no gap."""
        if self._closed:
            raise GatewayError("the flight log is closed")
        if self._lines.failed is not None:
            raise self._lines.failed
        seq = self._seq
        members = {"kind": kind, "server": server, "tool": tool, "request_id": request_id, "descriptor_hash": descriptor_hash,
                   "args_hash": args_hash, "result_hash": result_hash, "decision": decision, "rule": rule, "reason": reason,
                   "data": data, "seq": seq, "prev": self._prev, "ts": self._clock()}  # fmt: skip
        template = self._template
        payload = template.entry_signing_bytes(members)
        if payload is None:  # the same bytes from the entry, or those of its escaped form
            payload, members = recorded_signing_bytes(template.entry(members), inspect=_HOT_INSPECT)
        raw_digest = _sha256(payload).digest()
        digest = raw_digest.hex()
        self._out.append(b"".join((payload[_DOMAIN_LENGTH:-1], b',"hash":"', digest.encode(), b'"}\n')))
        checkpoint = kind == "checkpoint"
        if checkpoint or not self._deferred:
            self._lines.write_out()
        self._seq, self._prev = seq + 1, digest
        self.entries_written += 1
        if self._on_entry is not None:
            self._on_entry(Entry(**template.entry(members)))
        if checkpoint:
            self._batches.add_checkpoint(raw_digest, seq)
        else:
            self._batches.add(raw_digest, seq)
        return digest

    def _write(self, kind: Kind, fields: Mapping[str, Any], *, self_signed: bool = False) -> str:
        """Build, chain and write an entry now (with whatever is queued before it). The chain
        state moves on only once the line is written, so a refused write leaves no gap."""
        seq = self._seq
        header: dict[str, Any] = {"session": self.session, "key_id": self.key_id, "policy_hash": self.policy_hash}
        entry = entry_json(kind=kind, seq=seq, ts=self._clock(), prev=self._prev, **header, **fields)
        if self._lines.failed is not None:
            raise self._lines.failed
        payload, entry = recorded_signing_bytes(entry)
        raw_digest = hashlib.sha256(payload).digest()
        digest = raw_digest.hex()
        self._out.append(line_from_signed(payload, ENTRY_DOMAIN, digest, sign(self._key, payload) if self_signed else None))
        self._lines.write_out()
        self._seq, self._prev = seq + 1, digest
        self.entries_written += 1
        if self._on_entry is not None:
            self._on_entry(Entry(**entry))
        if self_signed:
            self._batches.covered()  # signed by itself, and through the chain all before it
        elif kind == "checkpoint":
            self._batches.add_checkpoint(raw_digest, seq)
        else:
            self._batches.add(raw_digest, seq)
        return digest

    # -- batch signing (see `gateway.evidence.batches`) ----------------------------------

    def sign_batch(self, statement: Mapping[str, Any]) -> str:
        """The current key's signature over a batch statement."""
        return sign(self._key, batch_signing_bytes(statement))

    def write_checkpoint(self, statement: Mapping[str, Any], signature: str) -> None:
        """Chain the checkpoint of a signed batch (and write the lines queued before it)."""
        self.record(kind="checkpoint", data={**statement, "count": statement["last"] - statement["first"] + 1, "sig": signature})

    # -- rotation --------------------------------------------------------------------------

    async def rotate(self, new_key: Ed25519PrivateKey, manifest: Mapping[str, Any]) -> None:
        """Hand the log over to `new_key` (see `rotate_now`), the batch timer stopped first."""
        self._batches.stop_timer()  # batches are signed on the loop thread: none is half done
        self.rotate_now(new_key, manifest)

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
        self._batches.sign_now()  # the old key vouches for every entry before the hand-over
        self._key = new_key
        self._key_id = key_id(new_key.public_key())
        self._template = _template(self.session, self._key_id, self.policy_hash)
        self._write("rotation", {"data": {"manifest": dict(manifest)}}, self_signed=True)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self, reason: str = "clean shutdown") -> None:
        """Finish the running batch, sign the rest, write the signed seal, fsync, close."""
        self._batches.stop_timer()  # batches are signed on the loop thread: none is half done
        self.close(reason)

    def close(self, reason: str = "clean shutdown") -> None:
        """Synchronous close (no batch may be running): sign the rest, seal, fsync, close."""
        if self._closed:
            return
        if self._lines.failed is not None:
            log.error("flight log left unsealed: it could not be written", path=str(self.path))
            self.abandon()
            return
        self._batches.stop()
        self._batches.sign_now()
        count = self._seq + 1
        self._write("seal", {"reason": reason, "data": {"count": count, "head": self._prev}}, self_signed=True)
        self._closed = True
        if self._fsync != "off":
            os.fsync(self._lines.fd)
        os.close(self._lines.fd)

    def abandon(self) -> None:
        """Close the file without a seal (the verifier will report the log as unsealed). Lines
        still queued are written first: they are evidence too."""
        if not self._closed:
            self._closed = True
            self._batches.stop()
            with contextlib.suppress(EvidenceUnavailable):
                self.flush()
            os.close(self._lines.fd)
