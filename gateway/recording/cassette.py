"""Cassettes: whole recorded sessions, every message in both directions, in order.

Format `mcp-airlock-cassette/1`, JSON Lines (UTF-8, one JSON object per line, keys sorted, so
a re-recording is a readable diff). Line 1 is the header:

    {"fallback_server": "server-time", "format": "mcp-airlock-cassette/1",
     "gateway_version": "0.1.0", "policy_hash": "<sha256 hex>" | null,
     "recorded": "2026-01-01T00:00:00.000000Z", "redact": ["params.arguments.password"],
     "server": "time" | null}

`server` is the identity the gateway was given (`--name`, the config's upstream name), null when
it learned it from the server's `initialize`; `fallback_server` the name it would use failing
both. Every later line is one message, as the gateway's I/O shell saw it:

    {"dir": "c2g", "msg": {...}, "seq": 1}

- `dir`: `c2g` client to gateway, `g2u` gateway to upstream, `u2g` upstream to gateway, `g2c`
  gateway to client. The two `g2*` directions record what the gateway decided: a refused call
  has a `c2g` line and an error in `g2c`, and no `g2u` line.
- `msg`: the JSON-RPC message as parsed (any JSON value: a batch is an array). A line that was
  not JSON is kept as `"raw": "<text>"` instead (invalid UTF-8 replaced by backslash escapes),
  so a replay feeds the gateway the same garbage.
- `seq`: an integer, strictly increasing (gaps are allowed, so deleting a line by hand does not
  renumber the rest).

What never enters a cassette: the cassette is written at the JSON-RPC line level, below every
transport, so HTTP headers (`--header`, `--bearer-env` tokens), the upstream's environment
(`--env`, `--pass-env`) and the key never reach it. Arguments and results do: list the fields
to hide in `redact` (dotted paths into the message, `*` for any member or element, e.g.
`params.arguments.password`, `result.structuredContent.token`). A redacted value becomes
`<redacted:H>`, H the first 12 hex digits of SHA-256 over the value's JSON (sorted keys), so
equal values stay equal and a replay still matches a call to its recorded answer. A redacted
string of 6 characters or more is also replaced wherever it occurs later inside any string, in
any direction (the server echoing an argument, a token inside the `content` text that mirrors
`structuredContent`). A secret that appeared, unredacted, before the first message that has it
at a redacted path is not taken back: list every path where it first shows up.
The placeholder is an unsalted hash: it hides a random token, but a guessable value (a short
password) can be confirmed by hashing candidates. Do not record sessions carrying such values.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import structlog

from gateway import __version__
from gateway.errors import ConfigError, GatewayError
from gateway.evidence.entry import timestamp, utc_now
from gateway.protocol import jsonrpc
from gateway.recording.redaction import Redactor, sorted_json

CASSETTE_FORMAT: Final = "mcp-airlock-cassette/1"
_FORMAT_PREFIX: Final = "mcp-airlock-cassette/"

Direction = Literal["c2g", "g2u", "u2g", "g2c"]
DIRECTIONS: Final = frozenset({"c2g", "g2u", "u2g", "g2c"})

_HEADER_KEYS: Final = frozenset({"format", "recorded", "server", "policy_hash", "redact"})
_HEADER_OPTIONAL: Final = frozenset({"fallback_server", "gateway_version", "session", "transport"})
_ENTRY_KEYS: Final = (frozenset({"seq", "dir", "msg"}), frozenset({"seq", "dir", "raw"}))

log = structlog.get_logger("airlock.cassette")

LineSink = Callable[[bytes], None]


class CassetteError(ConfigError):
    """A cassette cannot be read, is not a cassette, or a line of it is malformed. `line` is the
    1-based line number of the first problem (None when the file itself cannot be read)."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {problem}", data={"file": source, "line": line})
        self.source = source
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class CassetteHeader:
    recorded: str
    server: str | None
    policy_hash: str | None
    redact: tuple[str, ...]
    fallback_server: str | None = None
    gateway_version: str | None = None
    #: `airlock serve`: the session's id (its `Mcp-Session-Id`, and the flight log's session)
    #: and the client's transport (`streamable-http` or `sse`); absent for `airlock run`.
    session: str | None = None
    transport: str | None = None

    def to_json(self) -> dict[str, Any]:
        header: dict[str, Any] = {
            "format": CASSETTE_FORMAT,
            "recorded": self.recorded,
            "server": self.server,
            "fallback_server": self.fallback_server,
            "gateway_version": self.gateway_version,
            "policy_hash": self.policy_hash,
            "redact": list(self.redact),
        }
        if self.session is not None:
            header["session"] = self.session
        if self.transport is not None:
            header["transport"] = self.transport
        return header


