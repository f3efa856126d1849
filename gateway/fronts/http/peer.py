"""Who is on the other end of an HTTP request: the bearer token's id and, under mTLS, the client
certificate.

uvicorn does not pass the TLS peer to the application, so `airlock serve` runs it with
`with_client_certificate(protocol)`: a subclass of uvicorn's HTTP protocol that reads the peer
certificate once per connection, after the handshake, and hands it to every request of that
connection in the ASGI TLS extension (`scope["extensions"]["tls"]["client_cert_chain"]`, the
PEM of the verified leaf certificate). `client_certificate(scope)` turns that into a
`ClientCertificate`: its subject (RFC 4514) and the SHA-256 fingerprint of its DER bytes,
which the flight log's genesis records (never the private key, never the bearer token).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    subject: str  # RFC 4514, e.g. "CN=alice,O=Example"
    sha256: str  # hex fingerprint of the DER certificate

    def describe(self) -> dict[str, str]:
        return {"subject": self.subject, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who opened a session: the bearer token's id (or `unauthenticated-loopback`) and, under
    mTLS, the client certificate. A session answers only requests from the same principal."""

    token_id: str
    certificate: ClientCertificate | None = None

    def describe(self) -> dict[str, Any]:
        """What the flight log's genesis and the gateway's own log say about it."""
        described: dict[str, Any] = {"principal": self.token_id}
        if self.certificate is not None:
            described["client_certificate"] = self.certificate.describe()
        return described


def certificate_from_der(der: bytes) -> ClientCertificate:
    """Raises ValueError when `der` is not an X.509 certificate."""
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return ClientCertificate(subject, hashlib.sha256(der).hexdigest())


def client_certificate(scope: Scope) -> ClientCertificate | None:
    """The verified client certificate of the request's connection, or None (no TLS, no
    client certificate, or a server not run with `with_client_certificate`)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    certificate = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    return certificate_from_der(certificate.public_bytes(Encoding.DER))


def with_client_certificate(protocol: type[Any]) -> type[Any]:
    """A subclass of uvicorn's HTTP `protocol` that puts the connection's verified client
    certificate into each request's scope (ASGI TLS extension)."""

    class ClientCertificateProtocol(protocol):  # type: ignore[misc]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            ssl_object = transport.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if not der:
                return
            pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM).decode("ascii")
            app: App = getattr(self, "app")  # noqa: B009 (set by uvicorn's protocol)

            async def with_certificate(scope: Scope, receive: Any, send: Any) -> None:
                extensions = scope.setdefault("extensions", {})
                extensions["tls"] = {**(extensions.get("tls") or {}), "client_cert_chain": [pem]}
                await app(scope, receive, send)

            self.app = with_certificate

    ClientCertificateProtocol.__name__ = f"ClientCertificate{protocol.__name__}"
    return ClientCertificateProtocol
