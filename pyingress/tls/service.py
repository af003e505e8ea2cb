"""TLS for ``pyingress serve``: the HTTPS listener, its certificates, and built-in ACME.

``serve`` adds :func:`add_arguments` to its parser and, once the first table is compiled,
calls :meth:`TLSService.start`. From then on the service follows every compile by itself
(it waits on the reconciler), so certificates change when their Secrets do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Protocol

from pyingress.cli import StartupError
from pyingress.model import ObjectRef, Problem, Snapshot
from pyingress.routing.table import RouteTable, TableHolder
from pyingress.tls.acme.client import LETS_ENCRYPT, AcmeClient, http_client
from pyingress.tls.acme.manager import AcmeManager, load_account_key
from pyingress.tls.acme.responder import CHALLENGE_PREFIX, ChallengeResponder
from pyingress.tls.acme.sink import CertificateSink, FolderSink, KubernetesSink
from pyingress.tls.certstore import CertificateStore
from pyingress.tls.filter import install as install_filter
from pyingress.tls.trust import TrustedProxies

log = logging.getLogger(__name__)


class _Store(Protocol):
    version: int

    def subscribe(self, listener: Any) -> None: ...

    def snapshot(self) -> Snapshot: ...


class _Reconciler(Protocol):
    async def wait_compiled(self, version: int) -> None: ...


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The TLS flags (``--default-ssl-certificate`` and the ports belong to ``serve``)."""
    add = parser.add_argument
    add("--trusted-proxies", type=_trusted, default=TrustedProxies(), metavar="CIDR,...",
        help="believe X-Forwarded-For/-Proto and CF-Connecting-IP only from these peers "
             "(CIDRs, addresses, or the preset 'cloudflare')")  # fmt: skip
    add("--acme-directory", default=LETS_ENCRYPT, metavar="URL",
        help="ACME directory for Ingresses annotated pyingress.io/acme (default: Let's "
             "Encrypt production; staging: "
             "https://acme-staging-v02.api.letsencrypt.org/directory)")  # fmt: skip
    add("--acme-email", metavar="EMAIL", help="contact address of the ACME account")
    add("--acme-ca-bundle", metavar="PEM", help="trust only this CA for the ACME directory")
    add("--acme-storage", metavar="DIR",
        help="folder for the ACME account key and, in manifests mode, the issued "
             "certificates as Secret manifests")  # fmt: skip


def _trusted(text: str) -> TrustedProxies:
    try:
        return TrustedProxies.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class TLSService:
    """Owns the certificate store, the HTTPS listener and the ACME manager of one process."""

    def __init__(self, args: argparse.Namespace, sink: CertificateSink | None = None) -> None:
        self.args = args
        default = getattr(args, "default_ssl_certificate", None)
        default_ref = None
        if default:
            namespace, _, name = str(default).partition("/")
            default_ref = ObjectRef("Secret", namespace, name)
        self.certificates = CertificateStore(default_ref)
        self.trusted: TrustedProxies = getattr(args, "trusted_proxies", None) or TrustedProxies()
        self.responder = ChallengeResponder()
        self.acme: AcmeManager | None = None
        self._sink = sink
        self._tasks: list[asyncio.Task[None]] = []
        self.problems: list[Problem] = []
        install_filter(args.https_port)

    async def start(
        self,
        proxy: Any,
        store: _Store,
        holder: TableHolder,
        reconciler: _Reconciler,
        reuse_port: bool = False,
    ) -> None:
        """Load the certificates, listen on ``--https-port``, and follow every compile.

        ``reuse_port`` lets ``--workers`` processes share the HTTPS port.
        """
        self.refresh(store.snapshot(), holder.table)
        proxy.mount(CHALLENGE_PREFIX, self.responder)
        try:
            await proxy.listen(self.args.bind, self.args.https_port,
                               ssl=self.certificates.listening_context, scheme="https",
                               reuse_port=reuse_port)  # fmt: skip
        except OSError as exc:
            raise StartupError(
                f"--https-port: cannot listen on {self.args.bind}:{self.args.https_port}: "
                f"{exc.strerror or exc}"
            ) from None
        await self._start_acme()
        if self.acme is not None:
            self.acme.update(store.snapshot(), holder.table)
        changed = asyncio.Event()
        store.subscribe(changed.set)
        self._tasks.append(asyncio.create_task(
            self._follow(store, holder, reconciler, changed), name="tls-follow"))  # fmt: skip

    def refresh(self, snapshot: Snapshot, table: RouteTable) -> list[Problem]:
        """Swap in the certificates for ``table``; returns (and keeps) what is wrong."""
        problems = self.certificates.update(snapshot, table)
        if self.acme is not None:
            self.acme.update(snapshot, table)
            problems += self.acme.problems()
        for problem in set(problems) - set(self.problems):
            log.warning("tls problem object=%s reason=%s detail=%r",
                        problem.ref, problem.reason, problem.message)  # fmt: skip
        self.problems = problems
        return problems

    async def _follow(
        self, store: _Store, holder: TableHolder, reconciler: _Reconciler, changed: asyncio.Event
    ) -> None:
        while True:
            await changed.wait()
            changed.clear()
            version = store.version
            await reconciler.wait_compiled(version)
            self.refresh(store.snapshot(), holder.table)

    async def _start_acme(self) -> None:
        sink = self._sink or self._default_sink()
        if sink is None:
            return
        key = await load_account_key(sink)
        client = AcmeClient(self.args.acme_directory, key, email=self.args.acme_email,
                            http=http_client(self.args.acme_ca_bundle))  # fmt: skip
        self.acme = AcmeManager(client, sink, self.responder)
        self._tasks.append(asyncio.create_task(self.acme.run(), name="acme"))

    def _default_sink(self) -> CertificateSink | None:
        storage = getattr(self.args, "acme_storage", None)
        if storage:
            return FolderSink(Path(storage))
        return None

    @staticmethod
    def kubernetes_sink(core_v1: Any, namespace: str) -> CertificateSink:
        """The cluster-mode sink; ``serve`` passes it in as ``sink`` when it has an API client."""
        return KubernetesSink(core_v1, namespace)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
