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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pyingress.cli import StartupError
from pyingress.model import ObjectRef, Problem, Snapshot
from pyingress.routing.table import RouteTable, TableHolder
from pyingress.tls.acme import LETS_ENCRYPT
from pyingress.tls.acme.challenges import SharedChallenges
from pyingress.tls.acme.responder import CHALLENGE_PREFIX, ChallengeResponder
from pyingress.tls.acme.sink import CertificateSink, FolderSink, KubernetesSink
from pyingress.tls.certstore import CertificateStore
from pyingress.tls.filter import install as install_filter
from pyingress.tls.trust import TrustedProxies
from pyingress.traffic.passthrough import listen_https

if TYPE_CHECKING:
    from pyingress.tls.acme.client import TokenPublisher
    from pyingress.tls.acme.manager import AcmeManager

log = logging.getLogger(__name__)


class _Store(Protocol):
    version: int

    def subscribe(self, listener: Any) -> None: ...

    def snapshot(self) -> Snapshot: ...


class _Reconciler(Protocol):
    async def wait_compiled(self, version: int) -> None: ...


class Leadership(Protocol):
    """The replica election (:class:`~pyingress.status.leader.LeaderElector` fits)."""

    @property
    def is_leader(self) -> bool: ...

    def subscribe(self, listener: Callable[[bool], None]) -> None: ...


class ClusterLink(Protocol):
    """What cluster mode lends TLS: its API client, its election, and the Secret its source
    keeps for HTTP-01 tokens.

    :class:`~pyingress.sources.cluster.ClusterSource` provides them once it runs.
    """

    @property
    def api(self) -> Any: ...

    @property
    def leadership(self) -> Leadership | None: ...

    @property
    def challenge_secret(self) -> ObjectRef: ...


ProblemsObserver = Callable[[list[Problem]], None]


