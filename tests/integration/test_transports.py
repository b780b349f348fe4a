"""The Pushy layer over every SockJS HTTP transport, against the real processes.

The layer above SockJS is transport-blind (PROTOCOL.md 2-5): subscribe, presence, triggers
and disconnect cleanup behave as over a WebSocket. Session rules of SockJS 0.3.3 that matter
to Pushy are checked here end to end: messages queued between polls keep their order, a
session nobody polls leaves its channels after `disconnect_delay`, a queue over its bound
closes the session, and one receiving request at a time (2010).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pushy_shard.core.session import MAX_QUEUED_BYTES
from tests.integration.harness import PREFIX, Cluster, PushyClient, channel_token, free_port
from tests.integration.http_client import (
    HTTP_TRANSPORTS,
    STREAMING,
    HttpPushyClient,
    session_id_for_front,
)

# Sessions outlive the pauses between a test's requests on a busy box by far; the test of
# expiry itself runs a server of its own with a short delay.
DISCONNECT_DELAY = 10.0
EXPIRY_DELAY = 1.0
RESPONSE_LIMIT = 4096  # small, so streams reopen during the tests (sockjs-protocol's value)
UNICODE = "héllo wörld 中文 😀 \u2028\u2029 </script> \x00 \ufeff"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """3 shards, 2 fronts; sessions expire after 10 s, streams end after 4 KiB."""
    sockjs = {"prefix": PREFIX, "heartbeat_delay": 25, "disconnect_delay": DISCONNECT_DELAY,
              "response_limit": RESPONSE_LIMIT}
    server = Cluster(tmp_path_factory.mktemp("transports"), sockjs=sockjs)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


async def join_presence(client: PushyClient | HttpPushyClient, channel: str, name: str
                        ) -> dict[str, Any]:
    data = json.dumps({"name": name})
    auth = channel_token(client.socket_id, channel, data)
    return await client.subscribe(channel, auth=auth, data=data)


async def expect_skipping(client: PushyClient, event: str, timeout: float = 15.0
                          ) -> dict[str, Any]:
    """The next `event`, skipping others (the channel's own events)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await client.next(timeout=max(0.1, deadline - time.monotonic()))
        if message.get("event") == event:
            return message


@pytest.mark.parametrize("transport", HTTP_TRANSPORTS)
async def test_pubsub_over_every_transport(cluster: Cluster, transport: str) -> None:
    channel = f"news-{transport}"
    client = await HttpPushyClient.connect(cluster, transport)
    watcher = await cluster.client()
    try:
        success = await client.subscribe(channel)
        assert success["data"]["channel"] == channel and len(success["data"]["memberId"]) == 8
        await watcher.subscribe(channel.upper())
        await client.call("subscribe", {"channel": channel}, "pushy:subscription-failed",
                          reason="Already subscribed to this channel")
        await client.call("bogus", {}, "pushy:error", code="200")
        for n in range(5):
            status, _ = await cluster.trigger(channel, "story", {"n": n, "text": UNICODE})
            assert status == 201
        for member in (client, watcher):
            for n in range(5):
                assert await member.next() == {"event": "story", "channel": channel,
                                               "data": {"n": n, "text": UNICODE}}
        # the sender's own trigger can exclude it, by the socketId pushy:connect gave it
        status, _ = await cluster.trigger(channel, "echo", {}, socket_id=client.socket_id)
        assert status == 201
        assert (await watcher.next())["event"] == "echo"
        await client.nothing_pending()
        await client.call("unsubscribe", {"channel": channel}, "pushy:subscription-end")
        status, _ = await cluster.trigger(channel, "after", {})
        assert (await watcher.next())["event"] == "after"
        await client.nothing_pending()
    finally:
        await client.close()
        await watcher.close()


@pytest.mark.parametrize("transport", list(STREAMING))
async def test_streams_reopen_at_response_limit_in_order(cluster: Cluster, transport: str
                                                         ) -> None:
    channel = f"long-{transport}"
    client = await HttpPushyClient.connect(cluster, transport)
    try:
        await client.subscribe(channel)
        for n in range(40):  # about 12 KiB: three times the response limit
            status, _ = await cluster.trigger(channel, "tick", {"n": n, "pad": "p" * 200})
            assert status == 201
        for n in range(40):
            assert (await client.next())["data"]["n"] == n
        assert client.receivers >= 3
    finally:
        await client.close()


@pytest.mark.parametrize("transport", ["xhr-streaming", "xhr-polling", "jsonp-polling"])
async def test_presence_between_websocket_and_http_clients_on_two_fronts(
        cluster: Cluster, transport: str) -> None:
    channel = f"private-mixed-{transport}"
    ws = await cluster.client(front=0)
    http = await HttpPushyClient.connect(cluster, transport,
                                         session_id_for_front(1, cluster.fronts))
    try:
        assert http.front == 1
        await join_presence(ws, channel, "ws")
        success = await join_presence(http, channel, "http")
        assert [m["name"] for m in success["data"]["presence"]] == ["ws", "http"]
        add = await ws.expect("pushy:presence-add")
        assert add["data"]["member"]["name"] == "http"
        await http.call("unsubscribe", {"channel": channel}, "pushy:subscription-end")
        quit_ = await ws.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "http"
        await join_presence(http, channel, "http again")
        await ws.expect("pushy:presence-add")
        await ws.close()  # and the other way round: the WebSocket leaves
        quit_ = await http.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "ws"
    finally:
        await ws.close()
        await http.close()


async def test_messages_queued_between_polls_keep_their_order(cluster: Cluster) -> None:
    client = await HttpPushyClient.connect(cluster, "xhr-polling", receive=False)
    try:
        await client.subscribe("queued")
        for n in range(20):
            status, _ = await cluster.trigger("queued", "item", {"n": n, "text": UNICODE})
            assert status == 201
        frames_before = client.receivers
        received = [(await client.next())["data"]["n"] for _ in range(20)]
        assert received == list(range(20))
        assert client.receivers - frames_before <= 3  # they came in one or two batches
    finally:
        await client.close()


async def test_a_session_nobody_polls_leaves_its_channels(tmp_path: Path) -> None:
    sockjs = {"prefix": PREFIX, "disconnect_delay": EXPIRY_DELAY}
    cluster = Cluster(tmp_path, workers=1, fronts=2, sockjs=sockjs)
    try:
        await _expires(cluster)
    finally:
        assert cluster.stop() == 0


async def _expires(cluster: Cluster) -> None:
    channel = "private-expiry"
    observer = await cluster.client(front=0)
    client = await HttpPushyClient.connect(cluster, "xhr-polling",
                                           session_id_for_front(1, cluster.fronts),
                                           receive=False)
    try:
        await join_presence(observer, channel, "observer")
        await join_presence(client, channel, "vanishing")
        await observer.expect("pushy:presence-add")
        stopped = time.monotonic()  # the client polls no more, and never says goodbye
        quit_ = await observer.expect("pushy:presence-quit", timeout=EXPIRY_DELAY + 10)
        assert quit_["data"]["member"]["name"] == "vanishing"
        assert time.monotonic() - stopped >= EXPIRY_DELAY - 0.5
        assert await client.send_raw(["{}"]) == 404  # the session is gone
    finally:
        await observer.close()
        await client.close()


async def test_dropped_receiver_leaves_at_once(cluster: Cluster) -> None:
    channel = "private-dropped"
    observer = await cluster.client(front=1)
    client = await HttpPushyClient.connect(cluster, "xhr-streaming",
                                           session_id_for_front(0, cluster.fronts))
    try:
        await join_presence(observer, channel, "observer")
        await join_presence(client, channel, "dropping")
        await observer.expect("pushy:presence-add")
        started = time.monotonic()
        await client.close()  # the browser tab closes: the stream's connection drops
        quit_ = await observer.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "dropping"
        assert time.monotonic() - started < DISCONNECT_DELAY
    finally:
        await observer.close()
        await client.close()


async def test_queue_over_its_bound_closes_the_session(cluster: Cluster) -> None:
    channel = "private-flood"
    observer = await cluster.client()
    client = await HttpPushyClient.connect(cluster, "xhr-polling", receive=False)
    try:
        await join_presence(observer, channel, "observer")
        await join_presence(client, channel, "flooded")
        await observer.expect("pushy:presence-add")
        big = "x" * 60_000
        for n in range(MAX_QUEUED_BYTES // len(big) + 3):  # past 1 MiB, nobody polling
            status, _ = await cluster.trigger(channel, "big", {"n": n, "s": big})
            assert status == 201
        quit_ = await expect_skipping(observer, "pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "flooded"
        # the queued messages are dropped; every poll now gets the close frame and reason
        for _ in range(2):
            assert await client.frame() == 'c[1008,"Session queue full"]'
    finally:
        await observer.close()
        await client.close()


async def test_one_receiving_request_at_a_time(cluster: Cluster) -> None:
    client = await HttpPushyClient.connect(cluster, "xhr-streaming")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(client.url + "/xhr_streaming") as second:
                body = await second.read()  # ends right after the close frame
            assert body == b"h" * 2048 + b'\nc[2010,"Another connection still open"]\n'
            async with http.post(client.url + "/xhr") as poll:
                assert await poll.read() == b'c[2010,"Another connection still open"]\n'
        await client.nothing_pending()  # the first receiver still has the session
    finally:
        await client.close()


async def test_client_messages_are_handled_in_order(cluster: Cluster) -> None:
    client = await HttpPushyClient.connect(cluster, "xhr-streaming")
    try:
        # one channel (one shard, one ordered link): out of order, an unsubscribe would come
        # before its subscribe and fail
        commands = [json.dumps({"command": command, "data": {"channel": "ordered"}})
                    for command in ["subscribe", "unsubscribe"] * 5]
        assert await client.send_raw(commands) == 204
        for _ in range(5):
            await client.expect("pushy:subscription-success", channel="ordered")
            await client.expect("pushy:subscription-end", channel="ordered")
    finally:
        await client.close()


async def test_many_sessions_on_both_fronts(cluster: Cluster) -> None:
    """Requests of one session land on either front; they all reach the session's front."""
    clients = await asyncio.gather(*(
        HttpPushyClient.connect(cluster, transport) for transport in HTTP_TRANSPORTS * 2))
    try:
        assert {c.front for c in clients} == {0, 1}
        for client in clients:
            await client.subscribe("everyone")
        status, _ = await cluster.trigger("everyone", "hi", {"x": "ü"})
        assert status == 201
        for client in clients:
            assert (await client.next())["data"] == {"x": "ü"}
    finally:
        await asyncio.gather(*(client.close() for client in clients))


async def test_sessions_relay_over_tcp_links(tmp_path: Path) -> None:
    """With `link.transport` tcp the fronts relay session requests over loopback ports."""
    def link() -> dict[str, Any]:  # 3 shards, 2 fronts' relays, the hooks process's 2 ports
        return {"transport": "tcp", "tcp_port": free_port(3 + 2 + 2),
                "directory": tempfile.mkdtemp(prefix="ps-", dir="/tmp")}

    server = Cluster(tmp_path, link=link)
    try:
        clients = [await HttpPushyClient.connect(server, transport,
                                                 session_id_for_front(front, server.fronts))
                   for front in (0, 1) for transport in ("xhr-streaming", "xhr-polling")]
        try:
            assert [c.front for c in clients] == [0, 0, 1, 1]
            for client in clients:
                await client.subscribe("over-tcp")
            for n in range(3):
                status, _ = await server.trigger("over-tcp", "n", {"n": n})
                assert status == 201
            for client in clients:
                assert [(await client.next())["data"]["n"] for _ in range(3)] == [0, 1, 2]
        finally:
            await asyncio.gather(*(client.close() for client in clients))
    finally:
        assert server.stop() == 0
