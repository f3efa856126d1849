"""Typed errors, their fixed JSON-RPC codes and the CLI's exit codes, in one table each.

Every failure the gateway can report has its own subclass of `GatewayError`. A client-visible
failure carries a fixed JSON-RPC code; a failure that ends the process carries an exit code.

JSON-RPC codes (client-visible). Codes reserved by the mcp SDK (-32000, -32001,
-32020..-32022, -32042) are never used: -32001 would look like a timeout to SDK clients.

| code   | error                    | meaning                                                     |
|--------|--------------------------|-------------------------------------------------------------|
| -32700 | ParseError               | the line is not JSON (or not UTF-8)                         |
| -32600 | InvalidRequest           | JSON, but not a JSON-RPC 2.0 message the gateway accepts    |
| -32601 | MethodNotFound           | the gateway cannot route this method (`run --all`)          |
| -32602 | InvalidParams            | a mediated request has malformed params                     |
| -32030 | PolicyDenied             | a rule denied the request; `data.rule` names it             |
| -32031 | UpstreamUnavailable      | the upstream server exited or could not be reached          |
| -32032 | MessageTooLarge          | a message exceeded the size limit, or nests past 128 levels |
| -32033 | TooManyInFlight          | the in-flight table is full                                 |
| -32034 | UpstreamProtocolError    | the upstream sent something that is not valid JSON-RPC      |
| -32035 | EvidenceUnavailable      | the flight log cannot record the decision: refused          |
| -32036 | FlowDenied               | a flow rule denied: labelled data would reach a sink; `data`|
|        |                          | names the rule, argument, labels and the source result      |

Exit codes (process):

| code | meaning                                                        |
|------|----------------------------------------------------------------|
| 0    | clean shutdown                                                 |
| 1    | internal error (a bug: please report it)                       |
| 2    | usage or configuration error (bad flag, bad config file)       |
| 3    | the upstream server could not be started or exited unexpectedly |
| 4    | differences found (`pin --diff`, `replay`, `fork`)             |
| 10-21| the evidence does not verify, one code per failure (below)     |

Imports: nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

# JSON-RPC 2.0 standard codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Airlock's own codes, outside every SDK-reserved code.
POLICY_DENIED = -32030
UPSTREAM_UNAVAILABLE = -32031
MESSAGE_TOO_LARGE = -32032
TOO_MANY_IN_FLIGHT = -32033
UPSTREAM_PROTOCOL_ERROR = -32034
EVIDENCE_UNAVAILABLE = -32035
FLOW_DENIED = -32036

SDK_RESERVED_CODES = frozenset({-32000, -32001, -32020, -32021, -32022, -32042})

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_UPSTREAM = 3
EXIT_DIFFERENT = 4

# Evidence that does not verify (`airlock verify`, receipts, rotation manifests); the classes are
# in `gateway.evidence.failures`.
EXIT_LOG_MALFORMED = 10  # a line (not the last) is not a well-formed entry
EXIT_HASH_MISMATCH = 11  # an entry's content does not match its hash
EXIT_CHAIN_BROKEN = 12  # an entry does not link to the one before
EXIT_SEQUENCE_BROKEN = 13  # sequence numbers are not 0, 1, 2, ...
EXIT_SIGNATURE_INVALID = 14  # a signature does not verify
EXIT_WRONG_KEY = 15  # not the pinned key, or a key id lies
EXIT_SESSION_MISMATCH = 16  # an entry of another session
EXIT_ENTRIES_AFTER_SEAL = 17  # data after the seal
EXIT_CHECKPOINT_INVALID = 18  # a checkpoint does not match the entries it covers
EXIT_UNSEALED = 20  # intact, but not sealed
EXIT_TORN_TAIL = 21  # as 20, and the last line is incomplete


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose.

    `code` is the JSON-RPC error code sent to a client, `exit_code` the process status when
    the error ends a command. `data` is structured detail that goes into the JSON-RPC error.
    """

    code: ClassVar[int] = INTERNAL_ERROR
    exit_code: ClassVar[int] = EXIT_INTERNAL

    def __init__(self, message: str, *, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_error_object(self) -> dict[str, Any]:
        """The JSON-RPC `error` member for this failure."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(GatewayError):
    code = PARSE_ERROR


class InvalidRequest(GatewayError):
    code = INVALID_REQUEST


class MethodNotFound(GatewayError):
    code = METHOD_NOT_FOUND


class InvalidParams(GatewayError):
    code = INVALID_PARAMS


class PolicyDenied(GatewayError):
    """A rule denied a request. `rule` is the rule id, `reason` the human explanation."""

    code = POLICY_DENIED

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(f"denied by airlock rule {rule}: {reason}", data={"rule": rule, "reason": reason})
        self.rule = rule
        self.reason = reason


class FlowDenied(GatewayError):
    """A flow rule denied a call: an argument carries labels the sink may not receive.
    `data` names the rule, the argument, its labels and the earlier result they came from."""

    code = FLOW_DENIED

    def __init__(self, rule: str, reason: str, detail: dict[str, Any]) -> None:
        super().__init__(f"denied by airlock flow rule {rule}: {reason}", data={**detail, "rule": rule, "reason": reason})
        self.rule = rule
        self.reason = reason


class UpstreamUnavailable(GatewayError):
    code = UPSTREAM_UNAVAILABLE
    exit_code = EXIT_UPSTREAM


class MessageTooLarge(GatewayError):
    code = MESSAGE_TOO_LARGE


class TooManyInFlight(GatewayError):
    code = TOO_MANY_IN_FLIGHT


class UpstreamProtocolError(GatewayError):
    code = UPSTREAM_PROTOCOL_ERROR


class ConfigError(GatewayError):
    """A configuration file or flag is wrong; the message says what to write instead."""

    exit_code = EXIT_USAGE


class UpstreamStartFailed(GatewayError):
    exit_code = EXIT_UPSTREAM


class EvidenceUnavailable(GatewayError):
    """The flight log could not record a decision (disk full, I/O error): the request is
    refused, never forwarded unrecorded."""

    code = EVIDENCE_UNAVAILABLE
