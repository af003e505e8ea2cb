"""ACME pieces without a CA: what is ordered, the account key, the folder sink."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pyingress.model import ObjectRef, Snapshot
from pyingress.tls.acme.jws import AccountKey
from pyingress.tls.acme.manager import acme_requests
from pyingress.tls.acme.sink import FolderSink
from pyingress.tls.certs import secret_material
from tests.tls.conftest import table_for


def _ingress(name: str, annotations: dict[str, str], tls: list[dict[str, object]]) -> dict:
    return {
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"tls": tls},
    }


def test_only_annotated_served_ingresses_without_cert_manager_are_ordered() -> None:
    acme = {"pyingress.io/acme": "true"}
    snapshot = Snapshot.of(
        [
            _ingress("a", acme, [{"hosts": ["B.test", "a.test"], "secretName": "a-tls"}]),
            _ingress("plain", {}, [{"hosts": ["p.test"], "secretName": "p-tls"}]),
            _ingress(
                "cm",
                {**acme, "cert-manager.io/cluster-issuer": "le"},
                [{"hosts": ["c.test"], "secretName": "c-tls"}],
            ),
            _ingress(
                "wild",
                {"kubernetes.io/tls-acme": "true"},
                [{"hosts": ["*.w.test"], "secretName": "w-tls"}],
            ),
            _ingress("unserved", acme, [{"hosts": ["u.test"], "secretName": "u-tls"}]),
        ]
    )
    table = table_for({})
    for name in ("a", "plain", "cm", "wild"):
        table.tls_hosts.update(
            table_for({f"{name}.x": None}, ObjectRef("Ingress", "default", name)).tls_hosts
        )
    requests, problems = acme_requests(snapshot, table)
    assert [(r.ingress.name, r.secret.name, r.hosts) for r in requests] == [
        ("a", "a-tls", ("a.test", "b.test"))
    ]
    assert [(p.ref.name, p.reason) for p in problems] == [("wild", "AcmeNotPossible")]


def test_account_key_signs_verifiable_es256_requests() -> None:
    key = AccountKey.generate()
    again = AccountKey.from_pem(key.to_pem())
    assert again.thumbprint == key.thumbprint
    body = key.sign("https://ca.test/new-order", "nonce-1", {"a": 1}, kid="https://ca.test/acct/1")

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    protected = json.loads(decode(body["protected"]))
    assert protected == {"alg": "ES256", "nonce": "nonce-1", "url": "https://ca.test/new-order",
                         "kid": "https://ca.test/acct/1"}  # fmt: skip
    raw = decode(body["signature"])
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = ec.EllipticCurvePublicNumbers(
        int.from_bytes(decode(key.jwk["x"]), "big"),
        int.from_bytes(decode(key.jwk["y"]), "big"),
        ec.SECP256R1(),
    ).public_key()
    public.verify(der, f"{body['protected']}.{body['payload']}".encode(), ec.ECDSA(hashes.SHA256()))
    assert key.sign("u", "n", None, None)["payload"] == ""  # POST-as-GET


async def test_folder_sink_writes_private_secret_manifests(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path / "acme")
    assert await sink.load_account_key() is None
    await sink.save_account_key(b"KEY")
    assert await sink.load_account_key() == b"KEY"
    await sink.store(ObjectRef("Secret", "default", "a-tls"), b"CHAIN", b"PRIV", ["a.test"])
    await sink.store(ObjectRef("Secret", "other", "a-tls"), b"CHAIN2", b"PRIV2", ["a.test"])
    first = sink.path_for(ObjectRef("Secret", "default", "a-tls"))
    second = sink.path_for(ObjectRef("Secret", "other", "a-tls"))
    assert first.name == "a-tls.yaml" and second.name == "other_a-tls.yaml"
    for path in (first, second, tmp_path / "acme" / "acme-account.key"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    manifest = yaml.safe_load(second.read_text())
    assert manifest["metadata"]["namespace"] == "other"
    assert secret_material(manifest) == (b"CHAIN2", b"PRIV2")
