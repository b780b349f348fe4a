from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster
from tests.integration.redis_server import RedisServer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One running server (3 shards, 2 fronts) shared by a test module."""
    server = Cluster(tmp_path_factory.mktemp("cluster"))
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A server of the test's own, for tests that kill its processes."""
    server = Cluster(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own on a free port (skipped without one; CI: failed)."""
    server = RedisServer()
    yield server
    server.stop()
