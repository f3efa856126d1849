"""gateway/protocol/inflight.py: the bounded table of open requests of one direction."""

from __future__ import annotations

import pytest

from gateway.errors import INVALID_REQUEST, TOO_MANY_IN_FLIGHT, InvalidRequest, TooManyInFlight
from gateway.protocol.inflight import DEFAULT_MAX_IN_FLIGHT, InFlightTable
from gateway.protocol.jsonrpc import RequestId


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(1, id="int"),
        pytest.param("1", id="str"),
        pytest.param(2**70, id="big-int"),
        pytest.param("", id="empty-str"),
    ],
)
def test_opening_an_id_that_is_already_open_is_invalid_request(request_id: RequestId) -> None:
    table = InFlightTable()
    table.open(request_id, "tools/call")
    with pytest.raises(InvalidRequest) as caught:
        table.open(request_id, "ping")
    assert caught.value.code == INVALID_REQUEST
    assert caught.value.data == {"id": request_id}
    pending = table.get(request_id)
    assert pending is not None
    assert pending.method == "tools/call"
    assert len(table) == 1


def test_opening_beyond_the_limit_is_too_many_in_flight() -> None:
    table = InFlightTable(limit=2)
    table.open(1, "a")
    table.open(2, "b")
    with pytest.raises(TooManyInFlight) as caught:
        table.open(3, "c")
    assert caught.value.code == TOO_MANY_IN_FLIGHT
    assert caught.value.data == {"limit": 2}
    assert len(table) == 2


def test_closing_frees_a_slot_under_the_limit() -> None:
    table = InFlightTable(limit=1)
    table.open(1, "a")
    table.close(1)
    table.open(2, "b")
    assert len(table) == 1


def test_integer_and_string_ids_with_the_same_digits_are_distinct() -> None:
    table = InFlightTable()
    table.open(1, "int-method", context="int")
    table.open("1", "str-method", context="str")
    assert len(table) == 2
    closed_str = table.close("1")
    assert closed_str is not None
    assert closed_str.id == "1"
    assert closed_str.context == "str"
    closed_int = table.close(1)
    assert closed_int is not None
    assert type(closed_int.id) is int
    assert closed_int.method == "int-method"


def test_close_returns_the_pending_request_once() -> None:
    table = InFlightTable()
    opened = table.open("x", "tools/list", context={"k": 1})
    assert table.close("x") is opened
    assert table.close("x") is None
    assert len(table) == 0


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param(9, id="never-opened-int"),
        pytest.param("9", id="never-opened-str"),
        pytest.param("1", id="str-twin-of-open-int"),
    ],
)
def test_close_returns_none_for_an_unknown_id(request_id: RequestId) -> None:
    table = InFlightTable()
    table.open(1, "ping")
    assert table.close(request_id) is None
    assert table.get(request_id) is None
    assert len(table) == 1


def test_drain_empties_the_table_oldest_first() -> None:
    table = InFlightTable()
    ids: list[RequestId] = [3, "b", 1, "a"]
    for request_id in ids:
        table.open(request_id, f"m{request_id}")
    table.close(1)
    drained = table.drain()
    assert [p.id for p in drained] == [3, "b", "a"]
    assert [p.method for p in drained] == ["m3", "mb", "ma"]
    assert len(table) == 0
    assert table.drain() == []


def test_default_limit_is_the_documented_one() -> None:
    assert InFlightTable().limit == DEFAULT_MAX_IN_FLIGHT