@dataclass(frozen=True, slots=True)
class CassetteEntry:
    """One recorded message. `message` is the parsed JSON (None for a `raw` line); `line` the
    bytes to feed a relay (the message re-encoded, or the raw text)."""

    seq: int
    direction: Direction
    message: Any
    line: bytes
    line_number: int


@dataclass(frozen=True, slots=True)
class Cassette:
    header: CassetteHeader
    entries: tuple[CassetteEntry, ...]
    #: SHA-256 of the file's bytes: names the recording (e.g. in a replay's flight log).
    digest: str


# -- pure: formatting ---------------------------------------------------------------------------


def header_line(header: CassetteHeader) -> bytes:
    return sorted_json(header.to_json()) + b"\n"


def entry_line(seq: int, direction: Direction, line: bytes, redactor: Redactor | None = None) -> bytes:
    """The cassette line recording `line` (one JSON-RPC message, no newline)."""
    try:
        message = jsonrpc.decode(line)
    except GatewayError:
        # Not JSON: no fields to redact, but secrets already seen are; kept as text so a replay
        # feeds the gateway the same garbage.
        raw = line.decode("utf-8", "backslashreplace")
        return sorted_json({"dir": direction, "raw": redactor.apply_text(raw) if redactor else raw, "seq": seq}) + b"\n"
    if redactor:
        message = redactor.apply(message)
    return sorted_json({"dir": direction, "msg": message, "seq": seq}) + b"\n"


# -- pure: parsing ------------------------------------------------------------------------------


def parse_cassette(data: bytes, source: str) -> Cassette:
    """Parse a whole cassette.

    Raises:
        CassetteError: naming `source` and the line number of the first problem: not JSON, not
            an object, not a cassette or another version, a missing or unknown key, an unknown
            direction, a `seq` that does not increase.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines:
        raise CassetteError(source, 1, f'empty file; a cassette starts with a header line {{"format": "{CASSETTE_FORMAT}", ...}}')
    header = _parse_header(_load(lines[0], source, 1), source)
    entries: list[CassetteEntry] = []
    last_seq: int | None = None
    for index, raw_line in enumerate(lines[1:], start=2):
        entry = _parse_entry(_load(raw_line, source, index), source, index)
        if last_seq is not None and entry.seq <= last_seq:
            raise CassetteError(
                source, index, f"seq {entry.seq} does not increase (the line before has seq {last_seq}): lines reordered or duplicated?"
            )
        last_seq = entry.seq
        entries.append(entry)
    return Cassette(header, tuple(entries), hashlib.sha256(data).hexdigest())


def _load(line: bytes, source: str, number: int) -> dict[str, Any]:
    if not line.strip():
        raise CassetteError(source, number, "empty line (every line of a cassette is one JSON object)")
    try:
        value = jsonrpc.decode(line, max_depth=jsonrpc.FILE_DEPTH)  # a recorded message, one level in
    except GatewayError as error:
        raise CassetteError(source, number, f"not JSON: {error.message}") from None
    if type(value) is not dict:
        raise CassetteError(source, number, f"expected a JSON object, got {type(value).__name__}")
    return value


def _parse_header(raw: dict[str, Any], source: str) -> CassetteHeader:
    fmt = raw.get("format")
    if type(fmt) is str and fmt.startswith(_FORMAT_PREFIX) and fmt != CASSETTE_FORMAT:
        raise CassetteError(source, 1, f"cassette format {fmt!r} is not supported by this gateway (it reads {CASSETTE_FORMAT!r})")
    if fmt != CASSETTE_FORMAT:
        raise CassetteError(source, 1, f'not an Airlock cassette: the header needs "format": "{CASSETTE_FORMAT}"')
    missing = sorted(_HEADER_KEYS - raw.keys())
    if missing:
        raise CassetteError(source, 1, f"header: missing key(s) {', '.join(missing)}")
    unknown = sorted(raw.keys() - _HEADER_KEYS - _HEADER_OPTIONAL)
    if unknown:
        raise CassetteError(source, 1, f"header: unknown key(s) {', '.join(unknown)}")
    for key in ("server", "policy_hash", "fallback_server", "gateway_version", "session", "transport"):
        if raw.get(key) is not None and type(raw[key]) is not str:
            raise CassetteError(source, 1, f"header: {key} must be a string or null")
    if type(raw["recorded"]) is not str:
        raise CassetteError(source, 1, "header: recorded must be an RFC 3339 time string")
    redact = raw["redact"]
    if type(redact) is not list or any(type(p) is not str for p in redact):
        raise CassetteError(source, 1, "header: redact must be a list of dotted paths (strings)")
    return CassetteHeader(
        raw["recorded"],
        raw["server"],
        raw["policy_hash"],
        tuple(redact),
        raw.get("fallback_server"),
        raw.get("gateway_version"),
        raw.get("session"),
        raw.get("transport"),
    )


def _parse_entry(raw: dict[str, Any], source: str, number: int) -> CassetteEntry:
    keys = raw.keys()
    if keys not in _ENTRY_KEYS:
        missing = sorted({"seq", "dir"} - keys) + ([] if "msg" in keys or "raw" in keys else ["msg"])
        if missing:
            raise CassetteError(source, number, f"missing key(s) {', '.join(missing)}")
        raise CassetteError(
            source,
            number,
            f"unexpected key(s) {', '.join(sorted(keys - {'seq', 'dir', 'msg'}))} "
            '(a message line has "seq", "dir" and one of "msg" or "raw")',
        )
    seq = raw["seq"]
    if type(seq) is not int or seq < 0:
        raise CassetteError(source, number, f"seq must be a non-negative integer, got {seq!r}")
    direction = raw["dir"]
    if direction not in DIRECTIONS:
        raise CassetteError(source, number, f"unknown direction {direction!r} (expected one of c2g, g2u, u2g, g2c)")
    if "raw" in raw:
        if type(raw["raw"]) is not str:
            raise CassetteError(source, number, "raw must be a string")
        return CassetteEntry(seq, direction, None, raw["raw"].encode("utf-8", "surrogatepass"), number)
    message = raw["msg"]
    return CassetteEntry(seq, direction, message, jsonrpc.encode(message), number)


# -- thin I/O -----------------------------------------------------------------------------------


def read_cassette(path: Path) -> Cassette:
    """Read and parse a cassette file.

    Raises:
        CassetteError: unreadable, or malformed (naming the line).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CassetteError(str(path), None, f"cannot read the cassette: {exc.strerror or exc}") from None
    return parse_cassette(data, str(path))


