"""pusher-js 8.6 (its Node build) against the real server (3 shards, 2 fronts) over each
transport it has in Node: ws, xhr_streaming, xhr_polling. The app server is the official npm
SDK (`pusher` 5.3.4) inside the driver (pusher_node.js): it signs private/presence
subscriptions and sign-ins in pusher-js's customHandler, as a real app's endpoint would, and
triggers. The Python SDK (`pusher` on PyPI) triggers too. Each connection's front is the
X-Pushy-Front header of what pusher-js opened (the WebSocket handshake, or the first fallback
response), so the presence test puts one user's two connections on different fronts."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import NodeTools
from tests.e2e.pusher_tools import (
    EVENT_DATA,
    TRANSPORTS,
    PusherNode,
    channel_auth,
    python_sdk,
    user_auth,
)
from tests.integration.harness import Cluster

pytestmark = pytest.mark.timeout(300)  # the first test also fills the npm cache

FRONT_ATTEMPTS = 40  # new connections tried to land one on a given front (2 fronts)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Drivers:
    """Starts pusher_node.js processes over one transport; stops what is left at teardown."""

    def __init__(self, node_tools: NodeTools, cluster: Cluster, transport: str) -> None:
        self.node_tools = node_tools
        self.cluster = cluster
        self.transport = transport
        self.started: list[PusherNode] = []

    def start(self, name: str, connect: bool = True, **config: Any) -> PusherNode:
        driver = PusherNode(self.node_tools, self.cluster, self.transport,
                            f"pusher-js {self.transport} {name}", **config)
        self.started.append(driver)
        if connect:
            driver.connected()
        return driver

    def on_front(self, front: int, name: str, **config: Any) -> PusherNode:
        """A connection held by front `front`: new ones until the kernel puts one there."""
        for _ in range(FRONT_ATTEMPTS):
            driver = self.start(name, **config)
            if driver.front == front:
                return driver
            driver.close()
        raise AssertionError(f"no connection landed on front {front} in {FRONT_ATTEMPTS}")

    def stop(self) -> None:
        for driver in self.started:
            driver.stop()


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def drivers(node_tools: NodeTools, pusher_cluster: Cluster, transport: str
            ) -> Iterator[Drivers]:
    made = Drivers(node_tools, pusher_cluster, transport)
    yield made
    made.stop()


def test_public_channels_trigger_batch_and_exclusion(drivers: Drivers) -> None:
    """The npm SDK triggers to several channels, in a batch, and with socket_id left out."""
    a = drivers.start("a")
    b = drivers.start("b")
    c1, c2, c3 = unique("e2e-pub-1"), unique("e2e-pub-2"), unique("e2e-pub-3")
    for channel in (c1, c2, c3):
        assert a.subscribe(channel) == {}
    assert b.subscribe(c1) == {}

    body = a.sdk_ok("trigger", [c1, c2], "greet", EVENT_DATA, {"info": "subscription_count"})
    assert body == {"channels": {c1: {"subscription_count": 2}, c2: {"subscription_count": 1}}}
    assert a.event(c1, "greet") == EVENT_DATA
    assert a.event(c2, "greet") == EVENT_DATA
    assert b.event(c1, "greet") == EVENT_DATA

    body = a.sdk_ok("triggerBatch", [
        {"channel": c1, "name": "b1", "data": {"n": 1}},
        {"channel": c3, "name": "b2", "data": "a plain string, not JSON ✓"},
        {"channel": c1, "name": "b3", "data": "[1,2]"},  # a string the SDK sends as is
    ])
    assert body == {}
    assert a.event(c1, "b1") == {"n": 1}
    assert a.event(c3, "b2") == "a plain string, not JSON ✓"
    assert a.event(c1, "b3") == [1, 2]  # pusher-js parses data that is JSON
    assert b.event(c1, "b1") == {"n": 1}
    assert b.event(c1, "b3") == [1, 2]

    # socket_id: everyone but that connection (the SDK checks its format first)
    assert b.sdk_ok("trigger", c1, "not-to-a", {"x": 1}, {"socket_id": a.socket_id}) == {}
    assert b.event(c1, "not-to-a") == {"x": 1}
    assert b.sdk_ok("trigger", c1, "after", {"x": 2}) == {}
    assert a.event(c1, "after") == {"x": 2}  # in order on c1: "not-to-a" never came
    assert b.event(c1, "after") == {"x": 2}
    bad = b.sdk("trigger", c1, "x", {}, {"socket_id": "not-a-socket-id"})
    assert "error" in bad and "socket" in bad["error"].lower(), bad

    a.close()
    b.close()


def test_private_channel(drivers: Drivers) -> None:
    """customHandler signs with the SDK's authorizeChannel: the token is PUSHER.md 3's and the
    server accepts it; a trigger arrives."""
    a = drivers.start("a")
    channel = unique("private-e2e")
    assert a.subscribe(channel) == {}
    auth = a.take("auth", kind="channel", channel=channel)
    assert auth["socket_id"] == a.socket_id
    assert auth["result"] == {"auth": channel_auth(a.socket_id, channel)}, auth

    assert a.sdk_ok("trigger", channel, "secret-news", EVENT_DATA) == {}
    assert a.event(channel, "secret-news") == EVENT_DATA

    # the SDK's tokens, asked directly: PUSHER.md 3's strings, private and presence
    user = {"user_id": 7, "user_info": {"name": "Zoë ✓"}}
    token = a.sdk("authorizeChannel", "1234.1234", "private-foobar")["result"]
    assert token == {"auth": channel_auth("1234.1234", "private-foobar")}
    token = a.sdk("authorizeChannel", "1234.1234", "presence-foobar", user)["result"]
    assert token["channel_data"] == json.dumps(user, ensure_ascii=False, separators=(",", ":"))
    assert token["auth"] == channel_auth("1234.1234", "presence-foobar", token["channel_data"])
    a.close()


def test_presence_dedup_across_fronts(drivers: Drivers) -> None:
    """One user's two connections on different fronts: member_added once (first connection),
    member_removed once (last); an observer sees the user once; members lists are distinct."""
    channel = unique("presence-e2e-room")
    ana_id, bo_id = unique("ana"), unique("bo")
    ana = {"user_id": ana_id, "user_info": {"name": "Ana ü"}}
    bo = {"user_id": bo_id, "user_info": {"name": "Bő 😀"}}

    observer = drivers.start("observer", user=bo)
    joined = observer.subscribe(channel)
    assert joined["count"] == 1 and joined["myID"] == bo_id, joined
    assert joined["members"] == {bo_id: bo["user_info"]}

    first = drivers.start("ana-1", user=ana)
    assert first.front in (0, 1), first.front
    second = drivers.on_front(1 - first.front, "ana-2", user=ana)

    members = first.subscribe(channel)
    assert members["count"] == 2 and members["myID"] == ana_id, members
    assert members["members"] == {bo_id: bo["user_info"], ana_id: ana["user_info"]}
    assert observer.event(channel, "pusher:member_added") == {"id": ana_id,
                                                               "info": ana["user_info"]}
    members = second.subscribe(channel)
    assert members["count"] == 2 and members["members"] == {bo_id: bo["user_info"],
                                                            ana_id: ana["user_info"]}
    # nothing for the second connection of a present user: the next event is this trigger
    body = observer.sdk_ok("trigger", channel, "fence", {"n": 0},
                           {"info": "user_count,subscription_count"})
    assert body == {"channels": {channel: {"user_count": 2, "subscription_count": 3}}}
    for driver in (observer, first, second):
        assert driver.event(channel, "fence") == {"n": 0}

    # the first connection leaves: Ana is still there (no reply to pusher:unsubscribe: the
    # trigger's own answer says when the server has done it; each trigger is also a fence)
    first.command("unsubscribe", channel=channel)
    for n in range(1, 50):
        body = observer.sdk_ok("trigger", channel, "fence", {"n": n},
                               {"info": "user_count,subscription_count"})
        assert observer.event(channel, "fence") == {"n": n}  # and no member_removed
        if body["channels"][channel]["subscription_count"] == 2:
            break
    else:
        raise AssertionError(f"the unsubscribe never took effect: {body}")
    assert body["channels"][channel]["user_count"] == 2, body

    # the last one leaves: removed once
    second.command("unsubscribe", channel=channel)
    assert observer.event(channel, "pusher:member_removed") == {"id": ana_id,
                                                                 "info": ana["user_info"]}
    assert observer.sdk_ok("trigger", channel, "after", {}) == {}
    assert observer.event(channel, "after") == {}
    for driver in (observer, first, second):
        driver.close()


def test_client_events(drivers: Drivers) -> None:
    """client-* events on private and presence channels reach the others, not the sender;
    on presence they carry the sender's user_id; on a public channel the server refuses."""
    ana_id, bo_id = unique("ana"), unique("bo")
    a = drivers.start("a", user={"user_id": ana_id, "user_info": {}})
    b = drivers.start("b", user={"user_id": bo_id})
    private, presence = unique("private-e2e-chat"), unique("presence-e2e-chat")
    public = unique("e2e-public-chat")
    for channel in (private, presence, public):
        a.subscribe(channel)
        b.subscribe(channel)
        b.command("bind", channel=channel, event="client-typing")
    assert a.event(presence, "pusher:member_added") == {"id": bo_id, "info": {}}

    payload = {"text": "tippt… ✓ 😀", "n": 1}
    a.command("trigger", channel=private, event="client-typing", data=payload)
    assert a.take("triggered", channel=private)["ok"] is True
    typed = b.take("bound", channel=private, event="client-typing")
    assert typed["data"] == payload and typed["metadata"] == {}, typed
    assert b.event(private, "client-typing") == payload

    a.command("trigger", channel=presence, event="client-typing", data=payload)
    typed = b.take("bound", channel=presence, event="client-typing")
    assert typed["data"] == payload and typed["metadata"] == {"user_id": ana_id}, typed

    # not echoed: the sender's next event on each channel is a later trigger
    for channel in (private, presence):
        assert b.sdk_ok("trigger", channel, "fence", {"c": channel}) == {}
        assert a.event(channel, "fence") == {"c": channel}

    # a public channel: pusher-js sends it, the server answers pusher:error and drops it
    a.command("trigger", channel=public, event="client-typing", data=payload)
    error = a.take("error")["error"]
    assert error == {"type": "PusherError", "data": {
        "code": None, "message": "Client events need a private or presence channel"}}, error
    assert a.sdk_ok("trigger", public, "fence", {}) == {}
    assert b.event(public, "fence") == {}  # b got no client-typing before it
    assert a.subscribe(unique("e2e-still-connected")) == {}
    a.close()
    b.close()


