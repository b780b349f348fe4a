"""Two complete instances sharing channels through a real redis-server (SCALEOUT.md): events
from either reach the members on both, in one order, with socket_id exclusion and Pushy's
201/200 from the cluster-wide occupancy, for the Pushy and the Pusher protocol. The
instances differ in their shard counts (each host routes with its own crc32 % N)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import pytest

from tests.integration.harness import Cluster, PushyClient, channel_token
from tests.integration.pusher_client import APP_ID, APPS, KEY, SECRET, PusherClient
from tests.integration.redis_server import RedisServer

LEASE = 2  # seconds: the product's lease, short so that a dead instance leaves in seconds


def instance(directory: Path, redis_url: str, node: str, workers: int) -> Cluster:
    server = Cluster(directory, workers=workers, fronts=1, apps=APPS,
                     cluster={"redis": redis_url, "node": node, "lease_seconds": LEASE})
    server.log.wait_for(r"in the cluster as", count=workers)
    return server


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory,
         redis_server: RedisServer) -> Iterator[tuple[Cluster, Cluster]]:
    a = instance(tmp_path_factory.mktemp("a"), redis_server.url, "host-a", 2)
    b = instance(tmp_path_factory.mktemp("b"), redis_server.url, "host-b", 3)
    yield a, b
    assert a.stop() == 0, "\n".join(a.log.lines[-30:])
    assert b.stop() == 0, "\n".join(b.log.lines[-30:])


def sdk(server: Cluster) -> pusher.Pusher:
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1",
                         port=server.port, ssl=False)


async def events(client: PushyClient | PusherClient, count: int, event: str = "e"
                 ) -> list[Any]:
    """The data of the next `count` events named `event` (others skipped)."""
    out = []
    while len(out) < count:
        message = await client.next()
        if message.get("event") == event:
            out.append(message["data"])
    return out


# -- the Pushy protocol -----------------------------------------------------------------------


async def test_pushy_trigger_on_either_instance_reaches_members_on_both(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    on_a, on_b = await a.client(), await b.client()
    try:
        await on_a.subscribe("both")
        await on_b.subscribe("both")
        assert (await a.trigger("both", "e", {"n": 1}))[0] == 201
        assert (await b.trigger("both", "e", {"n": 2}))[0] == 201
        assert await events(on_a, 2) == [{"n": 1}, {"n": 2}]
        assert await events(on_b, 2) == [{"n": 1}, {"n": 2}]
    finally:
        await on_a.close()
        await on_b.close()


async def test_pushy_201_and_200_come_from_the_cluster_wide_occupancy(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    assert (await a.trigger("nobody-anywhere", "e", {}))[0] == 200
    only_b = await b.client()
    try:
        await only_b.subscribe("only-b")
        # A has no member of it: its 201 can only come from Redis
        assert (await a.trigger("only-b", "e", {"from": "a"}))[0] == 201
        assert await events(only_b, 1) == [{"from": "a"}]
    finally:
        await only_b.close()


async def test_after_the_last_member_left_either_instance_answers_200(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    member = await a.client()
    try:
        await member.subscribe("emptied")
        assert (await b.trigger("emptied", "e", {"n": 1}))[0] == 201
        assert await events(member, 1) == [{"n": 1}]
        await member.call("unsubscribe", {"channel": "emptied"}, "pushy:subscription-end")
        assert (await b.trigger("emptied", "e", {}))[0] == 200
        assert (await a.trigger("emptied", "e", {}))[0] == 200
        await member.nothing_pending()
    finally:
        await member.close()


async def test_one_order_per_channel_on_every_instance(pair: tuple[Cluster, Cluster]) -> None:
    """Triggers sent at once through both instances: every member sees one sequence."""
    a, b = pair
    members = [await a.client(), await a.client(), await b.client(), await b.client()]
    try:
        for member in members:
            await member.subscribe("ordered")
        sends = [(a if i % 2 else b).trigger("ordered", "e", {"i": i}) for i in range(60)]
        assert {status for status, _ in await asyncio.gather(*sends)} == {201}
        seen = [await events(member, 60) for member in members]
        assert sorted(x["i"] for x in seen[0]) == list(range(60))
        assert all(order == seen[0] for order in seen[1:])
    finally:
        for member in members:
            await member.close()


async def test_socket_id_exclusion_across_instances(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    sender, other = await a.client(), await b.client()
    try:
        await sender.subscribe("excluding")
        await other.subscribe("excluding")
        assert (await b.trigger("excluding", "e", {"x": 1}, socket_id=sender.socket_id))[0] == 201
        assert (await b.trigger("excluding", "e", {"x": 2}))[0] == 201
        assert await events(other, 2) == [{"x": 1}, {"x": 2}]
        assert await events(sender, 1) == [{"x": 2}]  # the first was not for it
    finally:
        await sender.close()
        await other.close()


async def test_private_channel_across_instances(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    on_a, on_b = await a.client(), await b.client()
    try:
        for client in (on_a, on_b):
            await client.subscribe("private-room",
                                   auth=channel_token(client.socket_id, "private-room"))
        assert (await a.trigger("private-room", "e", {"m": "hello"}))[0] == 201
        assert await events(on_b, 1) == [{"m": "hello"}]
        assert await events(on_a, 1) == [{"m": "hello"}]
    finally:
        await on_a.close()
        await on_b.close()


# -- the Pusher protocol ------------------------------------------------------------------------


async def test_pusher_sdk_trigger_reaches_both_instances(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    on_a, on_b = await PusherClient.open(a), await PusherClient.open(b)
    try:
        for client in (on_a, on_b):
            answer = await client.subscribe("news")
            assert answer["event"] == "pusher_internal:subscription_succeeded"
        await asyncio.to_thread(sdk(a).trigger, "news", "story", {"id": 1})
        await asyncio.to_thread(sdk(b).trigger, "news", "story", {"id": 2})
        for client in (on_a, on_b):
            assert await events(client, 2, "story") == [{"id": 1}, {"id": 2}]
        # the SDK's socket_id exclusion, across instances
        await asyncio.to_thread(sdk(b).trigger, "news", "story", {"id": 3}, on_a.socket_id)
        await asyncio.to_thread(sdk(b).trigger, "news", "story", {"id": 4})
        assert await events(on_b, 2, "story") == [{"id": 3}, {"id": 4}]
        assert await events(on_a, 1, "story") == [{"id": 4}]
    finally:
        await on_a.close()
        await on_b.close()


async def test_pusher_client_event_reaches_the_other_instance(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    sender, receiver = await PusherClient.open(a), await PusherClient.open(b)
    try:
        for client in (sender, receiver):
            answer = await client.subscribe("private-chat")
            assert answer["event"] == "pusher_internal:subscription_succeeded"
        await sender.send("client-typing", {"who": "a"}, channel="private-chat")
        assert await events(receiver, 1, "client-typing") == [{"who": "a"}]
        await sender.nothing_pending()  # not echoed to its sender
    finally:
        await sender.close()
        await receiver.close()


# -- health and metrics -------------------------------------------------------------------------


async def test_metrics_show_the_cluster_links(pair: tuple[Cluster, Cluster]) -> None:
    a, _ = pair
    async with aiohttp.ClientSession() as http, http.get(f"{a.base_url}/metrics") as response:
        text = await response.text()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines()
                   if line.startswith(("pushy_redis_", "pushy_cluster_")))
    assert float(samples["pushy_redis_links_up"]) == a.workers
    assert float(samples["pushy_cluster_messages_out_total"]) > 0
    assert float(samples["pushy_cluster_messages_in_total"]) > 0
    assert float(samples["pushy_redis_pipelines_total"]) > 0
    assert float(samples["pushy_cluster_gaps_total"]) == 0


# -- presence, one list across instances ---------------------------------------------------------


async def join_presence(client: PushyClient, channel: str, name: str) -> dict[str, Any]:
    data = json.dumps({"name": name})
    answer = await client.subscribe(channel, auth=channel_token(client.socket_id, channel, data),
                                    data=data)
    assert answer["event"] == "pushy:subscription-success", answer
    return answer["data"]


async def presence_event(client: PushyClient) -> tuple[str, str]:
    message = await client.next()
    assert message["event"] in ("pushy:presence-add", "pushy:presence-quit"), message
    return message["event"].rpartition("-")[2], message["data"]["member"]["name"]


async def test_pushy_presence_is_one_list_across_instances(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    room = "private-lobby"
    ann, bob, cid = await a.client(), await b.client(), await a.client()
    try:
        first = await join_presence(ann, room, "ann")
        assert [m["name"] for m in first["presence"]] == ["ann"]
        second = await join_presence(bob, room, "bob")
        assert [m["name"] for m in second["presence"]] == ["ann", "bob"]
        assert await presence_event(ann) == ("add", "bob")
        third = await join_presence(cid, room, "cid")
        assert [m["name"] for m in third["presence"]] == ["ann", "bob", "cid"]
        ids = [m["memberId"] for m in third["presence"]]
        assert len(set(ids)) == 3 and third["memberId"] == ids[2]
        assert await presence_event(ann) == ("add", "cid")
        assert await presence_event(bob) == ("add", "cid")
        await bob.close()
        assert await presence_event(ann) == ("quit", "bob")
        assert await presence_event(cid) == ("quit", "bob")
        for member in (ann, cid):
            await member.nothing_pending()
    finally:
        for client in (ann, cid):
            await client.close()


async def test_pushy_presence_under_random_joins_and_leaves_on_both(
        pair: tuple[Cluster, Cluster]) -> None:
    """Every member's view (its list, then the events it got, in order) ends equal to the
    channel's members, with no event told twice or of someone not there."""
    a, b = pair
    room = "private-churn"
    rng = random.Random(7)
    present: dict[str, PushyClient] = {}
    views: dict[str, set[str]] = {}
    try:
        for step in range(40):
            if present and rng.random() < 0.4:
                name = rng.choice(sorted(present))
                views.pop(name)
                await present.pop(name).close()
            else:
                name = f"m{step}"
                client = await (a if rng.random() < 0.5 else b).client()
                joined = await join_presence(client, room, name)
                views[name] = {m["name"] for m in joined["presence"]}
                present[name] = client
        expected = {*present, "last", "last-b"}
        final, other = await a.client(), await b.client()
        listed = await join_presence(final, room, "last")
        assert {m["name"] for m in listed["presence"]} == {*present, "last"}
        listed_b = await join_presence(other, room, "last-b")
        assert {m["name"] for m in listed_b["presence"]} == expected
        for name, client in present.items():  # the events each got, in order
            view = views[name]
            while not {"last", "last-b"} <= view:
                kind, who = await presence_event(client)
                if kind == "add":
                    assert who not in view, f"{name} told twice of {who}"
                    view.add(who)
                else:
                    assert who in view, f"{name} told of {who} leaving, never joined"
                    view.discard(who)
            assert view == expected, name
            await client.nothing_pending()
        await final.close()
        await other.close()
    finally:
        for client in present.values():
            await client.close()


