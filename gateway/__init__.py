"""MCP Airlock: a security gateway for the Model Context Protocol."""

from gateway.errors import GatewayError, PolicyDenied
from gateway.session.relay import Relay

__version__ = "0.1.0"

__all__ = ["GatewayError", "PolicyDenied", "Relay", "__version__"]
