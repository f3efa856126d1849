"""Fork replay: re-decide every call of a verified flight log under another policy, from the
recorded evidence, and list what would flip (`deny(rule a) -> allow(rule b)`), with counts.

The log is verified first (from the same bytes that are then read); a log that does not verify,
or is not sealed, is refused. The session is then rebuilt from the entries in order:

- Tools: each `descriptor` entry (list `tools`) gives names, hashes, pin states and scan
  findings, not the descriptors. A descriptor is known only when `--lock` pins one whose hash
  (recomputed) equals the call's descriptor hash. Pin states are re-derived for the new
  policy's `[pins] unpinned` where the log shows how they arose (`new`, `new-pinned`, pins taken
  on trust later in the session); a state the log cannot tell is unknown. `[pins] changed =
  "block-server"` of the new policy is applied to the listings.
- Labels and grants are those of the original run: the session's labels and each argument's
  (names recorded in the call's `data`; see `labels.mask_of`), the readers and declassification
  exceptions it used. A call the original run did not flow-check has no recorded labels: the
  session's labels are then bounded by the calls before and after it (they only grow).
- Arguments: `data.arguments` when the log stored them (`--store-raw`, checked against
  `args_hash`); an empty argument object is known from its hash alone.

Each call is re-decided with the live gateway's own functions (`decide`, then `check_flows`,
the two joined by `combine`; a server request by `server_request_decision`). What the log cannot
supply is never guessed: the arguments and the descriptor are handed to the engine as values
that raise when read, so a decision that reads them is `undecidable` (and says what it needs),
and one that does not is exact. Finite unknowns (the tool's action class when neither the new
policy nor a known descriptor gives it; labels within their bounds; whether the recipients can
already see a value) are tried at their extremes and every class: a call is decided only when
every possibility gives the same outcome and rule. With the very policy the log was recorded
under, the recorded class and flow outcome are facts of the run and settle those unknowns.

Not modelled: results the original run never saw (a call denied then and allowed now would
have added labels), and label-affecting changes in the new policy's `[[tools]]` declarations
(`returns`, `fields`, `trusted`, `readers`) or `[labels]`: labels stay as recorded.
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import EXIT_DIFFERENT, EXIT_OK, ConfigError
from gateway.evidence.failures import VerificationError
from gateway.evidence.verify import verify_lines
from gateway.policy.engine import CompiledPolicy
from gateway.policy.flows import CompiledFlows
from gateway.recording.redecide import ForkState, Unknown, Verdict, apply_listing, label_states
from gateway.screening.pins import Lock

_NEEDS: Final = {
    "arguments": "needs the call's arguments (not stored: run the gateway with --store-raw)",
    "descriptor": "needs the tool's descriptor (pass --lock with a lockfile that pins it)",
    "pin": "needs the tool's pin state under the new [pins] settings, which the log cannot tell",
    "labels": "needs the labels, readers or action class the log does not record",
}

Status = Literal["unchanged", "flip", "undecidable"]


class LogRefused(ConfigError):
    """The flight log does not verify (or cannot be read): fork trusts only a verified log."""


# -- the report -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForkRow:
    """One re-decided call: `forked` is None when the log cannot decide it (`note` says why)."""

    seq: int
    server: str | None
    tool: str | None
    recorded: Verdict
    forked: Verdict | None
    note: str | None = None

    @property
    def status(self) -> Status:
        if self.forked is None:
            return "undecidable"
        return "unchanged" if self.forked == self.recorded else "flip"

    @property
    def kind(self) -> str:
        return f"{self.recorded.describe()} -> {self.forked.describe() if self.forked else 'undecidable'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "server": self.server,
            "tool": self.tool,
            "status": self.status,
            "recorded": {"decision": self.recorded.outcome, "rule": self.recorded.rule},
            "forked": {"decision": self.forked.outcome, "rule": self.forked.rule} if self.forked else None,
            "note": self.note,
        }


@dataclass(slots=True)
class ForkReport:
    rows: list[ForkRow]
    policy_hash: str
    recorded_policy_hash: str | None
    strict: bool = False

    def of(self, status: Status) -> list[ForkRow]:
        return [row for row in self.rows if row.status == status]

    @property
    def flip_counts(self) -> dict[str, int]:
        """Flips by kind (`deny(a) -> allow(b)`), most frequent first."""
        return dict(Counter(row.kind for row in self.of("flip")).most_common())

    @property
    def exit_code(self) -> int:
        """4 when a call flips (with `strict`, also when one is undecidable), else 0."""
        return EXIT_DIFFERENT if self.of("flip") or (self.strict and self.of("undecidable")) else EXIT_OK

    def summary(self) -> str:
        same = " (the policy the log was recorded under)" if self.policy_hash == self.recorded_policy_hash else ""
        return (
            f"{len(self.rows)} call(s) re-decided under policy {self.policy_hash[:12]}{same}: {len(self.of('flip'))} flip(s), "
            f"{len(self.of('undecidable'))} undecidable, {len(self.of('unchanged'))} unchanged"
        )

    def table(self) -> str:
        """Flipped and undecidable calls (unchanged ones are not listed), the counts, the summary."""
        head = ("seq", "tool", "recorded", "forked", "note")
        shown = [r for r in self.rows if r.status != "unchanged"]
        lines = [
            (str(r.seq), f"{r.server}.{r.tool}", r.recorded.describe(), r.forked.describe() if r.forked else "undecidable", r.note or "")
            for r in shown
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
        out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in (head, *lines)] if lines else []
        out.extend(f"{count:>5}  {kind}" for kind, count in self.flip_counts.items())
        undecidable = Counter(r.note or "" for r in self.of("undecidable"))
        out.extend(f"{count:>5}  undecidable: {why}" for why, count in undecidable.most_common())
        out.append(self.summary())
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "policy_hash": self.policy_hash,
            "recorded_policy_hash": self.recorded_policy_hash,
            "calls": len(self.rows),
            "flips": len(self.of("flip")),
            "undecidable": len(self.of("undecidable")),
            "unchanged": len(self.of("unchanged")),
            "flip_counts": self.flip_counts,
            "rows": [r.to_json() for r in self.rows if r.status != "unchanged"],
            "exit_code": self.exit_code,
        }


# -- entry points -------------------------------------------------------------------------------


def read_verified(path: Path, pinned: Ed25519PublicKey | None = None) -> list[dict[str, Any]]:
    """The entries of a log that verifies (read once: what is verified is what is forked).

    Raises:
        LogRefused: the file cannot be read, or does not verify (the verifier's error).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LogRefused(f"cannot read {path}: {exc.strerror}") from None
    lines = list(io.BytesIO(raw))  # split as a file is read, at b"\n" only
    try:
        verify_lines(lines, pinned)
    except VerificationError as error:
        raise LogRefused(f"{path} does not verify ({error.kind}): {error.message}; fork only re-decides a log that verifies") from None
    return [orjson.loads(line) for line in lines]


def fork(entries: list[dict[str, Any]], policy: CompiledPolicy, lock: Lock | None = None, *, strict: bool = False) -> ForkReport:
    """Re-decide every call of a verified log (`read_verified`) under `policy`."""
    calls = [e for e in entries if e["kind"] == "call"]
    recorded_hash = calls[0]["policy_hash"] if calls else (entries[0]["policy_hash"] if entries else None)
    same = recorded_hash == policy.hash
    precise_then: bool | None = True if any("argument_labels" in e["data"] for e in calls) else None
    if same:
        precise_then = CompiledFlows.from_file(policy.source).precise
    state = ForkState(policy, lock, same)
    labels = label_states(entries, precise_then)
    rows = []
    for entry in entries:
        kind, data = entry["kind"], entry["data"]
        if kind == "descriptor" and data.get("list") == "tools" and type(entry["server"]) is str:
            apply_listing(state.server(entry["server"]), entry["server"], data, policy)
            continue
        if kind != "call" or type(entry["tool"]) is not str or type(entry["server"]) is not str:
            continue
        recorded = Verdict(str(entry["decision"]), entry["rule"])
        try:
            rows.append(ForkRow(entry["seq"], entry["server"], entry["tool"], recorded, state.call(entry, labels[entry["seq"]])))
        except Unknown as unknown:
            note = _NEEDS.get(unknown.what, f"cannot be re-decided: {unknown.what}")
            rows.append(ForkRow(entry["seq"], entry["server"], entry["tool"], recorded, None, note))
    return ForkReport(rows, policy.hash, recorded_hash, strict)
