"""TLS in cluster mode: ``pyingress serve --kubeconfig`` replicas against the API double.

Built-in ACME is ordered by the elected replica only (against Pebble, Let's Encrypt's test CA);
the certificate Secret is written through the API and every replica serves it. Certificate
problems become Events on the Ingress.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kube.conftest import endpoint_slice, ingress, ingress_class, service
from tests.support.apiserver_fixtures import fake_apiserver, write_kubeconfig  # noqa: F401
from tests.support.fake_apiserver import FakeApiServer
from tests.support.net import free_port, wait_until
from tests.support.processes import pyingress, running_echo
from tests.tls import pebble as pebble_support
from tests.tls.conftest import LocalCA, handshake, tls_secret

pytestmark = pytest.mark.timeout(150)

JSON = dict[str, Any]
HOST = "acme.example.test"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/pyingress-leader"
SECRETS = "/api/v1/namespaces/default/secrets"
CHALLENGES = f"{SECRETS}/pyingress-acme-challenges"
FAST_ELECTION = (
    "--election-lease-duration", "3", "--election-renew-deadline", "2",
    "--election-retry-period", "0.3",
)  # fmt: skip


class Replica:
    """One ``pyingress serve --kubeconfig`` process."""

    def __init__(self, kubeconfig: Path, name: str, http_port: int, *extra: str) -> None:
        self.name = name
        self.http_port = http_port
        self.https_port = free_port()
        self.process = pyingress(
            "serve", "--kubeconfig", str(kubeconfig), "--bind", "127.0.0.1",
            "--http-port", str(http_port), "--https-port", str(self.https_port),
            "--health-port", str(free_port()), "--election-namespace", "default",
            *FAST_ELECTION, *extra,
            env={"POD_NAME": name},
        )  # fmt: skip

    def wait_listening(self) -> Replica:
        self.process.wait_for_port(self.https_port)
        return self

    def orders(self) -> int:
        return self.process.output.count("ACME: ordering a certificate")


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    started: list[Replica] = []
    try:
        yield started
    finally:
        for replica in started:
            replica.process.stop()


@pytest.fixture
def echo_port() -> Iterator[int]:
    with running_echo("app") as port:
        yield port


def api_get(server: FakeApiServer, path: str) -> JSON | None:
    response = httpx.get(server.url + path, timeout=10)
    return None if response.status_code == 404 else dict(response.json())


def lease_holder(server: FakeApiServer) -> str:
    lease = api_get(server, LEASE) or {}
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


def app_objects(echo_port: int) -> list[JSON]:
    return [ingress_class(), service("app"), endpoint_slice("app", echo_port)]


def secret_writes(server: FakeApiServer, name: str) -> list[JSON]:
    base = "/api/v1/namespaces/default/secrets"
    return [
        r for r in server.requests()
        if (r["method"] == "POST" and r["path"] == base)
        or (r["method"] in ("PUT", "PATCH") and r["path"] == f"{base}/{name}")
    ]  # fmt: skip


def events_for(server: FakeApiServer, ingress_name: str) -> list[JSON]:
    listed = api_get(server, "/api/v1/namespaces/default/events") or {}
    return [
        e for e in listed.get("items") or []
        if (e.get("involvedObject") or {}).get("name") == ingress_name
    ]  # fmt: skip


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pebble_support.Pebble]:
    if not pebble_support.available():
        pytest.skip(pebble_support.MISSING)
    ca = pebble_support.Pebble(tmp_path_factory.mktemp("pebble"), http_port=free_port())
    try:
        yield ca
    finally:
        ca.stop()


def wait_until_every_replica_serves(replicas: list[Replica], root: bytes) -> None:
    """Each replica presents the issued certificate for HOST, verified by Pebble's root."""
    for replica in replicas:

        def served(port: int = replica.https_port) -> bool:
            try:
                return handshake(port, HOST, root).names == {HOST}
            except OSError:
                return False

        wait_until(served, what=f"{replica.name} to serve the issued certificate")


def test_only_the_leader_orders_and_every_replica_serves_the_certificate(
    tmp_path: Path,
    fake_apiserver: FakeApiServer,  # noqa: F811
    pebble: pebble_support.Pebble,
    replicas: list[Replica],
    echo_port: int,
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)
    acme = ("--acme-directory", pebble.directory_url, "--acme-ca-bundle", str(pebble.ca_bundle))
    fake_apiserver.seed(*app_objects(echo_port))
    # Pebble validates HTTP-01 on 127.0.0.1:<its httpPort>: the first replica listens there and
    # is made the leader before the Ingress asks for a certificate.
    first = Replica(kubeconfig, "replica-a", pebble.http_port, *acme).wait_listening()
    replicas.append(first)
    wait_until(lambda: lease_holder(fake_apiserver).startswith("replica-a"),
               what="replica-a to hold the Lease")  # fmt: skip
    second = Replica(kubeconfig, "replica-b", free_port(), *acme).wait_listening()
    replicas.append(second)

    fake_apiserver.seed(
        ingress("web", HOST, "app", tls_secret="web-tls",
                annotations={"pyingress.io/acme": "true"}),
    )  # fmt: skip
    wait_until(lambda: api_get(fake_apiserver, "/api/v1/namespaces/default/secrets/web-tls"),
               timeout=60, what="the certificate Secret to be written")  # fmt: skip
    secret = api_get(fake_apiserver, "/api/v1/namespaces/default/secrets/web-tls") or {}
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) >= {"tls.crt", "tls.key"}

    wait_until_every_replica_serves(replicas, pebble.root_pem())

    assert (first.orders(), second.orders()) == (1, 0)
    # Three Secrets created in all, all by the leader when it started ordering: the HTTP-01
    # challenge Secret, the ACME account key, and the certificate; the other replica wrote
    # nothing.
    assert api_get(fake_apiserver, "/api/v1/namespaces/default/secrets/pyingress-acme-account")
    assert len(secret_writes(fake_apiserver, "web-tls")) == 3
    assert lease_holder(fake_apiserver).startswith("replica-a")


