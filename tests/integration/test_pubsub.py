"""End to end against the real processes (3 shards, 2 fronts): PROTOCOL.md 3-5."""

from __future__ import annotations

import json

from pushy_shard.core.routing import shard_for
from tests.integration.harness import Cluster, channel_token


def channels_on_distinct_shards(count: int, shards: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < min(count, shards):
        name = f"room-{n}"
        found.setdefault(shard_for(name, shards), name)
        n += 1
    return list(found.values())


async def test_channels_on_every_shard_deliver_triggers(cluster: Cluster) -> None:
    names = channels_on_distinct_shards(3, cluster.workers)
    assert len({shard_for(n, cluster.workers) for n in names}) == 3
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        for name in names:
            await a.subscribe(name)
            await b.subscribe(name.upper())  # same channel, display name is a's spelling
        for name in names:
            status, body = await cluster.trigger(name, "news", {"n": name})
            assert (status, body) == (201, {"status": {"code": 201, "message": "Ok"}})
            for client in (a, b):
                event = await client.next()
                assert event == {"event": "news", "channel": name, "data": {"n": name}}
    finally:
        await a.close()
        await b.close()


async def test_trigger_without_members_is_200(cluster: Cluster) -> None:
    status, body = await cluster.trigger("nobody-here", "news", {})
    assert (status, body) == (200, {"status": {"code": 200, "message": "Ok"}})


async def test_socket_id_exclusion_across_fronts(cluster: Cluster) -> None:
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    c = await cluster.client(front=1)
    try:
        for client in (a, b, c):
            await client.subscribe("chat")
        status, _ = await cluster.trigger("chat", "said", {"x": 1}, socket_id=b.socket_id)
        assert status == 201
        assert (await a.next())["event"] == "said"
        assert (await c.next())["event"] == "said"
        await b.nothing_pending()
    finally:
        for client in (a, b, c):
            await client.close()


async def test_presence_across_fronts_in_order(cluster: Cluster) -> None:
    channel = "private-presence-room"
    clients = [await cluster.client(front=i % 2) for i in range(4)]
    try:
        joined = []
        for n, client in enumerate(clients):
            data = json.dumps({"name": f"user{n}"})
            auth = channel_token(client.socket_id, channel, data)
            success = await client.subscribe(channel, auth=auth, data=data)
            presence = success["data"]["presence"]
            assert [m["name"] for m in presence] == [f"user{k}" for k in range(n + 1)]
            joined.append(success["data"]["memberId"])
            for earlier in clients[:n]:
                add = await earlier.expect("pushy:presence-add")
                assert add["channel"] == channel
                assert add["data"]["member"]["name"] == f"user{n}"
                assert add["data"]["member"]["memberId"] == joined[-1]
        assert len(set(joined)) == 4
        # the first one leaves by unsubscribing, the second by disconnecting
        await clients[0].call("unsubscribe", {"channel": channel}, "pushy:subscription-end")
        for other in clients[1:]:
            quit_ = await other.expect("pushy:presence-quit")
            assert quit_["data"]["member"]["name"] == "user0"
        await clients[1].close()
        for other in clients[2:]:
            quit_ = await other.expect("pushy:presence-quit")
            assert quit_["data"]["member"]["name"] == "user1"
    finally:
        for client in clients:
            await client.close()


async def test_disconnect_leaves_every_channel(cluster: Cluster) -> None:
    names = [f"private-{n}" for n in channels_on_distinct_shards(3, cluster.workers)]
    observer = await cluster.client(front=0)
    leaver = await cluster.client(front=1)
    try:
        for client in (observer, leaver):
            for name in names:
                data = json.dumps({"who": client.socket_id})
                auth = channel_token(client.socket_id, name, data)
                await client.subscribe(name, auth=auth, data=data)
        for _ in names:
            await observer.expect("pushy:presence-add")
        await leaver.close()
        quits = [await observer.expect("pushy:presence-quit") for _ in names]
        assert sorted(q["channel"] for q in quits) == sorted(names)
        assert {q["data"]["member"]["who"] for q in quits} == {leaver.socket_id}
        for name in names:  # the last member leaving removes the channel (3.4)
            await observer.call("unsubscribe", {"channel": name}, "pushy:subscription-end")
            await observer.call("unsubscribe", {"channel": name}, "pushy:error", code="404")
    finally:
        await observer.close()
        await leaver.close()