async def test_pusher_presence_counts_users_across_instances(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    room = "presence-team"
    alice_a = await PusherClient.open(a)
    bob_b = await PusherClient.open(b)
    alice_b = await PusherClient.open(b)
    try:
        ok = await alice_a.subscribe(room, {"user_id": "alice", "user_info": {"n": 1}})
        assert ok["data"]["presence"]["ids"] == ["alice"]
        ok = await bob_b.subscribe(room, {"user_id": 7, "user_info": {"n": 2}})
        assert ok["data"]["presence"]["ids"] == ["alice", 7]
        assert ok["data"]["presence"]["count"] == 2
        added = await alice_a.expect("pusher_internal:member_added")
        assert added["data"] == {"user_id": 7, "user_info": {"n": 2}}
        # alice's second connection, on the other instance: no member_added anywhere
        ok = await alice_b.subscribe(room, {"user_id": "alice", "user_info": {"n": 1}})
        assert ok["data"]["presence"]["ids"] == ["alice", 7]
        await alice_a.nothing_pending()
        await bob_b.nothing_pending()
        # her first connection goes: she is still there through the second
        await alice_a.close()
        await bob_b.nothing_pending()
        await alice_b.close()
        removed = await bob_b.expect("pusher_internal:member_removed")
        assert removed["data"] == {"user_id": "alice"}
    finally:
        await bob_b.close()


# -- the query API, cluster-wide ---------------------------------------------------------------


async def ask(server: Cluster, method: str, *args: Any) -> Any:
    return await asyncio.to_thread(getattr(sdk(server), method), *args)


async def test_queries_answer_for_every_instance(pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    on_a = [await PusherClient.open(a) for _ in range(2)]
    on_b = [await PusherClient.open(b) for _ in range(3)]
    try:
        for client in (*on_a, *on_b[:2]):
            await client.subscribe("q-news")
        await on_b[2].subscribe("q-only-b")
        users = [("ann", on_a[0]), ("bob", on_b[0]), ("ann", on_b[1])]
        for user, client in users:
            answer = await client.subscribe("presence-q", {"user_id": user})
            assert answer["event"] == "pusher_internal:subscription_succeeded"
        for server in (a, b):  # either instance answers the same
            listed = await ask(server, "channels_info", "q-", ["subscription_count"])
            assert listed == {"channels": {"q-news": {"subscription_count": 4},
                                           "q-only-b": {"subscription_count": 1}}}
            info = await ask(server, "channel_info", "presence-q",
                             ["user_count", "subscription_count"])
            assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}
            assert await ask(server, "users_info", "presence-q") == {
                "users": [{"id": "ann"}, {"id": "bob"}]}
            assert await ask(server, "channel_info", "q-none") == {"occupied": False}
    finally:
        for client in (*on_a, *on_b):
            await client.close()


async def test_terminate_connections_reaches_every_instance(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    doomed = []
    for server in (a, b, b):
        client = await PusherClient.open(server)
        await client.send("pusher:signin", sdk(server).authenticate_user(
            client.socket_id, {"id": "doomed"}))
        await client.expect("pusher:signin_success")
        doomed.append(client)
    spared = await PusherClient.open(b)
    await spared.send("pusher:signin", sdk(b).authenticate_user(spared.socket_id,
                                                                {"id": "spared"}))
    await spared.expect("pusher:signin_success")
    try:
        assert await ask(a, "terminate_user_connections", "doomed") == {}
        for client in doomed:
            code, _ = await client.closed()
            assert code == 4009
        await spared.nothing_pending()
    finally:
        for client in (*doomed, spared):
            await client.close()
