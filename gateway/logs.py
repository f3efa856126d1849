"""Structured logs on stderr. stdout is the protocol channel and never carries a log line.

Imports: nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Literal

import structlog

LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written (not when logging was configured), so
    a replaced stderr (a test's capture, a daemon's redirect) never gets a closed stream. A log
    line that cannot be written (stderr closed, its disk full) is dropped: diagnostics must
    never take the data path down."""

    def write(self, text: str) -> int:
        try:
            return sys.stderr.write(text)
        except (OSError, ValueError):
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def configure_logging(level: LogLevel = "info", fmt: LogFormat = "console") -> None:
    """Send structlog output to stderr, filtered at `level` (filtered calls cost nothing)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
