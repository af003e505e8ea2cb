"""HTTP-01 tokens shared between replicas through one Secret.

Only the elected replica orders certificates, but behind one address (a LoadBalancer Service)
the CA's validation requests land on any replica, and Let's Encrypt validates from several
vantage points. So the ordering replica publishes each pending token in the Secret
``pyingress-acme-challenges`` (data key: the token, value: its key authorization), every
replica's Kubernetes source keeps that Secret, and every replica's
:class:`~pyingress.tls.acme.responder.ChallengeResponder` answers from it.

Cheap to import (the Kubernetes client is only imported when a request is made): cluster mode
names the Secret before anything else of ACME is loaded.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from typing import Any

from pyingress.model import ObjectRef
from pyingress.tls.acme.responder import ChallengeResponder

log = logging.getLogger(__name__)

CHALLENGE_SECRET = "pyingress-acme-challenges"
MERGE_PATCH = "application/merge-patch+json"
PROPAGATION_TIMEOUT = 10.0
"""How long to wait for the Secret to come back through this replica's own watch."""
WITHDRAW_TIMEOUT = 5.0
"""A withdrawal also runs while an order is cancelled (shutdown, lost Lease): keep it short."""


def challenge_secret(namespace: str) -> ObjectRef:
    """The Secret the leader publishes HTTP-01 tokens in, in ``namespace``."""
    return ObjectRef("Secret", namespace, CHALLENGE_SECRET)


class PublishError(Exception):
    """A token could not be written to the challenge Secret (the order fails and is retried)."""


class SharedChallenges:
    """:class:`~pyingress.tls.acme.client.TokenPublisher` for cluster mode.

    A token is answered here at once and written to the Secret with a JSON merge patch (one
    key per token, so concurrent orders never overwrite each other); :meth:`publish` returns
    once this replica's own watch has brought the Secret back, since the other replicas'
    watches see the same change at about the same time. Only then is the CA asked to validate.

    Key authorizations are public by design (the CA fetches them over plain HTTP), but they
    are still never logged, and neither are the API's error messages about writing them.
    """

    def __init__(
        self,
        api: Any,
        responder: ChallengeResponder,
        *,
        propagation_timeout: float = PROPAGATION_TIMEOUT,
    ) -> None:
        if responder.shared is None:
            raise ValueError("the responder does not follow a challenge Secret")
        self._api = api
        self._responder = responder
        self.secret: ObjectRef = responder.shared
        self._propagation_timeout = propagation_timeout

    async def prepare(self) -> None:
        """Create the Secret if missing and drop tokens a previous leader left behind."""
        found = await self._read()
        if found is None:
            await self._create({})
            return
        stale = set(found.get("data") or {}) - self._responder.pending()
        if stale:
            await self._patch({token: None for token in stale})
            log.info("ACME: removed %d stale challenge token(s) from %s",
                     len(stale), self.secret)  # fmt: skip

    async def publish(self, token: str, key_authorization: str) -> None:
        self._responder.add(token, key_authorization)
        encoded = base64.b64encode(key_authorization.encode()).decode()
        await self._write({token: encoded})
        if not await self._responder.wait_shared(token, self._propagation_timeout):
            log.warning("ACME: %s did not come back through the watch within %.0fs; "
                        "other replicas may not answer the challenge yet",
                        self.secret, self._propagation_timeout)  # fmt: skip

    async def withdraw(self, token: str) -> None:
        self._responder.remove(token)
        try:
            async with asyncio.timeout(WITHDRAW_TIMEOUT):
                await self._patch({token: None})
        except Exception as exc:  # the next leadership's prepare() removes it
            log.warning("ACME: could not remove a challenge token from %s: %s",
                        self.secret, _describe(exc))  # fmt: skip

    async def _write(self, data: dict[str, str]) -> None:
        from pyingress.sources.kubeclient import KubeError

        try:
            try:
                await self._patch(data)
            except KubeError as exc:
                if exc.status != 404:
                    raise
                await self._create(data)
        except KubeError as exc:
            raise PublishError(
                f"cannot publish the HTTP-01 challenge in Secret {self.secret.namespaced_name}: "
                f"{_describe(exc)}"
            ) from None

    async def _create(self, data: dict[str, str]) -> None:
        """POST the Secret; if another writer created it first, merge into that one."""
        from pyingress.sources.kubeclient import KubeError

        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.secret.name,
                "namespace": self.secret.namespace,
                "labels": {"app.kubernetes.io/managed-by": "pyingress"},
            },
            "data": data,
        }
        try:
            await self._api.request("POST", self._path(), body=body)
        except KubeError as exc:
            if exc.status != 409:
                raise
            if data:
                await self._patch(data)

    async def _patch(self, data: Mapping[str, str | None]) -> None:
        from pyingress.sources.kubeclient import KubeError

        try:
            await self._api.request("PATCH", self._path(self.secret.name),
                                    body={"data": data}, content_type=MERGE_PATCH)  # fmt: skip
        except KubeError as exc:
            if exc.status == 404 and all(value is None for value in data.values()):
                return  # nothing to remove from a Secret that is gone
            raise

    async def _read(self) -> dict[str, Any] | None:
        from pyingress.sources.kubeclient import KubeError

        try:
            found: dict[str, Any] = await self._api.request("GET", self._path(self.secret.name))
            return found
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def _path(self, name: str = "") -> str:
        base = f"/api/v1/namespaces/{self.secret.namespace}/secrets"
        return f"{base}/{name}" if name else base


def _describe(exc: BaseException) -> str:
    """An API failure without the server's message (which could quote the request body)."""
    status = getattr(exc, "status", None)
    reason = str(getattr(exc, "reason", "") or type(exc).__name__)
    return f"HTTP {status} {reason}" if status else reason