def test_signin_and_send_to_user(drivers: Drivers, pusher_cluster: Cluster) -> None:
    """pusher.signin() through the SDK's authenticateUser; then the SDKs' send-to-user
    reaches that user's connection only."""
    ana_id, bo_id = unique("ana"), unique("bo")
    a = drivers.start("a", signin={"id": ana_id, "user_info": {"name": "Ana ü"}})
    b = drivers.start("b", signin={"id": bo_id})
    for driver, user_id in ((a, ana_id), (b, bo_id)):
        driver.command("signin")
        auth = driver.take("auth", kind="user")
        user_data = auth["result"]["user_data"]
        assert json.loads(user_data)["id"] == user_id
        assert auth["result"]["auth"] == user_auth(driver.socket_id, user_data), auth
        assert driver.take("signin")["user_data"]["id"] == user_id
        driver.take("user_subscribed", channel=f"#server-to-user-{user_id}")

    assert b.sdk_ok("sendToUser", ana_id, "note", EVENT_DATA) == {}
    assert a.take("user_event", event="note")["data"] == EVENT_DATA
    python_sdk(pusher_cluster).send_to_user(ana_id, "py-note", {"from": "python ✓"})
    assert a.take("user_event", event="py-note")["data"] == {"from": "python ✓"}
    assert a.sdk_ok("sendToUser", bo_id, "note", {"for": "bo"}) == {}
    # b's first user event is its own: nothing of Ana's came
    assert b.take("user_event", event="note")["data"] == {"for": "bo"}
    a.close()
    b.close()


