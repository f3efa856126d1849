"""`airlock serve` over TLS, and with client certificates (mTLS), with certificates made here
by a throwaway CA; and the per-token rate limit answering 429 with Retry-After."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import ROOT, TRANSPARENT_POLICY, eventually, everything_argv, free_port

pytestmark = pytest.mark.anyio
TOKEN = "tls-0123456789abcdef01"
NOW = datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(path: Path, common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
            .not_valid_after(NOW + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))  # fmt: skip
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _leaf(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], common: str, out: Path, *, server: bool) -> tuple[Path, Path]:
    key = _key()
    builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca[0].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=1)))  # fmt: skip
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    cert = builder.sign(ca[1], hashes.SHA256())
    cert_path, key_path = out / f"{common}.crt", out / f"{common}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = _ca(tmp_path / "ca.crt", "airlock-test-ca")
    other = _ca(tmp_path / "other-ca.crt", "other-ca")
    server_cert, server_key = _leaf(ca, "server", tmp_path, server=True)
    client_cert, client_key = _leaf(ca, "client", tmp_path, server=False)
    colleague_cert, colleague_key = _leaf(ca, "colleague", tmp_path, server=False)
    stranger_cert, stranger_key = _leaf(other, "stranger", tmp_path, server=False)
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci:{TOKEN}\nother:{TOKEN}-2\n")
    return {"ca": tmp_path / "ca.crt", "server_cert": server_cert, "server_key": server_key, "client_cert": client_cert,
            "client_key": client_key, "colleague_cert": colleague_cert, "colleague_key": colleague_key,
            "stranger_cert": stranger_cert, "stranger_key": stranger_key, "tokens": tokens, "dir": tmp_path}  # fmt: skip


def _serve(pki: dict[str, Path], *options: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{port}", "--token-file", str(pki["tokens"]),
            *options, "--policy", str(TRANSPARENT_POLICY), "--", *everything_argv()]  # fmt: skip
    with (pki["dir"] / f"serve-{port}.txt").open("w") as stderr:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(argv, cwd=str(ROOT), stderr=stderr, stdout=subprocess.DEVNULL), port


@pytest.fixture
def https(pki: dict[str, Path]) -> Iterator[str]:
    process, port = _serve(pki, "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]))
    try:
        yield f"https://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(15)


@pytest.fixture
def mtls(pki: dict[str, Path]) -> Iterator[str]:
    (pki["dir"] / "logs").mkdir()
    process, port = _serve(pki, "--tls-cert", str(pki["server_cert"]), "--tls-key", str(pki["server_key"]), "--tls-client-ca",
                           str(pki["ca"]), "--log", str(pki["dir"] / "logs"), "--ephemeral-key")  # fmt: skip
    try:
        yield f"https://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(15)


def _context(pki: dict[str, Path], client: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    if client is not None:
        context.load_cert_chain(str(pki[f"{client}_cert"]), str(pki[f"{client}_key"]))
    return context


async def _reachable(url: str, context: ssl.SSLContext) -> bool:
    try:
        async with httpx2.AsyncClient(verify=context) as http:
            await http.get(url)
        return True
    except httpx2.ConnectError:
        return False
    except httpx2.HTTPError:
        return True  # the TLS handshake or the request failed after connecting: the server is up


async def _echo(url: str, context: ssl.SSLContext) -> str:
    async with (
        httpx2.AsyncClient(verify=context, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy") as client,
    ):
        result = await client.call_tool("echo", {"message": "over tls"})
    return str(result.content[0].text)  # type: ignore[union-attr]


async def test_serve_answers_over_https_and_not_over_plain_http(https: str, pki: dict[str, Path]) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _reachable(https, _context(pki)))
        assert await _echo(https, _context(pki)) == "Echo: over tls"
        with pytest.raises(httpx2.HTTPError):
            async with httpx2.AsyncClient() as http:
                await http.post(https.replace("https://", "http://"), json={})


async def test_with_a_client_ca_only_clients_with_a_certificate_it_signed_get_in(mtls: str, pki: dict[str, Path]) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _reachable(mtls, _context(pki, "client")))
        assert await _echo(mtls, _context(pki, "client")) == "Echo: over tls"
        for context in (_context(pki), _context(pki, "stranger")):
            with pytest.raises(httpx2.HTTPError):
                async with httpx2.AsyncClient(verify=context, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    await http.post(mtls, json={"jsonrpc": "2.0", "id": 1, "method": "ping"})


def test_a_client_ca_without_a_server_certificate_is_refused(pki: dict[str, Path]) -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "serve", "--listen", f"127.0.0.1:{free_port()}", "--token-file",
                           str(pki["tokens"]), "--tls-client-ca", str(pki["ca"]), "--", "true"], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2
    assert "--tls-client-ca needs --tls-cert" in done.stderr


async def test_a_token_over_its_rate_gets_429_with_retry_after_and_another_token_still_gets_in(pki: dict[str, Path]) -> None:
    process, port = _serve(pki, "--rate", "0.5", "--burst", "2")
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        with anyio.fail_after(60):
            await eventually(lambda: _reachable(url, _context(pki)))
            async with httpx2.AsyncClient() as http:
                statuses = []
                for _ in range(4):
                    reply = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
                    statuses.append(reply.status_code)
                assert statuses[-1] == 429 and int(reply.headers["retry-after"]) >= 1
                other = await http.get(url, headers={"Authorization": f"Bearer {TOKEN}-2"})
                assert other.status_code != 429
    finally:
        process.terminate()
        process.wait(15)


async def test_under_mtls_the_flight_log_names_the_client_certificate_that_opened_the_session(mtls: str, pki: dict[str, Path]) -> None:
    with anyio.fail_after(60):
        await eventually(lambda: _reachable(mtls, _context(pki, "client")))
        assert await _echo(mtls, _context(pki, "client")) == "Echo: over tls"
        await eventually(lambda: any((pki["dir"] / "logs").iterdir()))
    certificate = x509.load_pem_x509_certificate(pki["client_cert"].read_bytes())
    fingerprint = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
    geneses = [orjson.loads(path.read_bytes().splitlines()[0]) for path in (pki["dir"] / "logs").iterdir()]
    assert geneses, "no flight log was written for the session"
    for genesis in geneses:
        assert genesis["data"]["principal"] == "ci"  # the token's id, never the token
        assert genesis["data"]["client_certificate"] == {"subject": "CN=client", "sha256": fingerprint}
        assert TOKEN not in orjson.dumps(genesis).decode()


async def test_under_mtls_a_session_answers_only_the_certificate_that_opened_it(mtls: str, pki: dict[str, Path]) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    with anyio.fail_after(60):
        await eventually(lambda: _reachable(mtls, _context(pki, "client")))
        async with httpx2.AsyncClient(verify=_context(pki, "client"), headers=headers) as owner:
            opened = await owner.post(mtls, json=initialize)
            assert opened.status_code == 200
            session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": "2025-11-25"}
            # Same token, another certificate from the same CA: the session is not theirs.
            async with httpx2.AsyncClient(verify=_context(pki, "colleague"), headers=headers) as colleague:
                refused = await colleague.post(mtls, json=ping, headers=session)
            assert refused.status_code == 404
            answered = await owner.post(mtls, json=ping, headers=session)
            assert answered.status_code == 200
            await owner.delete(mtls, headers=session)
