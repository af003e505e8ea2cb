"""Where issued certificates and the ACME account key are kept.

In a cluster that is the API (a ``kubernetes.io/tls`` Secret, the same shape cert-manager
writes, so everything that reads Secrets keeps working). In manifests mode it is a folder of
Secret manifests, which the manifests source can read like any other.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml

from pyingress.model import ObjectRef
from pyingress.tls.certs import TLS_SECRET_TYPE

ACCOUNT_KEY_FILE = "acme-account.key"
ACCOUNT_SECRET = "pyingress-acme-account"
HOSTS_ANNOTATION = "pyingress.io/acme-hosts"


class CertificateSink(Protocol):
    """Storage for the ACME account key and the certificates it obtains."""

    async def load_account_key(self) -> bytes | None: ...

    async def save_account_key(self, pem: bytes) -> None: ...

    async def store(
        self, secret: ObjectRef, chain_pem: bytes, key_pem: bytes, hosts: Sequence[str]
    ) -> None: ...


def tls_secret_manifest(
    secret: ObjectRef, chain_pem: bytes, key_pem: bytes, hosts: Sequence[str]
) -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret holding the full chain (leaf first) and its key."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": TLS_SECRET_TYPE,
        "metadata": {
            "name": secret.name,
            "namespace": secret.namespace,
            "annotations": {HOSTS_ANNOTATION: ",".join(hosts)},
            "labels": {"app.kubernetes.io/managed-by": "pyingress"},
        },
        "data": {
            "tls.crt": base64.b64encode(chain_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }


class FolderSink:
    """Secret manifests in a folder: ``<secretName>.yaml`` (``<namespace>_<secretName>.yaml``
    outside the ``default`` namespace, so two namespaces never overwrite each other).

    Files are written whole and renamed into place, readable by the owner only: a watcher never
    sees half a key, and nobody else sees it at all.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def path_for(self, secret: ObjectRef) -> Path:
        name = secret.name if secret.namespace == "default" else f"{secret.namespace}_{secret.name}"
        return self.folder / f"{name}.yaml"

    async def load_account_key(self) -> bytes | None:
        path = self.folder / ACCOUNT_KEY_FILE
        return path.read_bytes() if path.exists() else None

    async def save_account_key(self, pem: bytes) -> None:
        self._write(self.folder / ACCOUNT_KEY_FILE, pem)

    async def store(
        self, secret: ObjectRef, chain_pem: bytes, key_pem: bytes, hosts: Sequence[str]
    ) -> None:
        manifest = tls_secret_manifest(secret, chain_pem, key_pem, hosts)
        self._write(self.path_for(secret), yaml.safe_dump(manifest, sort_keys=False).encode())

    def _write(self, path: Path, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)


class KubernetesSink:
    """Secrets through the API (``KubeApi``: plain Kubernetes JSON, as the sources use).

    The account key lives in the Secret ``pyingress-acme-account`` of the controller's own
    namespace, so every replica (and a restarted pod) uses the same account. It is only ever
    created, never replaced: of two replicas racing to create it, the first one's key stays.
    """

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    async def load_account_key(self) -> bytes | None:
        secret = await self._read(ObjectRef("Secret", self._namespace, ACCOUNT_SECRET))
        data = (secret or {}).get("data") or {}
        return base64.b64decode(data["key.pem"]) if "key.pem" in data else None

    async def save_account_key(self, pem: bytes) -> None:
        from pyingress.sources.kubeclient import KubeError

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": ACCOUNT_SECRET, "namespace": self._namespace},
            "data": {"key.pem": base64.b64encode(pem).decode()},
        }
        try:
            await self._api.request("POST", self._path(self._namespace), body=body)
        except KubeError as exc:
            if exc.status != 409:
                raise

    async def store(
        self, secret: ObjectRef, chain_pem: bytes, key_pem: bytes, hosts: Sequence[str]
    ) -> None:
        from pyingress.sources.kubeclient import KubeError

        body = tls_secret_manifest(secret, chain_pem, key_pem, hosts)
        for _ in range(3):  # a concurrent writer costs a retry, not the certificate
            existing = await self._read(secret)
            try:
                if existing is None:
                    await self._api.request("POST", self._path(secret.namespace), body=body)
                    return
                body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
                await self._api.request("PUT", self._path(secret.namespace, secret.name), body=body)
                return
            except KubeError as exc:
                if exc.status != 409:
                    raise
        raise RuntimeError(f"Secret {secret.namespaced_name} kept changing while being written")

    @staticmethod
    def _path(namespace: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{namespace}/secrets"
        return f"{base}/{name}" if name else base

    async def _read(self, ref: ObjectRef) -> dict[str, Any] | None:
        from pyingress.sources.kubeclient import KubeError

        try:
            found: dict[str, Any] = await self._api.request(
                "GET", self._path(ref.namespace, ref.name)
            )
            return found
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
