"""A thin JSON layer over ``kubernetes_asyncio``'s transport.

The controller only ever wants plain Kubernetes JSON (camelCase dicts, as in a manifest), so it
bypasses the generated models: every call goes through :meth:`ApiClient.call_api` with
``_preload_content=False`` and parses the body itself. That keeps authentication, TLS and token
refresh from the library, and gives one place that turns failures into :class:`KubeError`.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

JSON = dict[str, Any]

REQUEST_TIMEOUT = 30.0
"""Seconds for one ordinary (non-watch) request, so a hung API server cannot stall a loop."""


class KubeError(Exception):
    """A failed API call: ``status`` 0 means the server could not be reached at all."""

    def __init__(self, status: int, reason: str = "", message: str = "", retry_after: float = 0.0):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


async def new_api_client(kubeconfig: str | None = None, in_cluster: bool = False) -> k8s.ApiClient:
    """An API client from a kubeconfig file or the pod's service account.

    Raises ``ValueError`` with a one-line reason when the configuration cannot be loaded.
    """
    configuration = k8s.Configuration()
    path = os.path.expanduser(kubeconfig or "~/.kube/config")
    if not in_cluster and not os.path.isfile(path):
        raise ValueError(f"cannot load Kubernetes configuration from {path}: no such file")
    try:
        if in_cluster:
            k8s_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        else:
            await k8s_config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
    except Exception as exc:  # the loaders raise a variety of types for the same problem
        where = "the in-cluster service account" if in_cluster else kubeconfig or "~/.kube/config"
        raise ValueError(f"cannot load Kubernetes configuration from {where}: {exc}") from exc
    # Five long-lived watches plus status, Event and Lease writes share one pool.
    configuration.connection_pool_maxsize = 64
    return k8s.ApiClient(configuration)


class KubeApi:
    """JSON requests and watch streams against one API server."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client

    async def close(self) -> None:
        await self.api_client.close()

    async def _send(
        self,
        method: str,
        path: str,
        query: Mapping[str, str] | None,
        body: Any,
        content_type: str,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self.api_client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise KubeError(0, "Unreachable", f"{method} {path}: {detail}") from exc
        if response.status >= 400:
            try:
                raise await _error_of(response)
            finally:
                response.release()
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float = REQUEST_TIMEOUT,
    ) -> JSON:
        """Send one request and return the parsed JSON body; raises :class:`KubeError`."""
        response = await self._send(
            method, path, query, body, content_type, aiohttp.ClientTimeout(total=timeout)
        )
        try:
            data = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, "Unreachable", f"{method} {path}: {exc}") from exc
        finally:
            response.release()
        parsed = json.loads(data) if data else {}
        if not isinstance(parsed, dict):
            raise KubeError(response.status, "BadResponse", f"{method} {path}: not a JSON object")
        return parsed

    async def watch(
        self, path: str, query: Mapping[str, str], idle_timeout: float
    ) -> AsyncIterator[JSON]:
        """Yield the events of one watch request until the server ends it.

        ``idle_timeout`` bounds the silence between two reads, so a connection that died
        without closing is noticed; the server-side ``timeoutSeconds`` should be shorter.
        """
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=REQUEST_TIMEOUT, sock_read=idle_timeout
        )
        response = await self._send("GET", path, query, None, "application/json", timeout)
        buffer = b""
        try:
            async for chunk in response.content.iter_any():
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if buffer.strip():
                yield json.loads(buffer)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise KubeError(0, "Unreachable", f"watch {path}: {exc or type(exc).__name__}") from exc
        finally:
            response.release()


async def _error_of(response: aiohttp.ClientResponse) -> KubeError:
    """Turn an error response (a ``Status`` body, usually) into a :class:`KubeError`."""
    reason, message = response.reason or "", ""
    try:
        status = json.loads(await response.read())
        reason = str(status.get("reason") or reason)
        message = str(status.get("message") or "")
    except (ValueError, AttributeError, aiohttp.ClientError):
        pass
    retry_after = 0.0
    header = response.headers.get("Retry-After", "")
    if header.isdigit():
        retry_after = float(header)
    return KubeError(response.status, reason, message, retry_after)


class Backoff:
    """Capped exponential back-off with jitter (0.2 s doubling to 10 s by default).

    Jitter keeps many replicas from hammering a recovering API server in step.
    """

    def __init__(self, initial: float = 0.2, cap: float = 10.0) -> None:
        self.initial = initial
        self.cap = cap
        self._next = initial

    def reset(self) -> None:
        self._next = self.initial

    def next_delay(self, at_least: float = 0.0) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        jittered = delay / 2 + random.uniform(0, delay / 2)
        return max(jittered, min(at_least, self.cap))
