"""Why evidence does not verify: `VerificationError` and one subclass per failure, each with its
`kind` (the name in `airlock verify --json`) and its exit code from `gateway.errors`. Raised by
the log verifier, the receipt verifier, key rotation and signature checks alike: one class per
failure, wherever it is found.

| exit | error               | meaning                                                        |
|------|---------------------|----------------------------------------------------------------|
| 0    | -                   | intact and sealed                                              |
| 10   | LogMalformed        | a line (not the last) is not a well-formed entry               |
| 11   | EntryHashMismatch   | an entry's content does not match its hash (edited field)      |
| 12   | ChainBroken         | an entry does not link to the one before (reordered, dropped, duplicated or spliced lines) |
| 13   | SequenceBroken      | sequence numbers are not 0, 1, 2, ...                          |
| 14   | SignatureInvalid    | a genesis, checkpoint or seal signature does not verify        |
| 15   | WrongKey            | the log's key is not the pinned `--public-key`, or a key id lies |
| 16   | SessionMismatch     | an entry belongs to another session (spliced logs)             |
| 17   | EntriesAfterSeal    | data after the seal                                            |
| 18   | CheckpointInvalid   | a checkpoint's batch does not match the entries it covers      |
| 20   | LogUnsealed         | intact, but not sealed (the gateway stopped without a clean shutdown, or the tail was cut) |
| 21   | TornTail            | as 20, and the last line is incomplete (a crash mid-write, not tampering) |
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from gateway.errors import (
    EXIT_CHAIN_BROKEN,
    EXIT_CHECKPOINT_INVALID,
    EXIT_ENTRIES_AFTER_SEAL,
    EXIT_HASH_MISMATCH,
    EXIT_LOG_MALFORMED,
    EXIT_SEQUENCE_BROKEN,
    EXIT_SESSION_MISMATCH,
    EXIT_SIGNATURE_INVALID,
    EXIT_TORN_TAIL,
    EXIT_UNSEALED,
    EXIT_WRONG_KEY,
    GatewayError,
)

if TYPE_CHECKING:
    from gateway.evidence.verify import VerifyReport


class VerificationError(GatewayError):
    """Root of every verification failure; `line` is 1-based."""

    exit_code: ClassVar[int] = EXIT_LOG_MALFORMED
    kind: ClassVar[str] = "malformed"

    def __init__(self, message: str, *, line: int | None = None, report: VerifyReport | None = None) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(where + message)
        self.line = line
        self.report = report


class LogMalformed(VerificationError):
    exit_code = EXIT_LOG_MALFORMED
    kind = "malformed"


class EntryHashMismatch(VerificationError):
    exit_code = EXIT_HASH_MISMATCH
    kind = "hash-mismatch"


class ChainBroken(VerificationError):
    exit_code = EXIT_CHAIN_BROKEN
    kind = "chain-broken"


class SequenceBroken(VerificationError):
    exit_code = EXIT_SEQUENCE_BROKEN
    kind = "sequence-broken"


class SignatureInvalid(VerificationError):
    exit_code = EXIT_SIGNATURE_INVALID
    kind = "signature-invalid"


class WrongKey(VerificationError):
    exit_code = EXIT_WRONG_KEY
    kind = "wrong-key"


class SessionMismatch(VerificationError):
    exit_code = EXIT_SESSION_MISMATCH
    kind = "session-mismatch"


class EntriesAfterSeal(VerificationError):
    exit_code = EXIT_ENTRIES_AFTER_SEAL
    kind = "entries-after-seal"


class CheckpointInvalid(VerificationError):
    exit_code = EXIT_CHECKPOINT_INVALID
    kind = "checkpoint-invalid"


class LogUnsealed(VerificationError):
    exit_code = EXIT_UNSEALED
    kind = "unsealed"


class TornTail(LogUnsealed):
    exit_code = EXIT_TORN_TAIL
    kind = "torn-tail"