def test_wrong_auth_subscription_error(drivers: Drivers) -> None:
    """The app server signs with a wrong secret: pusher:subscription_error on the channel
    (PUSHER.md 7: AuthError 401), the connection stays."""
    user = {"user_id": unique("eve")}
    a = drivers.start("a", authSecret="not-the-secret", user=user)
    for channel in (unique("private-e2e-denied"), unique("presence-e2e-denied")):
        a.command("subscribe", channel=channel)
        error = a.take("event", channel=channel, event="pusher:subscription_error")["data"]
        assert error["type"] == "AuthError" and error["status"] == 401, error
        assert isinstance(error["error"], str) and error["error"], error
    assert a.subscribe(unique("e2e-public-ok")) == {}
    a.close()


@pytest.mark.parametrize("transport", ["ws", "xhr_streaming", "xhr_polling"], indirect=True)
def test_unknown_app_key(drivers: Drivers) -> None:
    """pusher:error 4001 then close 4001: pusher-js reports the error and gives up
    ("refused": disconnected, no retry)."""
    a = drivers.start("a", connect=False, key="no-such-key")
    error = a.take("error", timeout=5)["error"]  # at once: it is the server's first frame
    assert error == {"type": "WebSocketError", "error": {"type": "PusherError", "data": {
        "code": 4001, "message": "App key no-such-key does not exist"}}}, error
    state = a.until("state", current="disconnected")
    assert state["previous"] == "connecting", state
    a.command("close")
    assert a.exited() == 0


def test_python_sdk_triggers(drivers: Drivers, pusher_cluster: Cluster) -> None:
    """The Python SDK triggers to several channels, with socket_id, and in a batch."""
    a = drivers.start("a")
    b = drivers.start("b")
    c1, c2 = unique("e2e-py-1"), unique("private-e2e-py-2")
    for channel in (c1, c2):
        a.subscribe(channel)
    b.subscribe(c1)
    sdk = python_sdk(pusher_cluster)
    assert sdk.trigger([c1, c2], "py-event", EVENT_DATA) == {}
    assert a.event(c1, "py-event") == EVENT_DATA
    assert a.event(c2, "py-event") == EVENT_DATA
    assert b.event(c1, "py-event") == EVENT_DATA

    assert sdk.trigger(c1, "not-to-a", {"x": 1}, socket_id=a.socket_id) == {}
    assert b.event(c1, "not-to-a") == {"x": 1}
    assert sdk.trigger_batch([{"channel": c1, "name": "batched", "data": {"y": 2}},
                              {"channel": c2, "name": "batched", "data": "plain"}]) == {}
    assert a.event(c1, "batched") == {"y": 2}  # not "not-to-a" first
    assert a.event(c2, "batched") == "plain"
    assert b.event(c1, "batched") == {"y": 2}
    a.close()
    b.close()
