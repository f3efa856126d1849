"""gateway/fronts/http/pool.py: what the pooled session sends goes back to the HTTP request it
is for, with that request's own id and progress token, and nowhere else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types.jsonrpc import JSONRPCNotification, JSONRPCResponse

from gateway.fronts.http.pool import Pool
from gateway.fronts.http.settings import ServeSettings
from gateway.upstream import ChildSpec

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    made = Pool(ServeSettings(ChildSpec(("true",))), TransportSecuritySettings(enable_dns_rebinding_protection=False))
    async with made.connect():  # as the pooled session holds it
        yield made


def _channel(pool: Pool, request_id: object, token: object = None) -> tuple[dict[str, Any], str, asyncio.Queue[SessionMessage]]:
    """A channel as `Pool.answer` opens one, with one request sent on it: (what the session
    got, its gateway id, what the channel receives)."""
    channel = pool.ids.open_channel()
    params: dict[str, object] = {"name": "t"} if token is None else {"name": "t", "_meta": {"progressToken": token}}
    sent = pool.ids.inbound(channel, {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
    assert sent is not None
    queue: asyncio.Queue[SessionMessage] = asyncio.Queue()
    pool._channels[channel] = queue
    return sent, sent["id"], queue


async def test_a_response_goes_to_its_channel_with_the_id_the_client_sent(pool: Pool) -> None:
    _, _, to_first = _channel(pool, 1)
    _, second, to_second = _channel(pool, 1)
    pool.route(SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=second, result={"n": 2})))
    assert to_first.empty()
    answered = to_second.get_nowait().message
    assert isinstance(answered, JSONRPCResponse) and answered.id == 1 and answered.result == {"n": 2}
    pool.route(SessionMessage(JSONRPCResponse(jsonrpc="2.0", id=second, result={})))  # answered already: dropped
    assert to_second.empty()


async def test_progress_goes_to_its_request_with_the_clients_token(pool: Pool) -> None:
    sent, gateway_id, queue = _channel(pool, "a", token=7)
    sent_token = sent["params"]["_meta"]["progressToken"]
    progress = JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"progressToken": sent_token, "progress": 1})
    pool.route(SessionMessage(progress, metadata=ServerMessageMetadata(related_request_id=gateway_id)))
    delivered = queue.get_nowait()
    assert isinstance(delivered.message, JSONRPCNotification) and delivered.message.params == {"progressToken": 7, "progress": 1}
    assert isinstance(delivered.metadata, ServerMessageMetadata) and delivered.metadata.related_request_id == "a"


async def test_a_message_about_no_open_request_is_dropped(pool: Pool) -> None:
    _, _, queue = _channel(pool, 1)
    note = JSONRPCNotification(jsonrpc="2.0", method="notifications/message", params={"level": "info", "data": "x"})
    pool.route(SessionMessage(note))
    pool.route(SessionMessage(note, metadata=ServerMessageMetadata(related_request_id="airlock-stateless-99")))
    assert queue.empty()
