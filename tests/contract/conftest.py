"""Targets for the contract suite: the double always; a real kube-apiserver when
``PYINGRESS_CONTRACT_APISERVER_URL`` and ``PYINGRESS_CONTRACT_APISERVER_TOKEN`` are set
(``PYINGRESS_CONTRACT_APISERVER_CA`` optionally names the CA file for https).

Every test gets its own namespace, deleted afterwards. Tests marked ``double_only`` use the
double's test hooks; tests marked ``endpointslice_v1`` skip where discovery.k8s.io/v1 is missing
(v1.20).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from kubernetes_asyncio import client

from tests.support.apiserver_fixtures import configuration
from tests.support.fake_apiserver import FakeApiServer

URL_ENV = "PYINGRESS_CONTRACT_APISERVER_URL"
TOKEN_ENV = "PYINGRESS_CONTRACT_APISERVER_TOKEN"
CA_ENV = "PYINGRESS_CONTRACT_APISERVER_CA"
RUN_ID = secrets.token_hex(3)
pytestmark = pytest.mark.contract


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "double_only: needs the API-server double's test hooks")
    config.addinivalue_line("markers", "endpointslice_v1: needs discovery.k8s.io/v1 (1.21+)")


@dataclass
class Target:
    name: str
    url: str
    token: str
    ca_cert: str | None = None
    double: FakeApiServer | None = None
    groups: dict[str, list[str]] = field(default_factory=dict)

    def configuration(self) -> client.Configuration:
        config = configuration(self.url, self.token, self.ca_cert)
        if self.url.startswith("https") and not self.ca_cert:
            config.verify_ssl = False
        return config

    def raw(self) -> httpx.AsyncClient:
        """For what the client library cannot express (content types, raw bodies)."""
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {self.token}"},
                                 verify=self.ca_cert or False)

    @property
    def hooks(self) -> FakeApiServer:
        assert self.double is not None, "test hooks exist only on the double"
        return self.double


def _discover_groups(url: str, token: str, ca_cert: str | None) -> dict[str, list[str]]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      verify=ca_cert or False, timeout=30) as http:
        body = http.get("/apis").json()
    return {g["name"]: [v["version"] for v in g["versions"]] for g in body["groups"]}


@pytest.fixture(scope="session")
def double_server() -> Iterator[FakeApiServer]:
    with FakeApiServer(require_namespaces=True) as server:
        yield server


@pytest.fixture(scope="session", params=["double", "real"])
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "double":
        server: FakeApiServer = request.getfixturevalue("double_server")
        return Target("double", server.url, "contract-token", double=server,
                      groups={"discovery.k8s.io": ["v1"]})
    url, token = os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV)
    if not url or not token:
        pytest.skip(f"no real apiserver: set {URL_ENV} and {TOKEN_ENV} to run against one")
    ca_cert = os.environ.get(CA_ENV)
    return Target("real", url, token, ca_cert, groups=_discover_groups(url, token, ca_cert))


@pytest.fixture
def api_target(target: Target, request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.node.get_closest_marker("double_only") and target.double is None:
        pytest.skip("needs the double's test hooks")
    if request.node.get_closest_marker("endpointslice_v1") and "v1" not in target.groups.get(
        "discovery.k8s.io", []
    ):
        pytest.skip("the target serves no discovery.k8s.io/v1 (v1.20 has only v1beta1)")
    yield target
    if target.double is not None:
        target.double.reset_faults()
        target.double.configure(expired_as_http=False, bookmark_interval=60.0,
                                too_large_rv_wait=3.0)


@pytest.fixture
async def api(api_target: Target) -> AsyncIterator[client.ApiClient]:
    async with client.ApiClient(api_target.configuration()) as api_client:
        yield api_client


_counter = iter(range(1, 1_000_000))


@pytest.fixture
async def ns(api: client.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace for one test, deleted (with its contents) afterwards."""
    name = f"pyi-contract-{RUN_ID}-{next(_counter)}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    try:
        await core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
