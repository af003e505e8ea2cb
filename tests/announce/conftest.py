from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.announce.netlab import Lab, missing_requirements
from tests.support.apiserver_fixtures import api_client, fake_apiserver

__all__ = ["api_client", "fake_apiserver", "lab"]


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = missing_requirements()
    if reason:
        pytest.skip(reason)
    network = Lab()
    try:
        yield network
    finally:
        network.close()
