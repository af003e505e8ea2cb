"""Server-side ``ssl.SSLContext``s built from PEM bytes, with one modern configuration.

The standard library only loads certificates from files, so the PEM is handed over through an
anonymous in-memory file (``memfd``) where the platform has one: private keys never touch a disk.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import Iterator

MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are always modern."""

ALPN = ["http/1.1"]


def base_context() -> ssl.SSLContext:
    """A server context with the project's protocol settings and no certificate yet.

    Every context handed to a listener or chosen by SNI is made here, so a connection switched
    by the SNI callback keeps the same protocol guarantees.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(MODERN_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(ALPN)
    return context


def server_context(chain_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A server context serving ``chain_pem`` (leaf first) with ``key_pem``.

    Raises ``ssl.SSLError`` when OpenSSL refuses the pair.
    """
    context = base_context()
    with _pem_file(chain_pem) as cert_path, _pem_file(key_pem) as key_path:
        context.load_cert_chain(cert_path, key_path)
    return context


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd = memfd_create("pyingress-pem", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="pyingress-", suffix=".pem") as handle:
        os.chmod(handle.name, 0o600)
        handle.write(data)
        handle.flush()
        yield handle.name
