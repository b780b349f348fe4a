"""Fixtures of the end-to-end tests: tools found (or skip/fail, see tools.unavailable), the npm
packages installed into the cache folder, a static server for the browser page, clusters."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import tools
from tests.integration.harness import PREFIX, Cluster
from tests.integration.pusher_client import APPS

# Small streaming responses, so the streaming transports (xhr-streaming, eventsource,
# htmlfile) also reopen their request during a test, as sockjs-protocol's own test server does.
SOCKJS_OPTIONS: dict[str, Any] = {"prefix": PREFIX, "heartbeat_delay": 25,
                                  "disconnect_delay": 5, "response_limit": "4K"}

_skipped: dict[str, int] = {}


@dataclass(frozen=True)
class NodeTools:
    node: str
    node_modules: Path

    def env(self) -> dict[str, str]:
        return dict(os.environ, NODE_PATH=str(self.node_modules), NODE_ENV="production")


@pytest.fixture(scope="session")
def node_tools() -> NodeTools:
    node = tools.find_node()
    npm = tools.find_npm()
    return NodeTools(node, tools.node_modules(npm))


@pytest.fixture(scope="session")
def chromium(node_tools: NodeTools) -> str:
    return tools.find_chromium()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if (report.skipped and not hasattr(report, "wasxfail")  # an xfail is no missing tool
            and "tests/e2e/" in report.nodeid.replace(os.sep, "/")):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else "skipped"
        reason = reason.removeprefix("Skipped: ")
        _skipped[reason] = _skipped.get(reason, 0) + 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line per reason, even under -q: how to enable the skipped e2e tests."""
    for reason, count in _skipped.items():
        terminalreporter.write_line(f"e2e: {count} test(s) skipped: {reason}", yellow=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real server, 3 shards and 2 fronts, for the Node tests of a module."""
    server = Cluster(tmp_path_factory.mktemp("e2e-cluster"), sockjs=dict(SOCKJS_OPTIONS))
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


@pytest.fixture(scope="module")
def static_server(node_tools: NodeTools) -> Iterator[tools.StaticServer]:
    """browser_page.html, browser_page.js and sockjs-client's dist file on 127.0.0.1."""
    dist = node_tools.node_modules / "sockjs-client" / "dist" / "sockjs.js"
    server = tools.StaticServer({
        "browser_page.html": (tools.HERE / "browser_page.html", "text/html; charset=utf-8"),
        "browser_page.js": (tools.HERE / "browser_page.js",
                            "application/javascript; charset=utf-8"),
        "sockjs.js": (dist, "application/javascript; charset=utf-8"),
    })
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser_cluster(tmp_path_factory: pytest.TempPathFactory, chromium: str,
                    static_server: tools.StaticServer) -> Iterator[Cluster]:
    """The real server whose iframe.html loads sockjs-client from the static server."""
    sockjs = dict(SOCKJS_OPTIONS, sockjs_url=static_server.url("sockjs.js"))
    server = Cluster(tmp_path_factory.mktemp("e2e-browser-cluster"), sockjs=sockjs)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


@pytest.fixture(scope="module")
def pusher_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real server serving the Pusher apps of tests/integration/pusher_client.py (app "10",
    key "app-key", client events on), for the pusher-js / Echo tests of a module."""
    server = Cluster(tmp_path_factory.mktemp("e2e-pusher"), apps=APPS,
                     sockjs=dict(SOCKJS_OPTIONS))
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])
