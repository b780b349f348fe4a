"""Recovery across the front-shard link, unit-tested on the in-memory pair (tests/pair/net.py):
a shard restart, a front restart, a stalled front and replays (ARCHITECTURE.md 6, README
"When a process dies"). The process-kill integration tests (tests/integration/test_faults.py)
check the same with real processes."""

from __future__ import annotations

from pushy_shard.core.routing import shard_for
from tests.pair.net import Client, MemoryNet

ROOM = "private-room"


def names(success: dict) -> list[str]:
    return [m["name"] for m in success["data"]["presence"]]


def one(client: Client, event: str) -> dict:
    got = client.events(event)
    assert len(got) == 1, got
    return got[0]


async def joined(net: MemoryNet, client: Client, name: str, channel: str = ROOM) -> dict:
    client.subscribe(channel, {"name": name})
    await net.settle()
    return one(client, "pushy:subscription-success")


async def test_a_pair_serves_presence_across_fronts() -> None:
    net = await MemoryNet.start()
    ann, bob = net.fronts[0].client(), net.fronts[1].client()
    assert one(ann, "pushy:connect")["data"]["socketId"] == ann.sid
    await joined(net, ann, "ann")
    assert names(await joined(net, bob, "bob")) == ["ann", "bob"]
    assert one(ann, "pushy:presence-add")["data"]["member"]["name"] == "bob"


async def test_a_restarted_shard_gets_its_members_back_in_join_order() -> None:
    net = await MemoryNet.start()
    shard = shard_for(ROOM, 2)
    clients = [net.fronts[0].client(), net.fronts[1].client(), net.fronts[0].client()]
    for client, name in zip(clients, ["ann", "bob", "cid"], strict=True):
        await joined(net, client, name)
    for client in clients:
        client.take()
    incarnation = net.shards[shard].incarnation
    await net.restart_shard(shard)
    assert net.shards[shard].incarnation != incarnation
    assert not net.shards[shard].fronts.recovering  # every configured front replayed
    dan = net.fronts[1].client()
    assert names(await joined(net, dan, "dan")) == ["ann", "bob", "cid", "dan"]
    for client in clients:  # nothing else: the replay itself was silent
        assert [m["event"] for m in client.take()] == ["pushy:presence-add"]


async def test_requests_sent_while_a_shard_restarts_are_applied_once() -> None:
    net = await MemoryNet.start()
    shard = shard_for("news", 2)
    reader = net.fronts[0].client()
    reader.subscribe("news")
    await net.settle()
    reader.take()
    await net.restart_shard(shard, away=(1,))  # front 1's link is down: its requests wait
    writer = net.fronts[1].client()
    writer.command("unsubscribe", channel="news")  # not a member: the shard answers 403
    writer.subscribe("news")
    await net.settle()
    assert writer.take() == [one_connect(writer)]  # nothing answered yet
    net.fronts[1].links.connected(shard)
    await net.settle()
    got = writer.take()
    assert [m["event"] for m in got] == ["pushy:error", "pushy:subscription-success"]
    assert got[0]["data"]["code"] == "403"
    assert len(net.shards[shard].channels.get("news").members) == 2  # type: ignore[union-attr]


def one_connect(client: Client) -> dict:
    return {"event": "pushy:connect", "data": {"socketId": client.sid, "protocol": "websocket"}}


async def test_a_restarted_fronts_members_leave_with_presence_quit() -> None:
    net = await MemoryNet.start()
    ann, bob = net.fronts[0].client(), net.fronts[1].client()
    await joined(net, ann, "ann")
    await joined(net, bob, "bob")
    ann.take()
    await net.restart_front(1)
    quit_ = one(ann, "pushy:presence-quit")
    assert quit_["data"]["member"]["name"] == "bob"
    cid = net.fronts[1].client()
    assert names(await joined(net, cid, "cid")) == ["ann", "cid"]


