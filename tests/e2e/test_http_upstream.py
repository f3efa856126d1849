"""`airlock run --url`: a remote upstream over streamable HTTP (server-everything in its
`streamableHttp` mode), driven by the real mcp client over the gateway's stdio."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from gateway.labels.masks import META_KEY
from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, free_port

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-bearer-token-never-logged"


def _through(url: str, *options: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    args = ["-m", "gateway", "run", "--policy", str(TRANSPARENT_POLICY), "--url", url, *options]
    return StdioServerParameters(command=sys.executable, args=args, cwd=str(ROOT), env=env)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_remote_streamable_http_server_is_relayed_and_its_results_labelled(remote_everything: str, mode: str) -> None:
    with anyio.fail_after(60):
        async with Client(remote_everything, mode=mode) as direct:
            expected = sorted(t.name for t in (await direct.list_tools()).tools)
        async with Client(_through(remote_everything), mode=mode) as client:
            tools = sorted(t.name for t in (await client.list_tools()).tools)
            echoed = await client.call_tool("echo", {"message": "over http"})
    assert tools == expected
    assert echoed.content[0].text == "Echo: over http"  # type: ignore[union-attr]
    meta: dict[str, Any] = echoed.meta or {}
    assert meta[META_KEY]["integrity"] == "untrusted"


async def test_a_bearer_token_from_the_environment_is_sent_and_never_logged(remote_everything: str, tmp_path: Any) -> None:
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "UPSTREAM_TOKEN": SECRET}
    params = _through(remote_everything, "--bearer-env", "UPSTREAM_TOKEN", "--log-level", "debug", env=env)
    with anyio.fail_after(60), stderr.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert (await session.list_tools()).tools
    assert SECRET not in stderr.read_text()


def test_an_unreachable_remote_upstream_stops_the_gateway_with_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    done = subprocess.run([sys.executable, "-m", "gateway", "run", "--url", url], cwd=str(ROOT), input=b"", capture_output=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert url.encode() in done.stderr


def test_url_and_a_command_together_are_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "run", "--url", "http://127.0.0.1:1/mcp", "--", "echo"], cwd=str(ROOT),
                          input=b"", capture_output=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert b"either --url" in done.stderr


async def test_a_remote_upstream_named_in_the_config_is_relayed(remote_everything: str, tmp_path: Any) -> None:
    config = tmp_path / "airlock.toml"
    config.write_text(f'[upstreams.everything]\nurl = "{remote_everything}"\nbearer_env = "UPSTREAM_TOKEN"\ntimeout = 20\n')
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), env={**os.environ, "UPSTREAM_TOKEN": SECRET},
                                   args=["-m", "gateway", "run", "--policy", str(TRANSPARENT_POLICY), "--config", str(config)])  # fmt: skip
    with anyio.fail_after(60):
        async with Client(params, mode="legacy") as client:
            echoed = await client.call_tool("echo", {"message": "configured"})
    assert echoed.content[0].text == "Echo: configured"  # type: ignore[union-attr]


def test_a_remote_server_can_be_pinned_and_its_pins_compared(remote_everything: str, tmp_path: Any) -> None:
    lock = tmp_path / "airlock.lock"

    def pin(*extra: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "gateway", "pin", "--url", remote_everything, "--name", "everything", "--lock",
                               str(lock), *extra], cwd=str(ROOT), capture_output=True, timeout=120, check=False)  # fmt: skip

    written = pin()
    assert written.returncode == 0, written.stderr
    pinned = lock.read_text()
    assert '"everything"' in pinned and "echo" in pinned
    compared = pin("--diff")
    assert compared.returncode == 0, compared.stderr  # the same server: no changes
    assert b"no changes" in compared.stderr


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_a_url_from_the_environment_never_shows_its_query_token(remote_everything: str, tmp_path: Any, level: str) -> None:
    stderr = tmp_path / "stderr.txt"
    env = {**os.environ, "UPSTREAM_URL": f"{remote_everything}?token={SECRET}"}
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), env=env,
                                   args=["-m", "gateway", "run", "--policy", str(TRANSPARENT_POLICY), "--url-env", "UPSTREAM_URL",
                                         "--log-level", level])  # fmt: skip
    with anyio.fail_after(60), stderr.open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            echoed = await session.call_tool("echo", {"message": "via url-env"})
    assert echoed.content[0].text == "Echo: via url-env"  # type: ignore[union-attr]
    logged = stderr.read_text()
    assert SECRET not in logged
    assert "?..." in logged  # the URL is shown, without its query
