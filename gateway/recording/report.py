"""What a replay found: each recorded `tools/call` with its recorded and its live outcome, the
differences between them (or against an expectations file), and descriptor drift. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from gateway.errors import EXIT_DIFFERENT, EXIT_OK, FLOW_DENIED, POLICY_DENIED, ConfigError
from gateway.labels import masks
from gateway.protocol import methods
from gateway.recording.cassette import Cassette
from gateway.recording.mock_upstream import id_key as _id_key
from gateway.recording.mock_upstream import is_request as _is_request
from gateway.recording.mock_upstream import is_response as _is_response

_DENY_CODES: Final = frozenset({POLICY_DENIED, FLOW_DENIED})
_FORWARDED: Final = frozenset({"allow", "shadow-deny"})
_CALL: Final = methods.TOOLS_CALL


Decision = Literal["allow", "deny", "shadow-deny", "refused", "unknown"]
DifferenceKind = Literal["decision", "expectation", "drift", "unanswerable"]


class ExpectationsError(ConfigError):
    """The expectations file cannot be read or is malformed."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one call. `rule`: the deciding rule (for a recorded outcome, known only
    for a denial); `code`: the JSON-RPC error code the client got, if any."""

    decision: Decision
    rule: str | None = None
    labels: tuple[str, ...] = ()
    code: int | None = None

    def wire(self) -> tuple[str, str | None]:
        """What a client could tell apart: forwarded, or refused by which rule."""
        if self.decision in _FORWARDED:
            return ("forwarded", None)
        if self.decision == "deny":
            return ("deny", self.rule)
        return (self.decision, str(self.code) if self.code is not None else None)

    def describe(self) -> str:
        return f"{self.decision}({self.rule})" if self.rule else self.decision


@dataclass(slots=True)
class CallRow:
    """One `tools/call` the client sent: where it is in the cassette, and both outcomes."""

    index: int
    seq: int
    request_id: Any
    tool: str
    recorded: Outcome
    live: Outcome = Outcome("unknown")
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DifferenceKind
    message: str
    call: int | None = None

    def describe(self) -> str:
        return f"{self.kind}: " + (f"call {self.call}: " if self.call is not None else "") + self.message


@dataclass(slots=True)
class ReplayReport:
    rows: list[CallRow]
    differences: list[Difference]
    drift: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_DIFFERENT if self.differences else EXIT_OK

    def table(self) -> str:
        """One line per call: index, cassette seq, tool, recorded and live outcome, labels."""
        head = ("#", "seq", "tool", "recorded", "replayed", "labels", "note")
        lines = [
            (str(r.index), str(r.seq), r.tool, r.recorded.describe(), r.live.describe(), ",".join(r.live.labels) or "-", r.note or "")
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(head)]
        out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in (head, *lines)]
        out.extend(d.describe() for d in self.differences)
        out.append(f"{len(self.rows)} call(s), {len(self.differences)} difference(s)")
        return "\n".join(out)


# -- pure helpers -------------------------------------------------------------------------------


def tool_of(message: Mapping[str, Any]) -> str:
    params = message.get("params")
    name = params.get("name") if type(params) is dict else None
    return name if type(name) is str else "?"


def labels_of(message: Mapping[str, Any]) -> tuple[str, ...]:
    """The labels the gateway told the client: the result's `_meta`, or a flow refusal's data."""
    result = message.get("result")
    if type(result) is dict:
        meta = result.get("_meta")
        told = meta.get(masks.META_KEY) if type(meta) is dict else None
        if type(told) is dict:
            names = []
            if told.get("integrity") == "untrusted":
                names.append("untrusted")
            if told.get("confidentiality") in ("private", "secret"):
                names.append(str(told["confidentiality"]))
            flags = told.get("flags")
            names.extend(str(f) for f in flags if type(f) is str) if type(flags) is list else None
            return tuple(names)
    error = message.get("error")
    data = error.get("data") if type(error) is dict else None
    if type(data) is dict and type(data.get("labels")) is list:
        return tuple(str(n) for n in data["labels"])
    return ()


def wire_outcome(response: Mapping[str, Any] | None, forwarded: bool) -> Outcome:
    if forwarded:
        return Outcome("allow", None, labels_of(response) if response is not None else ())
    if response is None:
        return Outcome("unknown")
    error = response.get("error")
    if type(error) is dict:
        code = error.get("code") if type(error.get("code")) is int else None
        data = error.get("data")
        rule = data.get("rule") if type(data) is dict else None
        if code in _DENY_CODES and type(rule) is str:
            return Outcome("deny", rule, labels_of(response), code)
        return Outcome("refused", None, (), code)
    return Outcome("unknown")


def recorded_calls(cassette: Cassette) -> list[CallRow]:
    """Every `tools/call` request the client sent, with its outcome as the recording shows it
    (forwarded upstream: `allow`; refused with a rule: `deny`; refused otherwise: `refused`)."""
    rows: list[CallRow] = []
    open_calls: dict[bytes, tuple[CallRow, list[bool]]] = {}
    responses: dict[int, tuple[Mapping[str, Any] | None, bool]] = {}
    for entry in cassette.entries:
        message = entry.message
        if entry.direction == "c2g" and _is_request(message) and message["method"] == _CALL:
            row = CallRow(len(rows) + 1, entry.seq, message["id"], tool_of(message), Outcome("unknown"))
            rows.append(row)
            open_calls[_id_key(message["id"])] = (row, [False])
            responses[row.index] = (None, False)
        elif entry.direction == "g2u" and _is_request(message) and message["method"] == _CALL:
            found = open_calls.get(_id_key(message["id"]))
            if found is not None:
                found[1][0] = True
                responses[found[0].index] = (None, True)
        elif entry.direction == "g2c" and _is_response(message):
            opened = open_calls.pop(_id_key(message["id"]), None)
            if opened is not None:
                responses[opened[0].index] = (message, opened[1][0])
    for row in rows:
        response, forwarded = responses[row.index]
        row.recorded = wire_outcome(response, forwarded)
    return rows


def load_expectations(path: Path) -> list[dict[str, Any]]:
    """`{"calls": [{"tool": T, "decision": D, "rule": R?}, ...]}`, compared in call order.

    Raises:
        ExpectationsError: unreadable, not JSON, or not of that shape.
    """
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ExpectationsError(f"{path}: cannot read the expectations file: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ExpectationsError(f"{path}: not JSON: {exc}") from None
    calls = raw.get("calls") if type(raw) is dict else None
    if type(calls) is not list:
        raise ExpectationsError(f'{path}: expected {{"calls": [{{"tool": ..., "decision": ..., "rule": ...}}, ...]}}')
    for index, call in enumerate(calls, 1):
        if type(call) is not dict or type(call.get("tool")) is not str or call.get("decision") not in (*_FORWARDED, "deny", "refused"):
            raise ExpectationsError(
                f'{path}: calls[{index - 1}]: needs "tool" (a string) and "decision" (allow, deny, shadow-deny or refused)'
            )
        if set(call) - {"tool", "decision", "rule"}:
            raise ExpectationsError(
                f"{path}: calls[{index - 1}]: unknown key(s) {', '.join(sorted(set(call) - {'tool', 'decision', 'rule'}))}"
            )
    return calls


def compare(report: ReplayReport, expect: list[dict[str, Any]] | None) -> None:
    differences = report.differences
    for row in report.rows:
        if row.note and row.note.startswith("unanswerable") and row.recorded.decision == "allow":
            differences.append(
                Difference(
                    "unanswerable",
                    f"{row.tool}: recorded as forwarded, but the cassette cannot answer it now (the gateway forwards different arguments)",
                    row.index,
                )
            )
    if expect is None:
        for row in report.rows:
            if row.live.wire() != row.recorded.wire():
                differences.append(
                    Difference("decision", f"{row.tool}: recorded {row.recorded.describe()}, now {row.live.describe()}", row.index)
                )
        return
    for index, (row, wanted) in enumerate(zip(report.rows, expect, strict=False), 1):
        got = row.live
        if wanted["tool"] != row.tool or wanted["decision"] != got.decision or ("rule" in wanted and wanted["rule"] != got.rule):
            shown = wanted["decision"] + (f"({wanted['rule']})" if wanted.get("rule") else "")
            differences.append(Difference("expectation", f"expected {wanted['tool']} {shown}, got {row.tool} {got.describe()}", index))
    if len(expect) != len(report.rows):
        differences.append(Difference("expectation", f"expected {len(expect)} call(s), the cassette has {len(report.rows)}"))
