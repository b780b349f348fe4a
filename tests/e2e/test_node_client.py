"""sockjs-client (npm, 1.x) in Node against the real server (3 shards, 2 fronts), over every
transport it can use outside a browser. Its Node build enables websocket (faye-websocket),
xhr-streaming and xhr-polling (Node's http) and eventsource (the `eventsource` package it
depends on: no global polyfill needed); the others need a DOM."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest

from tests.e2e import tools
from tests.e2e.conftest import NodeTools
from tests.integration.harness import Cluster, channel_token

pytestmark = pytest.mark.timeout(300)  # the first test also fills the npm cache

NODE_TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling", "eventsource"]


class Clients:
    """Starts node_client.js processes; stops whatever is left at teardown."""

    def __init__(self, node_tools: NodeTools, cluster: Cluster) -> None:
        self.node_tools = node_tools
        self.cluster = cluster
        self.started: list[tools.LineClient] = []

    def start(self, transport: str, name: str = "") -> tools.LineClient:
        url = self.cluster.base_url + self.cluster.prefix
        client = tools.LineClient(
            [self.node_tools.node, str(tools.HERE / "node_client.js"), url, transport],
            self.node_tools.env(), name or f"node {transport}", self.cluster,
        )
        self.started.append(client)
        return client


@pytest.fixture
def clients(node_tools: NodeTools, cluster: Cluster) -> Iterator[Clients]:
    made = Clients(node_tools, cluster)
    yield made
    for client in made.started:
        client.stop()


@pytest.mark.parametrize("transport", NODE_TRANSPORTS)
def test_pubsub_round_trip(clients: Clients, cluster: Cluster, transport: str) -> None:
    """Connect, subscribe, a triggered event with non-ASCII data arrives intact, leave."""
    client = clients.start(transport)
    channel = f"e2e-node-{transport}-{secrets.token_hex(3)}"
    tools.pubsub_round_trip(cluster, client, transport, channel)


@pytest.mark.parametrize("transport", NODE_TRANSPORTS)
def test_event_burst_in_order(clients: Clients, cluster: Cluster, transport: str) -> None:
    """Events well past response_limit (4K here) arrive whole and in order: streaming
    transports reopen their request meanwhile, polling ones poll many times."""
    client = clients.start(transport)
    tools.connect(client, transport)
    channel = f"e2e-burst-{secrets.token_hex(3)}"
    client.send("subscribe", {"channel": channel})
    client.expect("pushy:subscription-success", channel=channel)
    count = 40
    for n in range(count):
        data = {"n": n, "text": f"événement {n} ✓ 😀 " + "ü" * 300}
        status, body = tools.trigger(cluster, channel, "burst", data)
        assert status == 201, body
    for n in range(count):
        message = client.next()
        assert message["event"] == "burst" and message["data"]["n"] == n, message
        assert message["data"]["text"].startswith(f"événement {n} ✓ 😀 üü"), message
    client.close()


@pytest.mark.parametrize(("first", "second"), [("websocket", "xhr-streaming"),
                                               ("xhr-polling", "eventsource")])
def test_presence_across_transports(clients: Clients, cluster: Cluster, first: str,
                                    second: str) -> None:
    """Two clients on different transports share a presence channel: join, event, quit."""
    channel = f"private-e2e-room-{secrets.token_hex(3)}"
    members = {}
    for transport, name in ((first, "Ana ü"), (second, "Bő 😀")):
        client = clients.start(transport)
        socket_id = tools.connect(client, transport)
        presence = json.dumps({"name": name}, ensure_ascii=False)
        client.send("subscribe", {"channel": channel, "data": presence,
                                  "auth": channel_token(socket_id, channel, presence)})
        success = client.expect("pushy:subscription-success", channel=channel)
        members[transport] = (client, success["data"]["memberId"])
        names = [member["name"] for member in success["data"]["presence"]]
        assert names == ["Ana ü", "Bő 😀"][: len(names)] and len(names) == len(members), success
    a, a_id = members[first]
    b, b_id = members[second]
    added = a.expect("pushy:presence-add")
    assert added["channel"] == channel, added
    assert added["data"]["member"]["memberId"] == b_id
    assert added["data"]["member"]["name"] == "Bő 😀"

    status, body = tools.trigger(cluster, channel, "hello", tools.EVENT_DATA)
    assert status == 201, body
    for client in (a, b):
        assert client.next() == {"event": "hello", "channel": channel, "data": tools.EVENT_DATA}

    b.close()  # leaving without unsubscribing: the server sees the session end
    quit_ = a.expect("pushy:presence-quit", timeout=tools.DISCONNECT_TIMEOUT)
    assert quit_["channel"] == channel and quit_["data"]["member"]["memberId"] == b_id, quit_
    a.send("unsubscribe", {"channel": channel})
    a.expect("pushy:subscription-end", channel=channel)
    assert a_id != b_id
    a.close()
