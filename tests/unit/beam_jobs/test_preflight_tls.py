"""A broker certificate the client refuses is named before submission: kafka-python itself only
says it could not bootstrap. Against an in-process TLS server with a certificate made here."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

from beam_jobs.pipeline import _tls_hint, _tls_refusal
from tests.tls import TlsFiles, make_ca_and_broker_cert


@contextlib.contextmanager
def tls_server(files: TlsFiles) -> Iterator[str]:
    """A TLS listener on 127.0.0.1 (its address) presenting ``files.certificate``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.certificate, files.key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)  # to see ``stop`` soon
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except OSError:
                pass  # no client yet, or it refused the certificate

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_certificate_from_an_untrusted_ca_is_named(tmp_path: Path) -> None:
    with tls_server(make_ca_and_broker_cert(tmp_path)) as address:
        refusal = _tls_refusal(address, {"security_protocol": "SASL_SSL"})  # system CAs only
    assert refusal is not None and "unable to get local issuer certificate" in str(refusal)
    assert "set ssl_cafile in --kafka_client_config" in _tls_hint(refusal)


def test_an_expired_certificate_is_named(tmp_path: Path) -> None:
    files = make_ca_and_broker_cert(tmp_path, expired=True)
    with tls_server(files) as address:
        refusal = _tls_refusal(address, {"security_protocol": "SSL", "ssl_cafile": str(files.ca)})
    assert refusal is not None and refusal.verify_message == "certificate has expired"
    assert "renew the broker's certificate" in _tls_hint(refusal)


def test_a_trusted_certificate_or_no_tls_is_no_refusal(tmp_path: Path) -> None:
    files = make_ca_and_broker_cert(tmp_path)
    with tls_server(files) as address:
        trusted = {"security_protocol": "SSL", "ssl_cafile": str(files.ca)}
        assert _tls_refusal(address, trusted) is None
        assert _tls_refusal(address, {"security_protocol": "SASL_PLAINTEXT"}) is None
    assert _tls_refusal("127.0.0.1:1", {"security_protocol": "SSL"}) is None  # nothing listens
