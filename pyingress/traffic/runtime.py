"""What the data plane calls for routes whose policy has a traffic part.

One :class:`TrafficRuntime` per proxy. It wraps the pure pieces (endpoint choice, body limits,
retry rule) and owns the TLS client contexts for ``backend-protocol: HTTPS``, built once per
:class:`~pyingress.traffic.policy.ProxySSL` and reused across requests and table swaps.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from pyingress.traffic.policy import ProxySSL
from pyingress.traffic.upstream import Picker, UpstreamChooser

MAX_CONTEXTS = 256


def client_context(policy: ProxySSL) -> ssl.SSLContext:
    """A TLS client context for a backend, as the ``proxy-ssl-*`` annotations ask.

    Without ``proxy-ssl-verify`` the backend's certificate is not checked, as in ingress-nginx
    (backends commonly present self-signed certificates, e.g. Argo CD's).
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if policy.verify:
        if policy.ca_pem:
            context.load_verify_locations(cadata=policy.ca_pem.decode("ascii", "replace"))
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if policy.cert_pem and policy.key_pem:
        _load_client_certificate(context, policy.cert_pem, policy.key_pem)
    return context


def _load_client_certificate(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` only reads files: write a private temporary one, load, delete."""
    descriptor, path = tempfile.mkstemp(prefix="pyingress-upstream-", suffix=".pem")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


class TrafficRuntime:
    """The traffic state of one proxy: endpoint choice and backend TLS contexts."""

    def __init__(self, fallback: Picker) -> None:
        self.chooser = UpstreamChooser(fallback)
        self._contexts: dict[ProxySSL, ssl.SSLContext] = {}

    def ssl_context(self, policy: ProxySSL) -> ssl.SSLContext:
        context = self._contexts.get(policy)
        if context is None:
            if len(self._contexts) >= MAX_CONTEXTS:
                self._contexts.clear()
            context = self._contexts[policy] = client_context(policy)
        return context

    @staticmethod
    def server_hostname(policy: ProxySSL, host: str) -> str | None:
        """The name sent as SNI and checked against the backend certificate."""
        name = policy.name or host
        if policy.verify or policy.server_name or policy.name:
            return name or None
        return None
