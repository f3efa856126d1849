"""HTTP overhead (issue 6): the same echo calls against server-everything over streamable HTTP
directly, through `airlock serve` (HTTP front, stdio upstream), and through `mcp-proxy` (PyPI),
the usual HTTP->stdio bridge, all in one run.

    .venv/bin/python benchmarks/http_bench.py [--calls N] [--rounds R] [--paths a,b,...] [--no-mcp-proxy]

Paths: `direct` is server-everything in its `streamableHttp` mode; `airlock serve` and
`mcp-proxy` each wrap the stdio server-everything; `airlock run --url` (drop it with `--paths`) is
the other direction, a stdio client in front of the direct HTTP server. mcp-proxy needs mcp 1.x,
which conflicts with this project's mcp 2.x: it is installed (pinned) into its own venv,
`benchmarks/.venv-mcp-proxy`, on first use; if that fails, its path is skipped with the reason.

The client is a raw JSON-RPC client on httpx2 (HTTP/1.1 keep-alive), the same on every HTTP
path; it reads a reply as JSON or as SSE, whichever the server sends. Measured per path and
round: p50/p99 of one call in flight (one session); calls/s with 1 in flight; calls/s with 16
in flight on one session (16 concurrent POSTs, 16 connections: `@16 1 sess`); calls/s and p50
with 16 sessions, each on its own connection with one call in flight (`@16 16 sess`). All
servers stay up for the whole run and are measured in interleaved rounds (the order rotates each
round); each figure is the median over the rounds. Targets (issue 6): `airlock serve` faster
than `mcp-proxy` on the HTTP->stdio bridge, and added p50 <= 2 ms over direct HTTP.

Not like for like, and said so in the output: `airlock serve` starts one upstream per MCP
session, `mcp-proxy` shares one upstream between all sessions; direct server-everything runs
all sessions in one process. `airlock run --url` is driven over stdio, so its client is cheaper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx2
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rawclient import RawClient

ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = str(ROOT / "node_modules" / ".bin" / "mcp-server-everything")
POLICY = str(ROOT / "tests" / "e2e" / "policies" / "transparent.toml")
PROXY_VENV = ROOT / "benchmarks" / ".venv-mcp-proxy"
PROXY_PIN = "mcp-proxy==0.13.0"
ECHO = {"name": "echo", "arguments": {"message": "hello through the airlock"}}
PROTOCOL = "2025-11-25"
SESSIONS = 16


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sse_messages(body: bytes) -> list[Any]:
    """The JSON-RPC messages in an SSE body: one per event with data, its `data:` lines joined."""
    out: list[Any] = []
    data: list[bytes] = []
    for raw in body.split(b"\n"):
        line = raw.rstrip(b"\r")
        if not line:
            if any(data):  # an event without data (e.g. a resumability priming event) carries no message
                out.append(orjson.loads(b"\n".join(data)))
            data = []
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    if any(data):
        out.append(orjson.loads(b"\n".join(data)))
    return out


class Caller(Protocol):
    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class HttpSession:
    """One MCP session over streamable HTTP; `connections` bounds its keep-alive pool."""

    def __init__(self, url: str, connections: int) -> None:
        self.url = url
        limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx2.AsyncClient(limits=limits, timeout=60)
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        self._next_id = 0

    @classmethod
    async def open(cls, url: str, connections: int = 1) -> HttpSession:
        session = cls(url, connections)
        reply = await session.post("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                                  "clientInfo": {"name": "bench", "version": "0"}})  # fmt: skip
        session.headers["mcp-protocol-version"] = reply["result"]["protocolVersion"]
        await session.post("notifications/initialized", None)
        await session.call("tools/list", {})  # the gateway lets only listed tools be called
        return session

    async def post(self, method: str, params: dict[str, Any] | None) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            self._next_id += 1
            message["id"] = self._next_id
            message["params"] = params
        response = await self.http.post(self.url, content=orjson.dumps(message), headers=self.headers)
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
        if "id" not in message:
            assert response.status_code == 202, (response.status_code, response.content)
            return {}
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("text/event-stream"):
            messages = sse_messages(response.content)
        else:
            parsed = orjson.loads(response.content)
            messages = parsed if type(parsed) is list else [parsed]
        for reply in messages:
            if reply.get("id") == message["id"] and "method" not in reply:
                return dict(reply)
        raise AssertionError(f"no reply to {method} in {response.status_code} {response.content[:300]!r}")

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await self.post(method, params)
        assert "result" in reply, reply
        return reply

    async def close(self) -> None:
        with contextlib.suppress(httpx2.HTTPError):
            await self.http.delete(self.url, headers=self.headers)
        await self.http.aclose()


@dataclass
class StdioSession:
    """`airlock run --url`: a stdio client (the benchmarks' RawClient) in front of HTTP."""

    client: RawClient

    @classmethod
    async def open(cls, argv: list[str]) -> StdioSession:
        client = await RawClient.start(argv)
        await client.initialize()
        await client.request("tools/list", {})
        return cls(client)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = await self.client.request(method, params)
        assert "result" in reply, reply
        return reply

    async def close(self) -> None:
        await self.client.close()


@dataclass
class Route:
    """A path under test: its sessions and the samples taken through them."""

    name: str
    single: Caller  # one session: sequential calls, and 16 in flight on it
    many: list[Caller]  # SESSIONS sessions, one call in flight each
    samples: list[dict[str, float]] = field(default_factory=list)


async def sequential(caller: Caller, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        await caller.call("tools/call", ECHO)
        out.append(time.perf_counter() - t0)
    return out


async def concurrent(callers: list[Caller], count: int, in_flight: int) -> tuple[float, list[float]]:
    """(calls/s, per-call seconds) with `in_flight` workers spread over `callers`."""
    remaining = count
    lat: list[float] = []

    async def worker(caller: Caller) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            await caller.call("tools/call", ECHO)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(callers[i % len(callers)]) for i in range(in_flight)))
    return count / (time.perf_counter() - t0), lat


