"""Servers for the SockJS conformance tests: the real processes, as sockjs-protocol's suite
expects a test server to be configured (streaming responses end after 4096 bytes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import PREFIX, Cluster

RESPONSE_LIMIT = 4096
TUNED_HEARTBEAT = 0.5
TUNED_DISCONNECT = 1.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One running server (3 shards, 2 fronts) shared by a test module."""
    sockjs = {"prefix": PREFIX, "heartbeat_delay": 25, "disconnect_delay": 5,
              "response_limit": RESPONSE_LIMIT}
    server = Cluster(tmp_path_factory.mktemp("conformance"), sockjs=sockjs)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The suite's other services in one server: websocket disabled, JSESSIONID cookies,
    and short heartbeat / disconnect delays (seconds). One front: no relaying."""
    sockjs = {"prefix": PREFIX, "heartbeat_delay": TUNED_HEARTBEAT,
              "disconnect_delay": TUNED_DISCONNECT, "response_limit": RESPONSE_LIMIT,
              "websocket": False, "jsessionid": True}
    server = Cluster(tmp_path_factory.mktemp("conformance-tuned"), fronts=1, sockjs=sockjs)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])
