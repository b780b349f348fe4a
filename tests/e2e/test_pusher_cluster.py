"""pusher-js 8.6 (Node build, WebSocket) against two instances sharing a real redis-server
(SCALEOUT.md): the npm SDK triggers through one instance and members on both get the event;
presence is one list (a user on both instances is one member); a client event crosses
instances."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.conftest import NodeTools
from tests.e2e.pusher_tools import EVENT_DATA, PusherNode
from tests.e2e.test_pusher_node import unique
from tests.integration.harness import Cluster
from tests.integration.pusher_client import APPS
from tests.integration.redis_server import RedisServer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Cluster]]:
    redis = RedisServer()
    servers: list[Cluster] = []
    try:
        for node in ("e2e-a", "e2e-b"):
            server = Cluster(tmp_path_factory.mktemp(node), apps=APPS, workers=2, fronts=1,
                             cluster={"redis": redis.url, "node": node, "lease_seconds": 2})
            server.log.wait_for(r"in the cluster as", count=2)
            servers.append(server)
        yield servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()
        redis.stop()


def driver(node_tools: NodeTools, server: Cluster, name: str, **config: object) -> PusherNode:
    made = PusherNode(node_tools, server, "ws", f"pusher-js {name}", **config)
    made.connected()
    return made


def test_pusher_js_on_two_instances(node_tools: NodeTools,
                                    pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    channel, room = unique("e2e-both"), unique("presence-e2e-both")
    ana = {"user_id": unique("ana"), "user_info": {"name": "Ana"}}
    bo = {"user_id": unique("bo"), "user_info": {"name": "Bo"}}
    on_a = driver(node_tools, a, "a", user=ana)
    on_b = driver(node_tools, b, "b", user=bo)
    ana_b = driver(node_tools, b, "ana on b", user=ana)
    try:
        for member in (on_a, on_b):
            assert member.subscribe(channel) == {}
        # the npm SDK triggers through A; the member on B gets it too
        assert on_a.sdk_ok("trigger", channel, "news", EVENT_DATA,
                           {"info": "subscription_count"}) == {
            "channels": {channel: {"subscription_count": 2}}}
        assert on_a.event(channel, "news") == EVENT_DATA
        assert on_b.event(channel, "news") == EVENT_DATA

        joined = on_a.subscribe(room)
        assert joined["count"] == 1
        joined = on_b.subscribe(room)
        assert joined["count"] == 2 and set(joined["members"]) == {ana["user_id"],
                                                                    bo["user_id"]}
        assert on_a.event(room, "pusher:member_added") == {"id": bo["user_id"],
                                                            "info": bo["user_info"]}
        # Ana again, on B: one member still, no member_added anywhere (the next event is
        # this trigger's)
        joined = ana_b.subscribe(room)
        assert joined["count"] == 2
        assert on_b.sdk_ok("trigger", room, "fence", {"n": 1}) == {}
        assert on_a.event(room, "fence") == {"n": 1}
        assert on_b.event(room, "fence") == {"n": 1}
        assert ana_b.event(room, "fence") == {"n": 1}

        # a client event from B reaches A, not its sender
        on_b.command("trigger", channel=room, event="client-wave", data={"hi": "from b"})
        assert on_a.event(room, "client-wave") == {"hi": "from b"}
        assert ana_b.event(room, "client-wave") == {"hi": "from b"}
    finally:
        for member in (on_a, on_b, ana_b):
            member.close()
