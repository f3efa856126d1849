"""Results are sources: every answer of the upstream to a request whose result the model reads
(a tool call; `resources/read`, `prompts/get`, `completion/complete`, tasks) is labelled by the
policy (`Labelling.label`, with the facts of its tool, or of its server and URI), hashed as the
client gets it, remembered in the session's provenance, and a tool result recorded in the
flight log. A 2026-07-28 `input_required` result has its asks mediated first (`Inputs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from gateway.evidence.flightlog import FlightLog
from gateway.mediation.inputs import Inputs, log_request_id
from gateway.mediation.labelling import Labelling
from gateway.policy.flows import CompiledFlows, ToolFacts
from gateway.protocol import jsonrpc, methods
from gateway.protocol.jsonrpc import JsonObject
from gateway.screening.neutralise import neutralise_line

_INPUT_REQUIRED: Final = "input_required"
_TASKS_KEPT: Final = 10_000
_TASK_METHODS: Final = frozenset({methods.TASKS_RESULT, methods.TASKS_GET, methods.TASKS_LIST})


@dataclass(slots=True)
class Call:
    """A tool call let through: what its result is labelled and recorded with."""

    entry_hash: str | None
    tool: str
    descriptor_hash: str | None
    facts: ToolFacts | None = None
    suspect: bool = False
    own: frozenset[int] = frozenset()  # the arguments' fingerprints: what the result may echo


@dataclass(frozen=True, slots=True)
class Read:
    """A request whose result is a source but not a tool's (`CLIENT_METHODS` class `read`):
    labelled by the policy's declarations for its server and `uri`, a task's like the tool call
    that started it (`call`)."""

    method: str
    call: Call | None = None
    uri: str | None = None


class Results:
    """One session's results from one server (`identity()`: its current name)."""

    def __init__(
        self,
        identity: Callable[[], str],
        flows: CompiledFlows,
        labelling: Labelling,
        inputs: Inputs,
        flight_log: FlightLog | None,
        *,
        store_raw: bool,
    ) -> None:
        self._identity = identity
        self._flows = flows
        self._labelling = labelling
        self._inputs = inputs
        self._log = flight_log
        self._store_raw = store_raw
        self._tasks: dict[str, Call] = {}  # task id -> the call that started it

    def read(self, method: str, params: Any) -> Read:
        """What a `read` request's result is labelled with."""
        members = params if type(params) is dict else {}
        task_id = members.get("taskId")
        call = self._tasks.get(task_id) if type(task_id) is str and method in _TASK_METHODS else None
        uri = members.get("uri") if type(members.get("uri")) is str else None
        return Read(method, call, uri)

    def read_result(self, read: Read, message: JsonObject) -> bytes:
        call = read.call
        if call is not None:
            labelled, pending = self._labelling.label(call.tool, call.facts, call.suspect, message)
        else:  # the result of an unknown task is suspect: its tool's declarations cannot be applied
            facts = self._flows.source_facts(self._identity(), read.uri)
            labelled, pending = self._labelling.label(
                read.method, facts, read.method == methods.TASKS_RESULT and read.call is None, message
            )
        labelled = self._asks(read.method, labelled)  # after `label`, which removes airlock's _meta keys it did not write
        encoded = neutralise_line(jsonrpc.encode(labelled))
        self._labelling.remember(read.method, hashlib.sha256(encoded).hexdigest(), pending)
        return encoded

    def call_result(self, call: Call, message: JsonObject) -> bytes:
        result = message.get("result")
        task = result.get("task") if type(result) is dict else None
        if type(task) is dict and type(task.get("taskId")) is str:
            # A task-augmented call: the real result comes later through tasks/result.
            if len(self._tasks) >= _TASKS_KEPT:
                self._tasks.pop(next(iter(self._tasks)))
            self._tasks[task["taskId"]] = call
        message, pending = self._labelling.label(call.tool, call.facts, call.suspect, message)
        message = self._asks(methods.TOOLS_CALL, message)
        encoded = neutralise_line(jsonrpc.encode(message))  # hash exactly what the client gets
        result_hash = hashlib.sha256(encoded).hexdigest()
        label_data = self._labelling.remember(call.tool, result_hash, pending, call.own)
        if self._log is not None:
            result = message.get("result")
            data: dict[str, Any] = {
                "call": call.entry_hash,
                "is_error": "error" in message or (type(result) is dict and result.get("isError") is True),
                **label_data,
            }
            if self._store_raw:
                data["response"] = encoded.decode()
            self._log.record(
                kind="result",
                server=self._identity(),
                tool=call.tool,
                request_id=log_request_id(message.get("id")),
                descriptor_hash=call.descriptor_hash,
                result_hash=result_hash,
                data=data,
            )
        return encoded

    def _asks(self, method: str, message: JsonObject) -> JsonObject:
        """A 2026-07-28 result that asks the client for input first: its asks mediated."""
        result = message.get("result")
        if method in methods.INPUT_REQUIRED_METHODS and type(result) is dict and result.get("resultType") == _INPUT_REQUIRED:
            return self._inputs.input_required(message, message.get("id"))
        return message