async def sample(path: Route, calls: int) -> dict[str, float]:
    lat = await sequential(path.single, calls // 2)
    cps1, _ = await concurrent([path.single], calls // 2, 1)
    cps16_one, _ = await concurrent([path.single], calls, SESSIONS)
    cps16_many, lat16 = await concurrent(path.many, calls, SESSIONS)
    return {
        "p50_ms": statistics.median(lat) * 1e3,
        "p99_ms": quantile(lat, 0.99) * 1e3,
        "cps1": cps1,
        "cps16_one": cps16_one,
        "cps16_many": cps16_many,
        "p50_16_ms": statistics.median(lat16) * 1e3,
    }


@dataclass
class Server:
    name: str
    process: asyncio.subprocess.Process
    stderr: Path

    def tail(self) -> str:
        lines = self.stderr.read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])


async def start_server(name: str, argv: list[str], url: str, workdir: Path, env: dict[str, str] | None = None) -> Server:
    stderr = workdir / f"{name.replace(' ', '-')}.stderr"
    with stderr.open("wb") as errfile:
        process = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile,
                                                       env={**os.environ, **(env or {})}, cwd=ROOT, start_new_session=True)  # fmt: skip
    server = Server(name, process, stderr)
    deadline = time.monotonic() + 60
    async with httpx2.AsyncClient() as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}:\n{server.tail()}")
            try:
                await http.get(url, timeout=2)
                return server
            except httpx2.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not listen on {url} within 60 s:\n{server.tail()}") from None
                await asyncio.sleep(0.05)


async def stop_server(server: Server) -> None:
    if server.process.returncode is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(server.process.wait(), 5)
        except TimeoutError:
            os.killpg(server.process.pid, signal.SIGKILL)
            await server.process.wait()


