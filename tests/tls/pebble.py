"""Run Let's Encrypt's test CA (Debian ``pebble``) on loopback for ACME tests.

``pebble-challtestsrv`` answers every DNS query with 127.0.0.1, so Pebble's validator fetches
HTTP-01 challenges from ``127.0.0.1:<http_port>``, where the test serves the responder.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import shutil
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.net import free_port, wait_until
from tests.support.processes import ManagedProcess

MISSING = (
    "Debian's pebble is not installed (apt-get install -y pebble): "
    "the ACME end-to-end tests need Let's Encrypt's test CA"
)


def available() -> bool:
    return bool(shutil.which("pebble") and shutil.which("pebble-challtestsrv"))


def _web_certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Pebble:
    """A Pebble CA and its mock DNS, validating HTTP-01 against ``http_port``."""

    def __init__(self, folder: Path, http_port: int) -> None:
        self.folder = folder
        self.http_port = http_port
        self.port = free_port()
        self.management_port = free_port()
        self.dns_port = free_port()
        self.dns_management_port = free_port()
        self.ca_bundle, key_path = _web_certificate(folder)
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(self.ca_bundle),
                "privateKey": str(key_path),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        (folder / "pebble-config.json").write_text(json.dumps(config))
        self.dns = ManagedProcess(
            [
                "pebble-challtestsrv",
                "-dns01",
                f"127.0.0.1:{self.dns_port}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{self.dns_management_port}",
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ]
        )
        self.ca = ManagedProcess(
            [
                "pebble",
                "-config",
                str(folder / "pebble-config.json"),
                "-dnsserver",
                f"127.0.0.1:{self.dns_port}",
            ],
            env={"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_VA_ALWAYS_VALID": "0", "PEBBLE_AUTHZREUSE": "0"},
        )
        try:
            # Pebble resolves every validated name through the mock DNS: a CA without it fails
            # each validation with a DNS error, so both must be up before any test orders.
            self.dns.wait_for_port(self.dns_management_port)
            self.ca.wait_for_port(self.management_port)
            wait_until(self._directory_ready, what="pebble directory")
        except Exception:
            self.stop()
            raise

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _open(self, url: str) -> bytes:
        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            body: bytes = response.read()
            return body

    def _directory_ready(self) -> bool:
        return b"newOrder" in self._open(self.directory_url)

    def root_pem(self) -> bytes:
        """Pebble's issuing root (new at every start): what verifies issued chains."""
        return self._open(f"https://127.0.0.1:{self.management_port}/roots/0")

    def stop(self) -> None:
        self.ca.stop()
        self.dns.stop()
