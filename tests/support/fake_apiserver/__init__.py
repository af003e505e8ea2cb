"""A Kubernetes API-server double for tests: real HTTP, the verbs pyingress uses.

``FakeApiServer`` runs it in-process on its own thread; ``python -m
tests.support.fake_apiserver`` runs it as a process. The behaviour it promises is checked by
``tests/contract`` against the double and, when configured, a real kube-apiserver.
"""

from tests.support.fake_apiserver.hooks import Settings
from tests.support.fake_apiserver.server import FakeApiServer

__all__ = ["FakeApiServer", "Settings"]