def test_a_replica_that_did_not_order_answers_the_challenge_from_the_shared_secret(
    tmp_path: Path,
    fake_apiserver: FakeApiServer,  # noqa: F811
    pebble: pebble_support.Pebble,
    replicas: list[Replica],
    echo_port: int,
) -> None:
    """Behind one address the CA's validation lands on any replica: here always on the one
    that did not order, which can only answer from the leader's challenge Secret."""
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)
    acme = ("--acme-directory", pebble.directory_url, "--acme-ca-bundle", str(pebble.ca_bundle))
    fake_apiserver.seed(*app_objects(echo_port))
    leader = Replica(kubeconfig, "replica-a", free_port(), *acme).wait_listening()
    replicas.append(leader)
    wait_until(lambda: lease_holder(fake_apiserver).startswith("replica-a"),
               what="replica-a to hold the Lease")  # fmt: skip
    # Pebble validates HTTP-01 on 127.0.0.1:<its httpPort>: only the follower listens there.
    follower = Replica(kubeconfig, "replica-b", pebble.http_port, *acme).wait_listening()
    replicas.append(follower)

    fake_apiserver.seed(
        ingress("web", HOST, "app", tls_secret="web-tls",
                annotations={"pyingress.io/acme": "true"}),
    )  # fmt: skip
    wait_until(lambda: api_get(fake_apiserver, f"{SECRETS}/web-tls"),
               timeout=60, what="the certificate Secret to be written")  # fmt: skip

    wait_until_every_replica_serves(replicas, pebble.root_pem())

    assert (leader.orders(), follower.orders()) == (1, 0)
    assert "AcmeFailed" not in leader.process.output
    # The leader asked the CA to validate only after its own watch brought the token back.
    assert "did not come back through the watch" not in leader.process.output
    assert lease_holder(fake_apiserver).startswith("replica-a")
    # The token went through the Secret (published, then withdrawn) and none is left.
    patches = [r for r in fake_apiserver.requests()
               if r["method"] == "PATCH" and r["path"] == CHALLENGES]  # fmt: skip
    assert len(patches) >= 2
    assert all(r["contentType"].startswith("application/merge-patch+json") for r in patches)
    challenges = api_get(fake_apiserver, CHALLENGES) or {}
    assert challenges, "the challenge Secret exists"
    assert not challenges.get("data"), "every challenge token was removed"


def test_certificate_and_acme_problems_become_events(
    tmp_path: Path,
    fake_apiserver: FakeApiServer,  # noqa: F811
    pebble: pebble_support.Pebble,
    replicas: list[Replica],
    echo_port: int,
    ca: LocalCA,
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", fake_apiserver.url)
    chain, _ = ca.issue("bad.example.test")
    _, other_key = ca.issue("bad.example.test")
    fake_apiserver.seed(
        *app_objects(echo_port),
        ingress("broken", "bad.example.test", "app", tls_secret="bad-tls"),
        tls_secret("bad-tls", chain, other_key),
        # The replica does not listen where Pebble validates: the order fails at the CA.
        ingress("unreachable", "unreachable.example.test", "app", tls_secret="unreachable-tls",
                annotations={"pyingress.io/acme": "true"}),
    )  # fmt: skip
    acme = ("--acme-directory", pebble.directory_url, "--acme-ca-bundle", str(pebble.ca_bundle))
    replicas.append(Replica(kubeconfig, "replica-a", free_port(), *acme).wait_listening())

    def reasons(name: str) -> dict[str, str]:
        return {e["reason"]: e["message"] for e in events_for(fake_apiserver, name)}

    wait_until(lambda: "InvalidCertificate" in reasons("broken"), timeout=60,
               what="an InvalidCertificate Event on the Ingress")  # fmt: skip
    assert "does not match" in reasons("broken")["InvalidCertificate"]
    event = next(e for e in events_for(fake_apiserver, "broken")
                 if e["reason"] == "InvalidCertificate")  # fmt: skip
    assert event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "Ingress"

    wait_until(lambda: "AcmeFailed" in reasons("unreachable"), timeout=60,
               what="an AcmeFailed Event on the Ingress")  # fmt: skip
    message = reasons("unreachable")["AcmeFailed"]
    assert "unreachable.example.test" in message
    # The CA's own words about the failed validation are passed on.
    assert "connection refused" in message.lower() or "connect" in message.lower(), message