class CassetteWriter:
    """Appends one line per message to a new cassette file (mode 0600, never an existing file).

    Every `write` is one `os.write` of one whole line to a file opened for appending: a crash
    loses at most the line being written, and `read_cassette` names it. Call `write` from the
    relay's I/O shell (see `tee`), on the event-loop thread, in the order lines are seen.
    """

    def __init__(
        self,
        path: Path,
        *,
        redact: Sequence[str] = (),
        server: str | None = None,
        fallback_server: str | None = None,
        policy_hash: str | None = None,
        recorded: str | None = None,
        session: str | None = None,
        transport: str | None = None,
    ) -> None:
        """Create `path` and write the header.

        Raises:
            CassetteError: the file exists or cannot be created.
            ConfigError: a redact path is malformed.
        """
        self.path = path
        self._redactor = Redactor(redact)
        header = CassetteHeader(
            recorded or timestamp(utc_now()), server, policy_hash, tuple(redact), fallback_server, __version__, session, transport
        )
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except FileExistsError:
            raise CassetteError(str(path), None, "already exists; record into a new file (delete the old cassette first)") from None
        except OSError as exc:
            raise CassetteError(str(path), None, f"cannot create the cassette: {exc.strerror or exc}") from None
        self._seq = 0
        self.failed: CassetteError | None = None
        self._write(header_line(header))

    def write(self, direction: Direction, line: bytes) -> None:
        """Record one message (`line`: one JSON-RPC line, no newline) seen in `direction`.

        Raises:
            CassetteError: the cassette cannot be written (the recording is then incomplete).
        """
        self._seq += 1
        self._write(entry_line(self._seq, direction, line, self._redactor))

    def tee(self, direction: Direction, sink: LineSink) -> LineSink:
        """`sink`, recording every line passed to it first (wrap the relay's callbacks and
        entry points with this).

        A recording that cannot be written (disk full) must not take the session down with it:
        the first failure is logged as an error naming the last line recorded, `failed` keeps
        it, and the relay goes on unrecorded. The cassette then ends early and whole (every line
        in it was written in one piece), which `airlock replay` shows as calls it cannot answer.
        """

        def recorded(line: bytes) -> None:
            if self.failed is None and self._fd is not None:  # after `close`: the session is over
                try:
                    self.write(direction, line)
                except CassetteError as error:
                    self.failed = error
                    log.error(
                        "recording stopped: the rest of the session is not in the cassette",
                        cassette=str(self.path),
                        last_seq=self._seq - 1,
                        error=error.problem,
                    )
            sink(line)

        return recorded

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            raise CassetteError(str(self.path), None, "the cassette is closed")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise CassetteError(str(self.path), None, f"cannot write the cassette: {exc.strerror or exc}") from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CassetteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
