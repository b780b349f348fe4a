"""sockjs-client (npm, 1.x) in headless Chromium against the real server (3 shards, 2 fronts),
with the transport forced to each one a browser may pick.

The page is served from 127.0.0.1 on the tests' static server and the Pushy server is reached
as `localhost` on its own port: cross-origin, as in production, so the iframe-* transports
really load the server's iframe.html (which loads sockjs-client from `sockjs.sockjs_url`,
the static server) and run their inner transport there. htmlfile alone is same-origin only in
sockjs-client, so its page is one of the server's own origin (its iframe.html, with the test
script injected). xdr-* need IE's XDomainRequest: not testable in Chromium.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.e2e import tools
from tests.e2e.conftest import NodeTools
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(300)  # the first test also fills the npm cache

CROSS_ORIGIN = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "jsonp-polling",
                "iframe-eventsource", "iframe-htmlfile", "iframe-xhr-polling"]
SAME_ORIGIN = ["htmlfile"]


@pytest.fixture
def browser(node_tools: NodeTools, chromium: str, browser_cluster: Cluster,
            static_server: tools.StaticServer, request: pytest.FixtureRequest
            ) -> Iterator[tools.LineClient]:
    transport: str = request.param
    sockjs_url = f"http://localhost:{browser_cluster.port}{browser_cluster.prefix}"
    if transport in SAME_ORIGIN:
        page = ["--page", sockjs_url + "/iframe.html",
                "--inject", static_server.url("browser_page.js")]
    else:
        page = ["--page", static_server.url("browser_page.html")]
    argv = [node_tools.node, str(tools.HERE / "browser_driver.js"), "--chromium", chromium,
            *page, "--url", sockjs_url, "--transport", transport]
    client = tools.LineClient(argv, node_tools.env(), f"chromium {transport}", browser_cluster)
    yield client
    client.stop()


@pytest.mark.parametrize("browser", CROSS_ORIGIN + SAME_ORIGIN, indirect=True)
def test_browser_round_trip(browser: tools.LineClient, browser_cluster: Cluster,
                            request: pytest.FixtureRequest) -> None:
    """Connect, subscribe, a triggered event with non-ASCII data arrives intact, leave."""
    transport = request.node.callspec.params["browser"]
    channel = f"e2e-browser-{transport}-{secrets.token_hex(3)}"
    tools.pubsub_round_trip(browser_cluster, browser, transport, channel)


# htmlfile writes each frame into an HTML document of the server's origin as
# `<script>p("...")</script>`: a "</script>" in event data must not end that script (the frame
# stops arriving, and the rest would be parsed as markup of the server's origin: an injection).
MARKUP_DATA = {"html": "</script><script>parent.pushyInjected = 1</script><b>x</b> <!-- ",
               "text": "héllo wörld ✓ 😀"}


@pytest.mark.parametrize("browser", ["htmlfile", "iframe-htmlfile"], indirect=True)
def test_browser_markup_in_event_data(browser: tools.LineClient, browser_cluster: Cluster,
                                      request: pytest.FixtureRequest) -> None:
    """Event data with HTML markup arrives intact over the HTML-document transports."""
    transport = request.node.callspec.params["browser"]
    channel = f"e2e-markup-{transport}-{secrets.token_hex(3)}"
    tools.pubsub_round_trip(browser_cluster, browser, transport, channel, MARKUP_DATA)
