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
