"""Decides which certificates to order and when, and keeps the CA's rate limits in mind.

One order per host set at a time; a failure waits with exponential backoff and jitter (or the
CA's ``Retry-After`` if longer) before the next try; a certificate is renewed once a third of
its lifetime remains, whatever that lifetime is.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from pyingress.model import ObjectRef, Problem, Snapshot
from pyingress.routing.table import RouteTable
from pyingress.tls.acme.client import AcmeClient, AcmeError, TokenPublisher
from pyingress.tls.acme.jws import AccountKey
from pyingress.tls.acme.requests import CertificateRequest, acme_requests
from pyingress.tls.acme.sink import CertificateSink
from pyingress.tls.certs import CertificateError, dns_names, secret_material

log = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]
RENEW_REMAINING = 1 / 3
"""Renew when this fraction of the certificate's lifetime remains."""


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class _Held:
    names: frozenset[str]
    not_before: datetime.datetime
    not_after: datetime.datetime

    def renew_at(self) -> datetime.datetime:
        return self.not_after - (self.not_after - self.not_before) * RENEW_REMAINING


async def load_account_key(sink: CertificateSink) -> AccountKey:
    """The stored account key, or a new one (EC P-256) saved for next time."""
    pem = await sink.load_account_key()
    if pem is not None:
        return AccountKey.from_pem(pem)
    key = AccountKey.generate()
    await sink.save_account_key(key.to_pem())
    # Another replica may have saved its key first; the stored one is the account's.
    stored = await sink.load_account_key()
    return AccountKey.from_pem(stored) if stored is not None else key


class AcmeManager:
    """Keeps every requested certificate issued and fresh; run :meth:`run` as a task."""

    def __init__(
        self,
        client: AcmeClient,
        sink: CertificateSink,
        publisher: TokenPublisher,
        *,
        clock: Clock = utc_now,
        retry_base: float = 60.0,
        retry_max: float = 6 * 3600.0,
        check_interval: float = 3600.0,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._sink = sink
        self._publisher = publisher
        self._clock = clock
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._check_interval = check_interval
        self._jitter = jitter
        self._requests: list[CertificateRequest] = []
        self._request_problems: list[Problem] = []
        self._snapshot = Snapshot()
        self._held: dict[ObjectRef, _Held] = {}
        self._failures: dict[tuple[str, ...], int] = {}
        self._not_before: dict[tuple[str, ...], float] = {}
        self._errors: dict[ObjectRef, Problem] = {}
        self._in_flight: dict[tuple[str, ...], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.issued = 0
        self.on_issued: Callable[[CertificateRequest], None] | None = None
        self.on_problems: Callable[[], None] | None = None
        """Called when :meth:`problems` changed outside :meth:`update` (an order failed or
        recovered), so the failure reaches Events without waiting for the next compile."""

    def update(self, snapshot: Snapshot, table: RouteTable) -> list[Problem]:
        """Take the current objects; returns problems with the ACME annotations."""
        self._requests, self._request_problems = acme_requests(snapshot, table)
        self._snapshot = snapshot
        self._wake.set()
        return list(self._request_problems)

    @property
    def in_flight(self) -> set[tuple[str, ...]]:
        """The host sets with an order running now."""
        return set(self._in_flight)

    @property
    def idle(self) -> bool:
        """Whether the manager has looked at the latest :meth:`update` and is waiting."""
        return not self._wake.is_set()

    def problems(self) -> list[Problem]:
        """Configuration problems plus the last failure of each order still failing."""
        return [*self._request_problems, *self._errors.values()]

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                self._start_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._next_check())
        finally:
            for task in self._in_flight.values():
                task.cancel()

    def _next_check(self) -> float:
        loop_now = asyncio.get_running_loop().time()
        waits = [t - loop_now for t in self._not_before.values() if t > loop_now]
        return max(0.01, min([self._check_interval, *waits]))

    def _start_due(self) -> None:
        loop_now = asyncio.get_running_loop().time()
        for request in self._requests:
            key = request.hosts
            if key in self._in_flight or self._not_before.get(key, 0.0) > loop_now:
                continue
            if not self._needs_certificate(request):
                continue
            task = asyncio.create_task(self._order(request), name=f"acme {','.join(key)}")
            self._in_flight[key] = task
            task.add_done_callback(functools.partial(self._finished, key))

    def _finished(self, key: tuple[str, ...], _: object) -> None:
        self._in_flight.pop(key, None)
        self._wake.set()

    def _needs_certificate(self, request: CertificateRequest) -> bool:
        held = self._current(request.secret)
        if held is None or not set(request.hosts) <= held.names:
            return True
        return self._clock() >= held.renew_at()

    def _current(self, secret: ObjectRef) -> _Held | None:
        """The certificate in force: the Secret's, or the one just issued if newer."""
        candidates = [self._held.get(secret)]
        obj = self._snapshot.get("Secret", secret.namespace, secret.name)
        if obj is not None:
            try:
                chain_pem, _ = secret_material(obj)
                leaf = x509.load_pem_x509_certificates(chain_pem)[0]
                candidates.append(
                    _Held(dns_names(leaf), leaf.not_valid_before_utc, leaf.not_valid_after_utc)
                )
            except (CertificateError, ValueError):
                pass
        held = [c for c in candidates if c is not None]
        return max(held, key=lambda c: c.not_after) if held else None

    async def _order(self, request: CertificateRequest) -> None:
        key = request.hosts
        log.info("ACME: ordering a certificate for %s", ", ".join(key))
        try:
            issued = await self._client.issue(list(key), self._publisher)
            await self._sink.store(request.secret, issued.chain_pem, issued.key_pem, key)
        except Exception as exc:  # any failure is reported and retried, never fatal
            self._record_failure(request, exc)
            return
        leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
        self._held[request.secret] = _Held(
            dns_names(leaf), leaf.not_valid_before_utc, leaf.not_valid_after_utc
        )
        self._failures.pop(key, None)
        self._not_before.pop(key, None)
        recovered = self._errors.pop(request.ingress, None) is not None
        self.issued += 1
        if recovered and self.on_problems is not None:
            self.on_problems()
        log.info("ACME: stored a certificate for %s in %s", ", ".join(key), request.secret)
        if self.on_issued is not None:
            self.on_issued(request)

    def _record_failure(self, request: CertificateRequest, exc: BaseException) -> None:
        key = request.hosts
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = min(self._retry_max, self._retry_base * 2 ** (failures - 1))
        delay *= 0.5 + self._jitter()
        retry_after = exc.retry_after if isinstance(exc, AcmeError) else None
        if retry_after is not None:
            delay = max(delay, retry_after)
        self._not_before[key] = asyncio.get_running_loop().time() + delay
        detail = exc.detail if isinstance(exc, AcmeError) else f"{type(exc).__name__}: {exc}"
        message = (
            f"ACME order for {', '.join(key)} failed (attempt {failures}, next in "
            f"{delay:.1f}s): {detail}"
        )
        log.warning("%s: %s", request.ingress, message)
        self._errors[request.ingress] = Problem(request.ingress, "AcmeFailed", message)
        if self.on_problems is not None:
            self.on_problems()