async def test_a_stalled_front_is_given_up_then_rejoins() -> None:
    net = await MemoryNet.start()
    silence = net.config.timeouts.front_silence
    ann, bob = net.fronts[0].client(), net.fronts[1].client()
    await joined(net, ann, "ann")
    await joined(net, bob, "bob")
    ann.take()
    net.fronts[1].stalled = True
    await net.tick(silence)  # exactly the timeout: not yet
    assert ann.take() == []
    await net.tick(1.0)
    assert one(ann, "pushy:presence-quit")["data"]["member"]["name"] == "bob"
    net.fronts[1].resume()  # its Pings arrive: the shard asks for a replay
    await net.settle()
    await net.tick(0.5)
    assert one(ann, "pushy:presence-add")["data"]["member"]["name"] == "bob"
    cid = net.fronts[0].client()
    assert names(await joined(net, cid, "cid")) == ["ann", "bob", "cid"]


async def test_a_front_that_keeps_pinging_is_never_given_up() -> None:
    net = await MemoryNet.start()
    ann, bob = net.fronts[0].client(), net.fronts[1].client()
    await joined(net, ann, "ann")
    await joined(net, bob, "bob")
    ann.take()
    for _ in range(30):
        await net.tick(1.0)
    assert ann.take() == []


async def test_a_member_leaving_during_a_restart_is_replayed_then_leaves() -> None:
    """A connection that closes while its Leave cannot reach the shard stays in the
    replay until the shard confirms the Leave, so the others see its presence-quit."""
    net = await MemoryNet.start()
    shard = shard_for(ROOM, 2)
    ann, bob = net.fronts[0].client(), net.fronts[1].client()
    await joined(net, ann, "ann")
    await joined(net, bob, "bob")
    ann.take()
    net.fronts[1].links.disconnected(shard)
    bob.close()  # its Leave waits for the link
    await net.restart_shard(shard)  # the new shard gets bob in front 1's replay
    net.fronts[1].links.connected(shard)
    await net.settle()
    assert one(ann, "pushy:presence-quit")["data"]["member"]["name"] == "bob"
    assert not net.fronts[1].front.hub.leaving  # confirmed, no longer replayed
    cid = net.fronts[0].client()
    assert names(await joined(net, cid, "cid")) == ["ann", "cid"]


async def test_a_new_shard_holds_requests_until_every_front_replayed() -> None:
    net = await MemoryNet.start()
    shard = shard_for(ROOM, 2)
    ann = net.fronts[0].client()
    await joined(net, ann, "ann")
    await net.restart_shard(shard, away=(0,))  # front 0 cannot replay yet
    bob = net.fronts[1].client()
    bob.subscribe(ROOM, {"name": "bob"})
    await net.settle()
    assert bob.events("pushy:subscription-success") == []  # held back: ann is not replayed
    net.fronts[0].links.connected(shard)
    await net.settle()
    assert names(one(bob, "pushy:subscription-success")) == ["ann", "bob"]


async def test_the_recovery_grace_lets_requests_through_without_a_front() -> None:
    net = await MemoryNet.start()
    shard = shard_for("lonely", 2)
    await net.restart_shard(shard, away=(0,))  # front 0 stays away
    bob = net.fronts[1].client()
    bob.subscribe("lonely")
    await net.settle()
    assert bob.events("pushy:subscription-success") == []
    net.shards[shard].end_recovery()  # the grace ran out
    await net.settle()
    assert len(bob.events("pushy:subscription-success")) == 1


async def test_a_request_nobody_answers_fails_after_its_timeout() -> None:
    net = await MemoryNet.start()
    shard = shard_for("news", 2)
    client = net.fronts[0].client()
    client.take()
    net.fronts[0].links.disconnected(shard)  # the shard is gone for good
    client.subscribe("news")
    await net.tick(net.config.timeouts.command - 1)
    assert client.take() == []
    await net.tick(2)
    assert one(client, "pushy:error")["data"]["code"] == "503"
