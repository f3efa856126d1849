"""MCP method names, as constants, and which list method publishes which kind of descriptor.

Every module that branches on a method name takes it from here, so a method is spelled once
and a search for its constant finds every place that treats it specially.
"""

from __future__ import annotations

from typing import Final, Literal

# Lifecycle and utilities (2025-11-25; `server/discover` opens a 2026-07-28 stateless exchange).
INITIALIZE: Final = "initialize"
INITIALIZED: Final = "notifications/initialized"
DISCOVER: Final = "server/discover"
PING: Final = "ping"
CANCELLED: Final = "notifications/cancelled"
PROGRESS: Final = "notifications/progress"
SET_LEVEL: Final = "logging/setLevel"
COMPLETE: Final = "completion/complete"
NOTIFICATION_PREFIX: Final = "notifications/"

# Tools, prompts, resources.
TOOLS_LIST: Final = "tools/list"
TOOLS_CALL: Final = "tools/call"
TOOLS_LIST_CHANGED: Final = "notifications/tools/list_changed"
PROMPTS_LIST: Final = "prompts/list"
PROMPTS_GET: Final = "prompts/get"
RESOURCES_LIST: Final = "resources/list"
RESOURCE_TEMPLATES_LIST: Final = "resources/templates/list"
RESOURCES_READ: Final = "resources/read"
RESOURCES_SUBSCRIBE: Final = "resources/subscribe"
RESOURCES_UNSUBSCRIBE: Final = "resources/unsubscribe"
TASKS_RESULT: Final = "tasks/result"

#: The namespace of the protocol's own `_meta` keys (a 2026-07-28 request's version, client info
#: and capabilities; `server/discover`'s server info).
PROTOCOL_META: Final = "io.modelcontextprotocol/"

# Requests a server sends the client.
SAMPLING: Final = "sampling/createMessage"
ELICITATION: Final = "elicitation/create"

#: The lists a server publishes, by the kind of descriptor each holds.
Kind = Literal["tools", "prompts", "resources", "resourceTemplates", "instructions"]
LIST_METHODS: Final[dict[str, Kind]] = {
    TOOLS_LIST: "tools",
    PROMPTS_LIST: "prompts",
    RESOURCES_LIST: "resources",
    RESOURCE_TEMPLATES_LIST: "resourceTemplates",
}

# Tasks (2025-11-25; `mcp-types` leaves them out of its surface maps) and the 2026-07-28 additions.
TASKS_GET: Final = "tasks/get"
TASKS_LIST: Final = "tasks/list"
TASKS_CANCEL: Final = "tasks/cancel"
TASKS_STATUS: Final = "notifications/tasks/status"
SUBSCRIPTIONS_LISTEN: Final = "subscriptions/listen"
ROOTS_LIST: Final = "roots/list"
ROOTS_LIST_CHANGED: Final = "notifications/roots/list_changed"
LOG_MESSAGE: Final = "notifications/message"
RESOURCE_UPDATED: Final = "notifications/resources/updated"
ELICITATION_COMPLETE: Final = "notifications/elicitation/complete"

#: How the gateway treats each message a client may send (request or notification), so that no
#: method reaches an upstream unclassed: `call` (decided by the rules, its arguments by the flows),
#: `read` (its result is a source, labelled by the policy), `list` (its descriptors are pinned and
#: screened), `handshake`, `utility` (no content either way, but its params still go through the
#: flows) and `notification`. Every one of them is a sink: its params, `_meta` included, are
#: checked by the flow rules before they are forwarded. A method not here is refused.
Channel = Literal["call", "read", "list", "handshake", "utility", "notification"]
CLIENT_METHODS: Final[dict[str, Channel]] = {
    TOOLS_CALL: "call",
    RESOURCES_READ: "read",
    PROMPTS_GET: "read",
    COMPLETE: "read",
    TASKS_RESULT: "read",
    TASKS_GET: "read",
    TASKS_LIST: "read",
    TOOLS_LIST: "list",
    PROMPTS_LIST: "list",
    RESOURCES_LIST: "list",
    RESOURCE_TEMPLATES_LIST: "list",
    INITIALIZE: "handshake",
    DISCOVER: "handshake",
    PING: "utility",
    SET_LEVEL: "utility",
    RESOURCES_SUBSCRIBE: "utility",
    RESOURCES_UNSUBSCRIBE: "utility",
    SUBSCRIPTIONS_LISTEN: "utility",
    TASKS_CANCEL: "utility",
    INITIALIZED: "notification",
    CANCELLED: "notification",
    PROGRESS: "notification",
    ROOTS_LIST_CHANGED: "notification",
    TASKS_STATUS: "notification",
}

#: Requests an upstream may send the client. Any other is refused (answered with an error).
SERVER_REQUEST_METHODS: Final = frozenset({PING, ROOTS_LIST, SAMPLING, ELICITATION, TASKS_GET, TASKS_RESULT, TASKS_LIST, TASKS_CANCEL})

#: Upstream notifications that carry no content the model reads: relayed as they are. Every
#: other one (log messages, progress messages, resource updates, methods the gateway does not
#: know) is a source: labelled in its `params._meta` and fingerprinted.
CONTENTLESS_NOTIFICATIONS: Final = frozenset(
    {
        CANCELLED,
        TOOLS_LIST_CHANGED,
        "notifications/prompts/list_changed",
        "notifications/resources/list_changed",
        "notifications/subscriptions/acknowledged",
    }
)

#: The results (2026-07-28) that may ask the client for input instead of answering.
INPUT_REQUIRED_METHODS: Final = frozenset({TOOLS_CALL, PROMPTS_GET, RESOURCES_READ})
INPUT_REQUESTS_KEY: Final = "inputRequests"
INPUT_RESPONSES_KEY: Final = "inputResponses"
