"""Laravel Echo 2.5 on pusher-js 8.6 in headless Chromium against the real server (3 shards,
2 fronts), over WebSocket, as a Laravel app's page uses them.

The page (echo_page.html: pusher-js's dist/web/pusher.js, Echo's dist/echo.iife.js) is served
by the tests' static server, which also plays the Laravel app's auth endpoint:
`POST /broadcasting/auth` with `socket_id` and `channel_name` (a form) and the page's bearer
token, answered as Laravel's Pusher broadcaster does, signed by the Python SDK's
`authenticate` (presence: `custom_data` {"user_id": <int>, "user_info": {..}}, Laravel style).
The Pushy server is another origin (its own port). Triggers come from the Python SDK.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pusher
import pytest

from tests.e2e import tools
from tests.e2e.conftest import NodeTools
from tests.e2e.pusher_tools import EVENT_DATA, Lines, channel_auth, python_sdk
from tests.integration.harness import Cluster
from tests.integration.pusher_client import APP_ID, KEY

pytestmark = pytest.mark.timeout(300)  # the first test also fills the npm cache

# bearer token -> the user the auth endpoint answers for (Laravel: integer ids)
USERS: dict[str, dict[str, Any]] = {
    "token-ana": {"user_id": 1, "user_info": {"id": 1, "name": "Ana ü"}},
    "token-bo": {"user_id": 2, "user_info": {"id": 2, "name": "Bő 😀"}},
}


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class AuthEndpoint:
    """What a Laravel app answers at /broadcasting/auth: 403 for no user or a channel its
    callbacks refuse ("forbidden" here); else the Python SDK's signature, from a wrong
    secret for channels named "missigned" (the server must then refuse)."""

    def __init__(self, cluster: Cluster) -> None:
        self.sdk = python_sdk(cluster)
        self.wrong = pusher.Pusher(app_id=APP_ID, key=KEY, secret="not-the-secret",
                                   host="127.0.0.1", port=cluster.port, ssl=False)
        self.requests: list[dict[str, str]] = []

    def __call__(self, body: bytes, headers: Message) -> tuple[int, str, bytes]:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        self.requests.append({**form, "token": token,
                              "content_type": headers.get("Content-Type") or ""})
        channel, socket_id = form.get("channel_name", ""), form.get("socket_id", "")
        user = USERS.get(token)
        if user is None or "forbidden" in channel:
            return 403, "application/json", b'{"message":"This action is unauthorized."}'
        sdk = self.wrong if "missigned" in channel else self.sdk
        custom = user if channel.startswith("presence-") else None
        answer = sdk.authenticate(channel=channel, socket_id=socket_id, custom_data=custom)
        return 200, "application/json", json.dumps(answer).encode()

    def requests_for(self, channel: str) -> list[dict[str, str]]:
        return [request for request in self.requests if request.get("channel_name") == channel]


@pytest.fixture(scope="module")
def auth_endpoint(pusher_cluster: Cluster) -> AuthEndpoint:
    return AuthEndpoint(pusher_cluster)


@pytest.fixture(scope="module")
def echo_server(node_tools: NodeTools, chromium: str, auth_endpoint: AuthEndpoint
                ) -> Iterator[tools.StaticServer]:
    modules = node_tools.node_modules
    js = "application/javascript; charset=utf-8"
    server = tools.StaticServer({
        "echo_page.html": (tools.HERE / "echo_page.html", "text/html; charset=utf-8"),
        "echo_page.js": (tools.HERE / "echo_page.js", js),
        "pusher.js": (modules / "pusher-js" / "dist" / "web" / "pusher.js", js),
        "echo.iife.js": (modules / "laravel-echo" / "dist" / "echo.iife.js", js),
    }, posts={"broadcasting/auth": auth_endpoint})
    yield server
    server.stop()


class EchoPage(Lines):
    """echo_driver.js: one Chromium with the Echo page, connected."""

    def __init__(self, node_tools: NodeTools, chromium: str, cluster: Cluster,
                 server: tools.StaticServer, token: str, name: str) -> None:
        config = {"key": KEY, "wsPort": cluster.port, "bearerToken": token}
        super().__init__([node_tools.node, str(tools.HERE / "echo_driver.js"),
                          "--chromium", chromium, "--page", server.url("echo_page.html"),
                          "--config", json.dumps(config)], node_tools.env(), name, cluster)
        self.socket_id = ""

    def connected(self) -> str:
        state = self.until("state", current="connected")
        assert state["status"] == "connected", state
        self.socket_id = state["socket_id"]
        return self.socket_id

    def channel(self, kind: str, name: str, listen: list[str] | None = None,
                whispers: list[str] | None = None) -> None:
        self.command("channel", kind=kind, name=name, listen=listen or [],
                     whispers=whispers or [])

    def subscribed(self, channel: str) -> None:
        self.take("subscribed", channel=channel)

    def event(self, channel: str, via: str, event: str) -> dict[str, Any]:
        """The next listen/whisper callback on `channel` must be this one."""
        return self.take("event", channel=channel, via=via, event=event)

    def close(self, timeout: float = tools.TIMEOUT) -> dict[str, Any]:  # type: ignore[override]
        self.command("close")
        closed = self.take("closed", timeout)
        assert self.exited(timeout) == 0, self.report()
        return closed


class Pages:
    def __init__(self, node_tools: NodeTools, chromium: str, cluster: Cluster,
                 server: tools.StaticServer) -> None:
        self.args = (node_tools, chromium, cluster, server)
        self.started: list[EchoPage] = []

    def open(self, token: str, name: str) -> EchoPage:
        page = EchoPage(*self.args, token=token, name=f"chromium echo {name}")
        self.started.append(page)
        page.connected()
        return page


@pytest.fixture
def pages(node_tools: NodeTools, chromium: str, pusher_cluster: Cluster,
          echo_server: tools.StaticServer) -> Iterator[Pages]:
    made = Pages(node_tools, chromium, pusher_cluster, echo_server)
    yield made
    for page in made.started:
        page.stop()


def test_echo_channel_listen(pages: Pages, pusher_cluster: Cluster) -> None:
    """Echo.channel(c).listen: '.name' binds the name as is; 'Name' binds the namespaced
    'App\\Events\\Name' (Echo's default namespace), which the server relays intact."""
    page = pages.open("token-ana", "ana")
    channel = unique("e2e-echo-orders")
    page.channel("public", channel, listen=[".order-shipped", "OrderShipped"])
    page.subscribed(channel)
    sdk = python_sdk(pusher_cluster)
    assert sdk.trigger(channel, "order-shipped", EVENT_DATA) == {}
    assert page.event(channel, "listen", ".order-shipped")["data"] == EVENT_DATA
    # a bare "OrderShipped" is no listener's event: the next callback is the namespaced one
    assert sdk.trigger(channel, "OrderShipped", {"bare": True}) == {}
    assert sdk.trigger(channel, "App\\Events\\OrderShipped", {"id": 7, "ü": "✓"}) == {}
    assert page.event(channel, "listen", "OrderShipped")["data"] == {"id": 7, "ü": "✓"}
    page.close()


def test_echo_private_listen(pages: Pages, pusher_cluster: Cluster,
                             auth_endpoint: AuthEndpoint) -> None:
    """Echo.private(c): the auth endpoint gets socket_id, channel_name and the bearer token;
    its signature is PUSHER.md 3's; an SDK trigger arrives."""
    page = pages.open("token-ana", "ana")
    name = unique("e2e-echo-account")
    channel = "private-" + name
    page.channel("private", name, listen=[".balance"])
    page.subscribed(channel)
    [request] = auth_endpoint.requests_for(channel)
    assert request["socket_id"] == page.socket_id and request["token"] == "token-ana", request
    assert request["content_type"].startswith("application/x-www-form-urlencoded"), request
    assert auth_endpoint.sdk.authenticate(channel=channel, socket_id=page.socket_id) == {
        "auth": channel_auth(page.socket_id, channel)}
    assert python_sdk(pusher_cluster).trigger(channel, "balance", {"eur": 12.5}) == {}
    assert page.event(channel, "listen", ".balance")["data"] == {"eur": 12.5}
    page.close()


def test_echo_join_here_joining_leaving(pages: Pages, pusher_cluster: Cluster) -> None:
    """Echo.join across two pages: here (join order), joining on the first when the second
    joins, leaving when the second page closes. User info as the Python SDK signed it (with
    its spaces), integer ids as Laravel sends them."""
    name = unique("e2e-echo-room")
    channel = "presence-" + name
    ana, bo = USERS["token-ana"]["user_info"], USERS["token-bo"]["user_info"]
    first = pages.open("token-ana", "ana")
    first.channel("presence", name, listen=[".said"])
    assert first.take("here", channel=channel)["users"] == [ana]
    first.subscribed(channel)

    second = pages.open("token-bo", "bo")
    second.channel("presence", name, listen=[".said"])
    assert second.take("here", channel=channel)["users"] == [ana, bo]
    assert first.take("joining", channel=channel)["user"] == bo

    assert python_sdk(pusher_cluster).trigger(channel, "said", {"text": "hi ✓"}) == {}
    for page in (first, second):
        assert page.event(channel, "listen", ".said")["data"] == {"text": "hi ✓"}

    second.close()  # the page goes: its WebSocket closes
    assert first.take("leaving", channel=channel)["user"] == bo
    first.close()


@pytest.mark.parametrize("kind", ["private", "presence"])
def test_echo_whisper(pages: Pages, pusher_cluster: Cluster, kind: str) -> None:
    """whisper on one page reaches listenForWhisper on the other (client events), not the
    sender; on a presence channel pusher-js also hands Echo's callback the sender's
    user_id."""
    name = unique("e2e-echo-chat")
    channel = f"{kind}-{name}"
    ana = pages.open("token-ana", "ana")
    bo = pages.open("token-bo", "bo")
    for page in (ana, bo):
        page.channel(kind, name, listen=[".fence"], whispers=["typing"])
        page.subscribed(channel)
    if kind == "presence":  # Ana joined first
        assert ana.take("here", channel=channel)["users"] == [USERS["token-ana"]["user_info"]]
        assert ana.take("joining", channel=channel)["user"] == USERS["token-bo"]["user_info"]

    bo.command("whisper", kind=kind, name=name, event="typing", data={"name": "Bő", "n": 1})
    typed = ana.event(channel, "whisper", "typing")
    assert typed["data"] == {"name": "Bő", "n": 1}, typed
    # presence: the sender's user_id as its channel_data wrote it (PUSHER.md 4: Laravel's
    # integer stays an integer)
    expected = {"user_id": 2} if kind == "presence" else {}
    assert typed["metadata"] == expected, typed
    # not echoed: Bo's next callback on the channel is this trigger
    assert python_sdk(pusher_cluster).trigger(channel, "fence", {}) == {}
    assert bo.event(channel, "listen", ".fence")["data"] == {}
    assert ana.event(channel, "listen", ".fence")["data"] == {}
    ana.close()
    bo.close()


def test_echo_error_on_refused_subscriptions(pages: Pages, pusher_cluster: Cluster,
                                             auth_endpoint: AuthEndpoint) -> None:
    """Echo's .error(): the server's per-channel pusher:subscription_error (a wrong signature:
    AuthError 401, PUSHER.md 7) and pusher-js's own (the auth endpoint answers 403); the
    connection stays and other channels work."""
    page = pages.open("token-ana", "ana")
    missigned, forbidden = unique("missigned"), unique("forbidden")
    room = unique("missigned-room")
    page.channel("private", missigned)
    page.channel("presence", room)
    page.channel("private", forbidden)
    for channel in ("private-" + missigned, "presence-" + room):
        error = page.take("channel_error", channel=channel)["error"]
        assert error["type"] == "AuthError" and error["status"] == 401, error  # the server's
        assert auth_endpoint.requests_for(channel), channel
    error = page.take("channel_error", channel="private-" + forbidden)["error"]
    assert error["type"] == "AuthError" and error["status"] == 403, error  # pusher-js's own
    assert "403" in error["error"], error

    fine = unique("e2e-echo-fine")
    page.channel("public", fine, listen=[".ok"])
    page.subscribed(fine)
    assert python_sdk(pusher_cluster).trigger(fine, "ok", "still connected") == {}
    assert page.event(fine, "listen", ".ok")["data"] == "still connected"
    page.close()