def mcp_proxy() -> tuple[Path | None, str]:
    """The mcp-proxy executable in its own venv (installed on first use), or None and why not."""
    exe = PROXY_VENV / "bin" / "mcp-proxy"
    pip = PROXY_VENV / "bin" / "pip"
    version = PROXY_PIN.split("==")[1]
    if exe.exists():
        shown = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
        if version in shown.stdout + shown.stderr:
            return exe, f"{PROXY_PIN} (in {PROXY_VENV.relative_to(ROOT)})"
    print(f"installing {PROXY_PIN} into {PROXY_VENV.relative_to(ROOT)} ...", file=sys.stderr)
    steps = [[sys.executable, "-m", "venv", str(PROXY_VENV)], [str(pip), "install", "--quiet", "--disable-pip-version-check", PROXY_PIN]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"`{' '.join(step[-2:])}` failed (status {done.returncode}): {done.stderr.strip()[-300:]}"
    return exe, f"{PROXY_PIN} (in {PROXY_VENV.relative_to(ROOT)})"


async def open_path(name: str, open_one: Callable[[int], Coroutine[Any, Any, Caller]]) -> Route:
    single = await open_one(SESSIONS)
    many = [await open_one(1) for _ in range(SESSIONS)]
    return Route(name, single, many)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000, help="calls per measurement (the sequential ones use half)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--paths", default="direct,airlock serve,mcp-proxy,airlock run --url",
                        help="comma-separated subset of: direct, airlock serve, mcp-proxy, airlock run --url")  # fmt: skip
    parser.add_argument("--no-mcp-proxy", action="store_true", help="skip mcp-proxy (no install)")
    args = parser.parse_args()
    wanted = [p.strip() for p in args.paths.split(",") if p.strip()]
    if args.no_mcp_proxy and "mcp-proxy" in wanted:
        wanted.remove("mcp-proxy")
    wanted = ["direct", *(p for p in wanted if p != "direct")]  # every figure is relative to direct
    notes: list[str] = []
    proxy_exe: Path | None = None
    if "mcp-proxy" in wanted:
        proxy_exe, why = mcp_proxy()
        notes.append(f"mcp-proxy: {why}" if proxy_exe else f"mcp-proxy path SKIPPED: {why}")
        if proxy_exe is None:
            wanted.remove("mcp-proxy")

    workdir = Path(tempfile.mkdtemp(prefix="airlock-http-bench-"))
    servers: list[Server] = []
    paths: list[Route] = []
    urls: dict[str, str] = {}
    try:
        for name in wanted:
            port = free_port()
            url = f"http://127.0.0.1:{port}/mcp"
            if name == "direct":
                servers.append(await start_server(name, [EVERYTHING, "streamableHttp"], url, workdir, {"PORT": str(port)}))
            elif name == "airlock serve":
                argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--insecure-no-auth",
                        "--policy", POLICY, "--log-level", "warning", "--", EVERYTHING]  # fmt: skip
                servers.append(await start_server(name, argv, url, workdir))
            elif name == "mcp-proxy":
                assert proxy_exe is not None
                argv = [str(proxy_exe), "--host", "127.0.0.1", "--port", str(port), "--log-level", "WARNING", "--pass-environment",
                        "--", EVERYTHING]  # fmt: skip
                servers.append(await start_server(name, argv, url, workdir))
            elif name != "airlock run --url":
                parser.error(f"unknown path {name!r}")
            urls[name] = url
        for name in wanted:
            if name == "airlock run --url":
                argv = [sys.executable, "-m", "gateway", "run", "--log-level", "warning", "--policy", POLICY, "--url", urls["direct"]]

                async def open_stdio(_: int, argv: list[str] = argv) -> Caller:
                    return await StdioSession.open(argv)

                paths.append(await open_path(name, open_stdio))
            else:

                async def open_http(connections: int, url: str = urls[name]) -> Caller:
                    return await HttpSession.open(url, connections)

                paths.append(await open_path(name, open_http))
        for path in paths:  # warm-up
            await concurrent([path.single], 300, SESSIONS)
            await concurrent(path.many, 300, SESSIONS)
        t_start = time.perf_counter()
        for round_index in range(args.rounds):
            shift = round_index % len(paths)
            for path in paths[shift:] + paths[:shift]:
                path.samples.append(await sample(path, args.calls))
        elapsed = time.perf_counter() - t_start
    finally:
        for path in paths:
            for caller in [path.single, *path.many]:
                await caller.close()
        for server in servers:
            await stop_server(server)
    report(paths, args, elapsed, notes)


