"""Fixtures for the lifecycle tests: a service that accepts one token, and certificates."""

from __future__ import annotations

import datetime
import http.server
import threading
from collections.abc import Iterator

import pytest


class TokenServer:
    """An HTTP service on 127.0.0.1 that answers 200 to `Authorization: Bearer <token>` for
    the one token it accepts, and 401 otherwise, quoting what it was sent (so a check's
    output holds the value, which credd must mask)."""

    def __init__(self) -> None:
        self.accepted = ""
        self.seen: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                sent = self.headers.get("Authorization", "").removeprefix("Bearer ")
                server.seen.append(sent)
                ok = bool(server.accepted) and sent == server.accepted
                body = b"welcome\n" if ok else f"bad token: {sent}\n".encode()
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/user"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


def certificate(common_name: str, not_after: datetime.datetime, issuer: tuple | None = None
                ) -> tuple[str, object]:
    """A PEM certificate valid until `not_after`, self-signed or signed by `issuer`
    ((name, key) of a CA); returns (pem, its key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name, issuer_key = issuer if issuer is not None else (subject, key)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_after - datetime.timedelta(days=400)).not_valid_after(not_after)
            .sign(issuer_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode(), (subject, key)


def at(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, 12, 0, tzinfo=datetime.UTC)