class ProblemFeed:
    """Compile problems and TLS problems, handed together to one observer.

    The Events recorder takes whole lists (a problem missing from the latest list is solved),
    so the two producers must not take turns replacing each other's problems.
    """

    def __init__(self, observer: ProblemsObserver) -> None:
        self._observer = observer
        self._compiled: list[Problem] = []
        self._tls: list[Problem] = []

    def compiled(self, problems: list[Problem]) -> None:
        self._compiled = list(problems)
        self._observer([*self._compiled, *self._tls])

    def tls(self, problems: list[Problem]) -> None:
        self._tls = list(problems)
        self._observer([*self._compiled, *self._tls])


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

    def __init__(
        self,
        args: argparse.Namespace,
        sink: CertificateSink | None = None,
        *,
        cluster: ClusterLink | None = None,
        report: ProblemsObserver | None = None,
    ) -> None:
        self.args = args
        default = getattr(args, "default_ssl_certificate", None)
        default_ref = None
        if default:
            namespace, _, name = str(default).partition("/")
            default_ref = ObjectRef("Secret", namespace, name)
        self.certificates = CertificateStore(default_ref)
        self.trusted: TrustedProxies = getattr(args, "trusted_proxies", None) or TrustedProxies()
        # In a cluster every replica answers the tokens the leader publishes in this Secret.
        self.responder = ChallengeResponder(cluster.challenge_secret if cluster else None)
        self.acme: AcmeManager | None = None
        self._sink = sink
        self._cluster = cluster
        self._report = report
        self._tasks: list[asyncio.Task[None]] = []
        self._acme_task: asyncio.Task[None] | None = None
        self._current: tuple[Snapshot, RouteTable] = (Snapshot(), RouteTable())
        self._cert_problems: list[Problem] = []
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
            if getattr(self.args, "enable_ssl_passthrough", False):
                listen_https(proxy, self.args.bind, self.args.https_port,
                             self.certificates.listening_context, reuse_port)  # fmt: skip
            else:
                await proxy.listen(self.args.bind, self.args.https_port,
                                   ssl=self.certificates.listening_context, scheme="https",
                                   reuse_port=reuse_port)  # fmt: skip
        except OSError as exc:
            raise StartupError(
                f"--https-port: cannot listen on {self.args.bind}:{self.args.https_port}: "
                f"{exc.strerror or exc}"
            ) from None
        self._start_acme()
        changed = asyncio.Event()
        store.subscribe(changed.set)
        self._tasks.append(asyncio.create_task(
            self._follow(store, holder, reconciler, changed), name="tls-follow"))  # fmt: skip

    def refresh(self, snapshot: Snapshot, table: RouteTable) -> list[Problem]:
        """Swap in the certificates for ``table``; returns (and keeps) what is wrong."""
        self._current = (snapshot, table)
        self.responder.update(snapshot)
        if self.acme is not None:
            self.acme.update(snapshot, table)
        self._cert_problems = self.certificates.update(snapshot, table)
        return self._publish_problems()

    def _publish_problems(self) -> list[Problem]:
        """Log what is newly wrong and hand the whole list to the problem observer."""
        problems = list(self._cert_problems)
        if self.acme is not None:
            problems += self.acme.problems()
        for problem in set(problems) - set(self.problems):
            log.warning("tls problem object=%s reason=%s detail=%r",
                        problem.ref, problem.reason, problem.message)  # fmt: skip
        changed = problems != self.problems
        self.problems = problems
        if changed and self._report is not None:
            self._report(problems)
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

    def _start_acme(self) -> None:
        """Run ACME here: always in manifests mode, only while elected in cluster mode.

        Replicas share the certificates through the API (the leader writes the Secret, every
        replica's source sees it), so exactly one of them may talk to the CA.
        """
        cluster = self._cluster
        if cluster is None:
            sink = self._sink or self._default_sink()
            if sink is not None:
                self._acme_task = asyncio.create_task(
                    self._run_acme(sink, self.responder), name="acme"
                )
            return
        leadership = cluster.leadership
        if leadership is None:
            log.warning("ACME: no leader election (--no-update-status), so no replica orders "
                        "certificates for Ingresses annotated pyingress.io/acme")  # fmt: skip
            return
        from pyingress.sources.clustersettings import pod_namespace

        sink = self._sink or KubernetesSink(cluster.api, pod_namespace())
        publisher = SharedChallenges(cluster.api, self.responder)
        leadership.subscribe(lambda leader: self._lead(leader, sink, publisher))
        self._lead(leadership.is_leader, sink, publisher)

    def _acme_problems_changed(self) -> None:
        self._publish_problems()

    def _lead(self, leader: bool, sink: CertificateSink, publisher: SharedChallenges) -> None:
        running = self._acme_task is not None and not self._acme_task.done()
        if leader and not running:
            log.info("ACME: this replica is the leader; it orders the certificates")
            self._acme_task = asyncio.create_task(self._run_acme(sink, publisher), name="acme")
        elif not leader and running and self._acme_task is not None:
            log.info("ACME: leadership lost; orders stop here")
            self._acme_task.cancel()

    async def _run_acme(self, sink: CertificateSink, publisher: TokenPublisher) -> None:
        from pyingress.tls.acme.client import AcmeClient, http_client
        from pyingress.tls.acme.manager import AcmeManager, load_account_key

        try:
            if isinstance(publisher, SharedChallenges):
                await self._prepare_challenges(publisher)
            key = await load_account_key(sink)
            client = AcmeClient(self.args.acme_directory, key, email=self.args.acme_email,
                                http=http_client(self.args.acme_ca_bundle))  # fmt: skip
            manager = AcmeManager(client, sink, publisher)
            manager.on_problems = self._acme_problems_changed
            self.acme = manager
            manager.update(*self._current)
            self._publish_problems()
            await manager.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("ACME stopped")
        finally:
            self.acme = None
            self._publish_problems()

    @staticmethod
    async def _prepare_challenges(publisher: SharedChallenges) -> None:
        """A failure here is not fatal: publishing retries the writes with each order."""
        from pyingress.sources.kubeclient import KubeError

        try:
            await publisher.prepare()
        except KubeError as exc:
            log.warning("ACME: cannot prepare the challenge Secret %s: HTTP %s %s",
                        publisher.secret, exc.status, exc.reason)  # fmt: skip

    def _default_sink(self) -> CertificateSink | None:
        storage = getattr(self.args, "acme_storage", None)
        if storage:
            return FolderSink(Path(storage))
        return None

    async def close(self) -> None:
        if self._acme_task is not None:
            self._tasks.append(self._acme_task)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
