"""gateway/recording/cassette.py: the cassette format, its writer (redaction) and its reader (errors
naming the line)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.errors import EXIT_USAGE, ConfigError
from gateway.protocol import jsonrpc
from gateway.recording.cassette import (
    CASSETTE_FORMAT,
    CassetteError,
    CassetteWriter,
    Direction,
    parse_cassette,
    read_cassette,
)
from gateway.recording.redaction import Redactor, placeholder

HEADER: dict[str, Any] = {
    "format": CASSETTE_FORMAT,
    "recorded": "2026-01-01T00:00:00.000000Z",
    "server": "srv",
    "policy_hash": None,
    "redact": [],
}


def _line(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _entry(seq: int, direction: str = "c2g", **extra: object) -> bytes:
    return _line({"seq": seq, "dir": direction, "msg": {"jsonrpc": "2.0", "id": seq, "method": "ping"}, **extra})


def _cassette(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


def _valid() -> list[bytes]:
    return [_line(HEADER), _entry(1), _entry(2, "g2u"), _entry(3, "u2g"), _entry(4, "g2c")]


# -- writing ------------------------------------------------------------------------------------


def test_a_written_cassette_reads_back_message_for_message_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    answer = {"jsonrpc": "2.0", "id": 1, "result": {"tools": []}}
    sent: list[tuple[Direction, dict[str, Any]]] = [("c2g", listing), ("g2u", listing), ("u2g", answer), ("g2c", answer)]
    with CassetteWriter(path, server="srv", fallback_server="srv-cmd", policy_hash="ab" * 32, recorded="2026-01-01T00:00:00Z") as writer:
        for direction, message in sent:
            writer.write(direction, jsonrpc.encode(message))
    cassette = read_cassette(path)
    assert cassette.header.server == "srv"
    assert cassette.header.fallback_server == "srv-cmd"
    assert cassette.header.policy_hash == "ab" * 32
    assert [(e.direction, e.message) for e in cassette.entries] == sent
    assert [e.seq for e in cassette.entries] == [1, 2, 3, 4]


def test_every_line_has_sorted_keys_so_re_recordings_diff_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CassetteWriter(path) as writer:
        writer.write("c2g", b'{"method":"tools/call","jsonrpc":"2.0","id":1,"params":{"name":"x","arguments":{"b":1,"a":2}}}')
    for line in path.read_bytes().splitlines():
        assert line == _line(orjson.loads(line))


def test_the_cassette_is_created_private_and_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    CassetteWriter(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(CassetteError) as caught:
        CassetteWriter(path)
    assert caught.value.exit_code == EXIT_USAGE


def test_a_line_that_is_not_json_is_kept_as_raw_text_and_read_back_as_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CassetteWriter(path) as writer:
        writer.write("c2g", b"{not json")
    (entry,) = read_cassette(path).entries
    assert entry.message is None
    assert entry.line == b"{not json"


def test_tee_records_each_line_before_passing_it_on(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    passed: list[bytes] = []
    with CassetteWriter(path) as writer:
        sink = writer.tee("g2c", passed.append)
        sink(b'{"jsonrpc":"2.0","method":"notifications/x"}')
    assert passed == [b'{"jsonrpc":"2.0","method":"notifications/x"}']
    assert read_cassette(path).entries[0].direction == "g2c"


def test_a_recording_that_cannot_be_written_stops_but_the_relay_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    passed: list[bytes] = []
    writer = CassetteWriter(path)
    sink = writer.tee("c2g", passed.append)
    sink(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    os.close(writer._fd)  # type: ignore[arg-type]  # the disk goes away under the writer
    writer._fd = os.open(os.devnull, os.O_RDONLY)  # every write now fails (EBADF)
    sink(b'{"jsonrpc":"2.0","id":2,"method":"ping"}')
    sink(b'{"jsonrpc":"2.0","id":3,"method":"ping"}')
    assert len(passed) == 3  # nothing withheld from the session
    assert writer.failed is not None and "cannot write the cassette" in writer.failed.message
    writer.close()
    assert [entry.message["id"] for entry in read_cassette(path).entries] == [1]  # whole lines only, ending early


def test_an_http_session_cassette_names_its_session_and_transport(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CassetteWriter(path, session="ab12", transport="streamable-http") as writer:
        writer.write("c2g", b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
    header = read_cassette(path).header
    assert (header.session, header.transport) == ("ab12", "streamable-http")
    with CassetteWriter(tmp_path / "run.jsonl") as writer:  # `airlock run`: the keys are absent, not null
        pass
    assert b"session" not in (tmp_path / "run.jsonl").read_bytes()


# -- redaction ----------------------------------------------------------------------------------


def test_placeholders_are_stable_equal_for_equal_values_and_distinct_for_different_ones() -> None:
    assert placeholder("hunter2") == placeholder("hunter2")
    assert placeholder("hunter2") != placeholder("hunter3")
    assert placeholder({"b": 1, "a": 2}) == placeholder({"a": 2, "b": 1})
    assert placeholder("x").startswith("<redacted:") and len(placeholder("x")) == len("<redacted:>") + 12


def test_a_redacted_value_never_reaches_the_file_even_where_the_server_echoes_it(tmp_path: Path) -> None:
    secret, token = "correct-horse-battery", "tok_5b1f0c9e2d"
    path = tmp_path / "c.jsonl"
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "login", "arguments": {"user": "a", "password": secret}}}
    echoed = {"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": f'{{"token": "{token}", "pw": "{secret}"}}'}],
                                                      "structuredContent": {"token": token}}}  # fmt: skip
    with CassetteWriter(path, redact=["params.arguments.password", "result.structuredContent.token"]) as writer:
        writer.write("c2g", jsonrpc.encode(call))
        writer.write("g2u", jsonrpc.encode(call))
        writer.write("u2g", jsonrpc.encode(echoed))
        writer.write("g2c", b"not json but it has " + secret.encode())
    data = path.read_bytes()
    assert secret.encode() not in data
    assert token.encode() not in data
    entries = read_cassette(path).entries
    assert entries[0].message["params"]["arguments"]["password"] == placeholder(secret)
    assert entries[1].message == entries[0].message  # equal values, equal placeholders: replay still matches
    assert entries[2].message["result"]["structuredContent"]["token"] == placeholder(token)
    assert placeholder(secret) in entries[2].message["result"]["content"][0]["text"]
    assert entries[0].message["params"]["arguments"]["user"] == "a"


@pytest.mark.parametrize(
    ("path", "message", "expected"),
    [
        pytest.param("a.b", {"a": {"b": "v"}}, {"a": {"b": placeholder("v")}}, id="nested member"),
        pytest.param("a.*.k", {"a": [{"k": 1}, {"k": 2}]}, {"a": [{"k": placeholder(1)}, {"k": placeholder(2)}]}, id="wildcard element"),
        pytest.param("a.1", {"a": ["x", "y"]}, {"a": ["x", placeholder("y")]}, id="list index"),
        pytest.param("a.missing", {"a": {"b": "v"}}, {"a": {"b": "v"}}, id="absent path is a no-op"),
        pytest.param("a.b", {"a": "scalar"}, {"a": "scalar"}, id="path through a scalar is a no-op"),
    ],
)
def test_redaction_paths_select_members_elements_and_wildcards(path: str, message: object, expected: object) -> None:
    assert Redactor([path]).apply(message) == expected


@pytest.mark.parametrize("path", ["", "a..b", ".a"])
def test_a_malformed_redaction_path_is_a_configuration_error(path: str) -> None:
    with pytest.raises(ConfigError):
        Redactor([path])


# -- reading: every malformed line is named ------------------------------------------------------


BAD_LINES = [
    # (name, lines, the line number the error must name)
    ("empty file", [], 1),
    ("header not JSON", [b"{oops", _entry(1)], 1),
    ("header not an object", [b"[1, 2]", _entry(1)], 1),
    ("not a cassette", [_line({**HEADER, "format": "mcp-airlock-lock/1"})], 1),
    ("future version", [_line({**HEADER, "format": "mcp-airlock-cassette/2"})], 1),
    ("header missing redact", [_line({k: v for k, v in HEADER.items() if k != "redact"})], 1),
    ("header unknown key", [_line({**HEADER, "extra": 1})], 1),
    ("header redact not strings", [_line({**HEADER, "redact": [1]})], 1),
    ("header session not a string", [_line({**HEADER, "session": 7})], 1),
    ("entry not JSON", [_line(HEADER), _entry(1), b'{"seq": 2, "dir": "c2g", "msg": ', _entry(3)], 3),
    ("truncated tail", [_line(HEADER), _entry(1), _entry(2)[:-7]], 3),
    ("entry not an object", [_line(HEADER), _entry(1), b'"c2g"'], 3),
    ("missing seq", [_line(HEADER), _line({"dir": "c2g", "msg": {}})], 2),
    ("missing msg", [_line(HEADER), _entry(1), _line({"seq": 2, "dir": "c2g"})], 3),
    ("unexpected key", [_line(HEADER), _entry(1, extra=True)], 2),
    ("msg and raw both", [_line(HEADER), _line({"seq": 1, "dir": "c2g", "msg": {}, "raw": "x"})], 2),
    ("unknown direction", [_line(HEADER), _entry(1), _entry(2, "c2u")], 3),
    ("duplicate seq", [_line(HEADER), _entry(1), _entry(2), _entry(2)], 4),
    ("reordered lines", [_line(HEADER), _entry(1), _entry(3), _entry(2)], 4),
    ("seq not an integer", [_line(HEADER), _line({"seq": "1", "dir": "c2g", "msg": {}})], 2),
    ("seq a boolean", [_line(HEADER), _line({"seq": True, "dir": "c2g", "msg": {}})], 2),
    ("blank line inside", [_line(HEADER), _entry(1), b"", _entry(2)], 3),
    ("invalid UTF-8", [_line(HEADER), b'{"seq": 1, "dir": "c2g", "raw": "\xff"}'], 2),
]


@pytest.mark.parametrize(("lines", "line_number"), [pytest.param(lines, n, id=name) for name, lines, n in BAD_LINES])
def test_a_malformed_cassette_is_refused_naming_the_file_and_the_line(tmp_path: Path, lines: list[bytes], line_number: int) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(_cassette(*lines) if lines else b"")
    with pytest.raises(CassetteError) as caught:
        read_cassette(path)
    error = caught.value
    assert error.line == line_number
    assert f"{path}:{line_number}: " in error.message
    assert error.exit_code == EXIT_USAGE
    assert isinstance(error, ConfigError)


def test_gaps_in_seq_are_allowed_so_a_hand_deleted_line_needs_no_renumbering() -> None:
    lines = _valid()
    del lines[2]
    assert [e.seq for e in parse_cassette(_cassette(*lines), "c").entries] == [1, 3, 4]


def test_an_unreadable_cassette_is_a_usage_error_without_a_line(tmp_path: Path) -> None:
    with pytest.raises(CassetteError) as caught:
        read_cassette(tmp_path / "missing.jsonl")
    assert caught.value.line is None
    assert caught.value.exit_code == EXIT_USAGE


def test_the_digest_names_the_recording_byte_for_byte() -> None:
    one = parse_cassette(_cassette(*_valid()), "c")
    two = parse_cassette(_cassette(*_valid()) + b"", "c")
    three = parse_cassette(_cassette(*_valid()[:-1]), "c")
    assert one.digest == two.digest != three.digest
