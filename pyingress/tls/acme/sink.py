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
    """Secrets through the API with ``kubernetes_asyncio``'s ``CoreV1Api``.

    The account key lives in the Secret ``pyingress-acme-account`` of the controller's own
    namespace, so every replica (and a restarted pod) uses the same account.
    """

    def __init__(self, core_v1: Any, namespace: str) -> None:
        self._api = core_v1
        self._namespace = namespace

    async def load_account_key(self) -> bytes | None:
        secret = await self._read(ObjectRef("Secret", self._namespace, ACCOUNT_SECRET))
        if secret is None or not secret.data or "key.pem" not in secret.data:
            return None
        return base64.b64decode(secret.data["key.pem"])

    async def save_account_key(self, pem: bytes) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": ACCOUNT_SECRET, "namespace": self._namespace},
            "data": {"key.pem": base64.b64encode(pem).decode()},
        }
        await self._upsert(ObjectRef("Secret", self._namespace, ACCOUNT_SECRET), body)

    async def store(
        self, secret: ObjectRef, chain_pem: bytes, key_pem: bytes, hosts: Sequence[str]
    ) -> None:
        await self._upsert(secret, tls_secret_manifest(secret, chain_pem, key_pem, hosts))

    async def _read(self, ref: ObjectRef) -> Any:
        from kubernetes_asyncio.client.exceptions import ApiException

        try:
            return await self._api.read_namespaced_secret(ref.name, ref.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def _upsert(self, ref: ObjectRef, body: dict[str, Any]) -> None:
        from kubernetes_asyncio.client.exceptions import ApiException

        existing = await self._read(ref)
        if existing is None:
            try:
                await self._api.create_namespaced_secret(ref.namespace, body)
                return
            except ApiException as exc:
                if exc.status != 409:
                    raise
                existing = await self._read(ref)
        body["metadata"]["resourceVersion"] = existing.metadata.resource_version
        await self._api.replace_namespaced_secret(ref.name, ref.namespace, body)