def report(paths: list[Route], args: argparse.Namespace, elapsed: float, notes: list[str]) -> None:
    figures = {p.name: {k: statistics.median(s[k] for s in p.samples) for k in p.samples[0]} for p in paths}
    direct = figures["direct"]
    print(f"echo tools/call against server-everything over streamable HTTP; median of {args.rounds} interleaved rounds, "
          f"{args.calls} calls per measurement ({elapsed:.0f} s measured); {os.cpu_count()} CPUs")  # fmt: skip
    print("@16 1 sess: 16 concurrent POSTs on one MCP session (16 connections); @16 16 sess: 16 sessions, one connection "
          "and one call in flight each")  # fmt: skip
    for note in notes:
        print(note)
    print()
    head = f"{'path':<19}{'p50 ms':>8}{'p99 ms':>8}{'added p50':>10}{'calls/s @1':>11}{'@16 1 sess':>11}{'@16 16 sess':>12}{'p50 @16':>9}"
    print(head)
    for name, f in figures.items():
        added = f["p50_ms"] - direct["p50_ms"]
        print(f"{name:<19}{f['p50_ms']:>8.2f}{f['p99_ms']:>8.2f}{added:>10.2f}{f['cps1']:>11.0f}{f['cps16_one']:>11.0f}"
              f"{f['cps16_many']:>12.0f}{f['p50_16_ms']:>9.2f}")  # fmt: skip
    print()
    print(f"{'ratio to direct':<19}{'p50':>8}{'calls/s @1':>11}{'@16 1 sess':>11}{'@16 16 sess':>12}{'p50 @16':>9}")
    for name, f in figures.items():
        if name == "direct":
            continue
        r = {k: f[k] / direct[k] for k in f}
        print(f"{name:<19}{r['p50_ms']:>8.2f}{r['cps1']:>11.0%}{r['cps16_one']:>11.0%}{r['cps16_many']:>12.0%}{r['p50_16_ms']:>9.2f}")
    print()
    airlock = figures.get("airlock serve")
    if airlock is None:
        return
    added = airlock["p50_ms"] - direct["p50_ms"]
    print(f"target: airlock serve added p50 <= 2 ms over direct HTTP: {added:.2f} ms -> {'MET' if added <= 2.0 else 'MISSED'}")
    proxy = figures.get("mcp-proxy")
    if proxy is None:
        print("target: airlock serve faster than mcp-proxy: not measured (no mcp-proxy path)")
        return
    keys = [("p50 @1", "p50_ms", False), ("calls/s @1", "cps1", True), ("calls/s @16 1 sess", "cps16_one", True),
            ("calls/s @16 16 sess", "cps16_many", True), ("p50 @16 16 sess", "p50_16_ms", False)]  # fmt: skip
    wins = []
    for label, key, higher_better in keys:
        ratio = airlock[key] / proxy[key]
        better = ratio > 1 if higher_better else ratio < 1
        wins.append(better)
        print(f"  airlock serve / mcp-proxy, {label:<20}{ratio:>6.2f}  ({'airlock faster' if better else 'mcp-proxy faster'})")
    verdict = "MET" if all(wins) else "MISSED" if not any(wins) else "PARTLY MET"
    print(f"target: airlock serve faster than mcp-proxy on the HTTP->stdio bridge: {verdict} ({sum(wins)}/{len(wins)} measures)")
    print("note: airlock serve runs one upstream per session; mcp-proxy shares one upstream between all sessions")


if __name__ == "__main__":
    asyncio.run(main())
