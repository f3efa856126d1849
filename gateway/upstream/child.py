"""An upstream MCP server as a child process: own process group, explicit environment,
stderr forwarded, ended without orphans.

MCP's stdio shutdown (2025-11-25, lifecycle): close the server's stdin, wait for it to exit,
SIGTERM if it does not, SIGKILL if it still does not. Signals go to the whole process group,
so a server started through `npx` or a shell takes its children with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from gateway.errors import UpstreamStartFailed
from gateway.protocol.pipes import HIGH_WATER, LOW_WATER, FlowLink

log = structlog.get_logger("airlock.upstream")

#: Variables a child inherits from the gateway when nothing else is said. Everything else
#: (API keys, tokens, cloud credentials) stays out unless the user passes it by name.
DEFAULT_ENV_ALLOWLIST: Final = ("HOME", "LOGNAME", "USER", "PATH", "SHELL", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

_PR_SET_PDEATHSIG: Final = 1


def child_environment(passthrough: Sequence[str], extra: Mapping[str, str], source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The explicit environment of a child: the allow-list and the named variables taken from
    `source` (default: the gateway's environment) where set, then `extra` on top."""
    environ = os.environ if source is None else source
    env = {name: environ[name] for name in (*DEFAULT_ENV_ALLOWLIST, *passthrough) if name in environ}
    env.update(extra)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the gateway is killed with SIGKILL it cannot end its child; ask Linux to send the
    # child SIGTERM when its parent dies.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True, slots=True)
class ChildSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    @property
    def display(self) -> str:
        """The upstream as logs and names show it: the program it runs."""
        return self.argv[0]


class _ChildProtocol(asyncio.SubprocessProtocol):
    def __init__(self, owner: ChildProcess) -> None:
        self._owner = owner

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self._owner._on_stdout(data)
        else:
            self._owner._on_stderr(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._owner.stdout_closed.set()
        elif fd == 0:
            self._owner.stdin_closed.set()

    def process_exited(self) -> None:
        self._owner.exited.set()

    def pause_writing(self) -> None:
        self._owner.stdin_flow.pause()

    def resume_writing(self) -> None:
        self._owner.stdin_flow.resume()


class ChildProcess:
    """A running upstream server. `on_stdout` gets raw stdout chunks; stderr is copied to the
    gateway's stderr."""

    def __init__(self, spec: ChildSpec, on_stdout: Callable[[bytes], None], *, stderr_fd: int = 2) -> None:
        self.spec = spec
        self._on_stdout = on_stdout
        self._stderr_fd = stderr_fd
        self._transport: asyncio.SubprocessTransport | None = None
        self.exited = asyncio.Event()
        self.stdout_closed = asyncio.Event()
        self.stdin_closed = asyncio.Event()
        #: Paused when the child's stdin backs up; the reader that feeds it is attached here.
        self.stdin_flow = FlowLink()

    async def start(self) -> None:
        """Raises:
        UpstreamStartFailed: the command cannot be run (not found, not executable, bad cwd).
        """
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = _die_with_parent
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _ChildProtocol(self),
                *self.spec.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(self.spec.env),
                cwd=self.spec.cwd,
                start_new_session=True,
                **kwargs,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise UpstreamStartFailed(
                f"cannot start the upstream server {self.spec.argv[0]!r}: {exc}; "
                "check the command after '--' (is it installed and on PATH?)"
            ) from exc
        self._transport = transport
        stdin = transport.get_pipe_transport(0)
        if isinstance(stdin, asyncio.WriteTransport):
            stdin.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        log.info("upstream started", pid=transport.get_pid(), argv=list(self.spec.argv))

    @property
    def pid(self) -> int:
        assert self._transport is not None
        return self._transport.get_pid()

    @property
    def returncode(self) -> int | None:
        return None if self._transport is None else self._transport.get_returncode()

    @property
    def stdin(self) -> asyncio.WriteTransport:
        assert self._transport is not None
        pipe = self._transport.get_pipe_transport(0)
        assert isinstance(pipe, asyncio.WriteTransport)
        return pipe

    def pause_reading(self) -> None:
        if self._transport is not None:
            pipe = self._transport.get_pipe_transport(1)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                pipe.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None:
            pipe = self._transport.get_pipe_transport(1)
            if isinstance(pipe, asyncio.ReadTransport) and not pipe.is_closing():
                pipe.resume_reading()

    def _on_stderr(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # our own stderr is gone: nothing to do with the child's
            os.write(self._stderr_fd, data)

    def ended_because(self) -> str:
        """Why the upstream is gone, for the errors that answer its open requests."""
        return f"the upstream server exited unexpectedly (status {self.returncode})"

    async def wait_output_done(self, timeout: float) -> None:
        """After the child exited: wait (bounded) until its stdout is read to the end, so no
        answer it wrote is lost. A grandchild that keeps the pipe open cannot hold us."""
        try:
            await asyncio.wait_for(self.stdout_closed.wait(), timeout)
        except TimeoutError:
            log.warning("upstream's stdout still open after it exited; not waiting longer")

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def terminate(self, grace: float = 1.0, term_grace: float = 2.0) -> int | None:
        """Close stdin, wait `grace` s for a voluntary exit, then SIGTERM the group, wait
        `term_grace` s, then SIGKILL it. Whatever the leader did, the rest of its group is
        killed so nothing outlives the gateway. Returns the exit status."""
        if self._transport is None:
            return None
        stdin = self._transport.get_pipe_transport(0)
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        for sig, wait in ((None, grace), (signal.SIGTERM, term_grace), (signal.SIGKILL, 5.0)):
            if sig is not None:
                if self.exited.is_set():
                    break
                log.info("ending upstream", signal=signal.Signals(sig).name, pid=self.pid)
                self._signal_group(sig)
            try:
                await asyncio.wait_for(self.exited.wait(), wait)
                break
            except TimeoutError:
                continue
        self._signal_group(signal.SIGKILL)  # stragglers in the group (the leader is gone)
        self._transport.close()
        return self.returncode
