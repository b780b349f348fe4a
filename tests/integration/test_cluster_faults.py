"""Two instances on a real redis-server, and what fails (SCALEOUT.md, When Redis is down):
Redis stalled (SIGSTOP) and restarted empty, an instance SIGKILLed, a shard SIGKILLed.
Each test has its own Redis and instances; the lease is short (2 s) so that the dead
instance's channels are released within seconds, and waits follow the product's log."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pushy_shard.core.routing import shard_for
from tests.integration.harness import Cluster, PushyClient, channel_token
from tests.integration.pusher_client import PusherClient
from tests.integration.redis_server import RedisServer
from tests.integration.test_cluster import LEASE, events, instance


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[Cluster, Cluster]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = instance(tmp_path / "a", redis_server.url, "host-a", 2)
    b = instance(tmp_path / "b", redis_server.url, "host-b", 2)
    yield a, b
    a.stop()
    b.stop()


async def get_json(server: Cluster, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(server.base_url + path) as response:
        return response.status, await response.json()


async def test_redis_stalled_triggers_answer_503_and_connections_stay(
        pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    a, b = pair
    on_a, on_b = await a.client(), await b.client()
    try:
        await on_a.subscribe("stall")
        await on_b.subscribe("stall")
        mark = a.log.mark
        redis_server.pause()
        try:
            started = time.monotonic()
            status, body, headers = await a.trigger_full("stall", "e", {"n": 1})
            assert status == 503 and headers.get("Retry-After") == "1", body
            assert time.monotonic() - started < 2.5  # the deadline (1 s), never a hang
            a.log.wait_for(r"Redis unavailable", start=mark)
            a.log.wait_for(r"front 0: shard \d cannot reach Redis", start=mark)
            health = await get_json(a, "/health")
            assert health[0] == 503 and health[1]["redis"] == "unavailable", health
            started = time.monotonic()  # known down: the next answers at once
            assert (await a.trigger("stall", "e", {"n": 2}))[0] == 503
            assert time.monotonic() - started < 0.5
        finally:
            redis_server.resume()
        a.log.wait_for(r"registered in Redis again", start=mark)
        a.log.wait_for(r"front 0: shard \d reaches Redis again", start=mark)
        # both connections stayed open and hear again; the timed-out first trigger may
        # have been delivered (a timeout means "maybe"), the refused second never was
        assert (await a.trigger("stall", "e", {"n": 3}))[0] == 201
        for member in (on_a, on_b):
            seen = await events(member, 1)
            if seen == [{"n": 1}]:
                seen = await events(member, 1)
            assert seen == [{"n": 3}]
            await member.nothing_pending()
    finally:
        await on_a.close()
        await on_b.close()


async def test_redis_restarted_empty_everything_is_restored(
        pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    a, b = pair
    on_a, only_b = await a.client(), await b.client()
    try:
        await on_a.subscribe("restored")
        await only_b.subscribe("restored")
        await only_b.subscribe("only-b")
        marks = a.log.mark, b.log.mark
        redis_server.restart()  # every key is gone, every connection dropped
        for server, mark in zip((a, b), marks, strict=True):
            server.log.wait_for(r"registered in Redis again \(", count=server.workers,
                                start=mark)
            server.log.wait_for(r"every resubscribed channel subscribed", count=server.workers,
                                start=mark)
        # the counts and the subscriptions are back: A sees B's channel occupied, and its
        # trigger reaches the members on both
        assert (await a.trigger("only-b", "e", {"n": 0}))[0] == 201
        assert (await a.trigger("restored", "e", {"n": 1}))[0] == 201
        assert await events(on_a, 1) == [{"n": 1}]
        assert await events(only_b, 2) == [{"n": 0}, {"n": 1}]
    finally:
        await on_a.close()
        await only_b.close()


async def test_killed_instance_releases_its_channels_within_the_lease(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    only_b = await b.client()
    await only_b.subscribe("on-b")
    assert (await a.trigger("on-b", "e", {"before": True}))[0] == 201
    mark = a.log.mark
    killed = time.monotonic()
    os.killpg(b.process.pid, signal.SIGKILL)
    a.log.wait_for(r"instance host-b/\d lost its lease", start=mark, timeout=1.5 * LEASE + 5)
    assert time.monotonic() - killed < 1.5 * LEASE + 1
    # every shard of B that held the channel was swept: it is vacant cluster-wide
    a.log.wait_for(rf"instance host-b/{shard_for('on-b', 2)} lost its lease", start=mark,
                   timeout=1.5 * LEASE + 5)
    assert (await a.trigger("on-b", "e", {}))[0] == 200
    await only_b.session.close()


async def test_killed_shard_replays_and_keeps_hearing_the_other_instance(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    shared = next(f"kept-{n}" for n in range(100) if shard_for(f"kept-{n}", 2) == 0)
    on_a, on_b = await a.client(), await b.client()
    try:
        await on_a.subscribe(shared)
        await on_b.subscribe(shared)
        mark = a.kill("shard", 0)
        a.wait_restarted("shard", 0, mark)
        a.log.wait_for(r"shard 0: every replayed channel subscribed", start=mark)
        # the replayed member hears the other instance again, once per event
        assert (await b.trigger(shared, "e", {"n": 1}))[0] == 201
        assert await events(on_a, 1) == [{"n": 1}]
        assert await events(on_b, 1) == [{"n": 1}]
        await on_a.nothing_pending()
    finally:
        await on_a.close()
        await on_b.close()


async def test_restarted_instance_releases_what_its_predecessor_left(
        tmp_path: Path, pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    """Killed and started again under the same node name before its lease expired: no
    sweep will come (the new process holds the lease), so the new shards release the
    channels their predecessors had members in once the fronts (with none) replayed."""
    a, b = pair
    member = await a.client()
    await member.subscribe("left-behind")
    assert (await b.trigger("left-behind", "e", {"before": True}))[0] == 201
    os.killpg(a.process.pid, signal.SIGKILL)
    await member.session.close()
    (tmp_path / "a2").mkdir()
    again = instance(tmp_path / "a2", redis_server.url, "host-a", 2)
    try:
        owner = shard_for("left-behind", 2)
        again.log.wait_for(rf"shard {owner}: recovered; 1 channel\(s\) a predecessor left")
        assert (await b.trigger("left-behind", "e", {}))[0] == 200
    finally:
        again.stop()


async def join_presence(client: PushyClient, channel: str, name: str) -> dict[str, Any]:
    """The answer to a presence subscribe, success or not."""
    data = json.dumps({"name": name})
    await client.send("subscribe", {"channel": channel, "data": data,
                                    "auth": channel_token(client.socket_id, channel, data)})
    return await client.next()


async def test_killed_instance_members_leave_with_presence_quit(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    ann, bob = await a.client(), await b.client()
    try:
        await join_presence(ann, "private-room", "ann")
        await join_presence(bob, "private-room", "bob")
        assert (await ann.expect("pushy:presence-add"))["data"]["member"]["name"] == "bob"
        killed = time.monotonic()
        os.killpg(b.process.pid, signal.SIGKILL)
        quit_ = await ann.expect("pushy:presence-quit", timeout=1.5 * LEASE + 5)
        assert quit_["data"]["member"]["name"] == "bob"
        assert time.monotonic() - killed < 1.5 * LEASE + 1
        cid = await a.client()
        joined = await join_presence(cid, "private-room", "cid")
        assert [m["name"] for m in joined["data"]["presence"]] == ["ann", "cid"]
        await cid.close()
        await bob.session.close()
    finally:
        await ann.close()


async def test_presence_join_while_redis_is_stalled_fails_retryably(
        pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    a, _ = pair
    ann = await a.client()
    try:
        mark = a.log.mark
        redis_server.pause()
        try:
            started = time.monotonic()
            answer = await join_presence(ann, "private-stalled", "ann")
            assert answer["event"] == "pushy:subscription-failed", answer
            assert answer["data"]["reason"] == "Presence is unavailable (Redis), retry"
            assert time.monotonic() - started < 2.5
        finally:
            redis_server.resume()
        a.log.wait_for(r"registered in Redis again", start=mark)
        answer = await join_presence(ann, "private-stalled", "ann")  # the retry works
        assert answer["event"] == "pushy:subscription-success", answer
        assert [m["name"] for m in answer["data"]["presence"]] == ["ann"]
    finally:
        await ann.close()


async def test_redis_restarted_presence_comes_back_whole(
        pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    a, b = pair
    ann, bob = await a.client(), await b.client()
    try:
        await join_presence(ann, "private-kept", "ann")
        await join_presence(bob, "private-kept", "bob")
        await ann.expect("pushy:presence-add")
        marks = a.log.mark, b.log.mark
        redis_server.restart()
        for server, mark in zip((a, b), marks, strict=True):
            server.log.wait_for(r"registered in Redis again \(", count=server.workers,
                                start=mark)
            server.log.wait_for(r"every resubscribed channel subscribed", count=server.workers,
                                start=mark)
        cid = await a.client()
        joined = await join_presence(cid, "private-kept", "cid")
        assert {m["name"] for m in joined["data"]["presence"]} == {"ann", "bob", "cid"}
        await cid.close()
    finally:
        await ann.close()
        await bob.close()


async def test_restarted_shard_catches_its_members_up_on_presence(
        pair: tuple[Cluster, Cluster]) -> None:
    """What changed elsewhere while a shard was down reaches its replayed members once,
    in order (from the channel's log, after the seq its predecessor last told)."""
    a, b = pair
    room = next(f"private-up-{n}" for n in range(100) if shard_for(f"private-up-{n}", 2) == 0)
    ann, bob = await a.client(), await b.client()
    cid = await b.client()
    try:
        await join_presence(ann, room, "ann")
        await join_presence(bob, room, "bob")
        assert (await ann.expect("pushy:presence-add"))["data"]["member"]["name"] == "bob"
        mark = a.kill("shard", 0)
        joined = await join_presence(cid, room, "cid")  # on B, while A's shard is down
        assert joined["event"] == "pushy:subscription-success", joined
        await bob.close()
        a.wait_restarted("shard", 0, mark)
        a.log.wait_for(r"shard 0: every replayed channel subscribed", start=mark)
        told = [(m["event"], m["data"]["member"]["name"])
                for m in [await ann.next(), await ann.next()]]
        assert told == [("pushy:presence-add", "cid"), ("pushy:presence-quit", "bob")]
        await ann.nothing_pending()
        late = await a.client()
        listed = await join_presence(late, room, "late")
        assert [m["name"] for m in listed["data"]["presence"]] == ["ann", "cid", "late"]
        await late.close()
    finally:
        await ann.close()
        await cid.close()


async def test_a_subscriber_redis_drops_for_its_backlog_is_a_gap_and_resubscribes(
        pair: tuple[Cluster, Cluster], redis_server: RedisServer) -> None:
    """A shard that cannot keep up (here: stopped) never holds Redis or the other
    instance up: Redis drops its subscription at the pub/sub output limit, the shard counts
    a gap, subscribes again, and its members hear again."""
    a, b = pair
    channel = next(f"slow-{n}" for n in range(100) if shard_for(f"slow-{n}", 2) == 0)
    with redis_server.client() as control:
        control.config_set("client-output-buffer-limit", "pubsub 1mb 512kb 2")
    slow, fast = await a.client(), await b.client()
    try:
        await slow.subscribe(channel)
        await fast.subscribe(channel)
        mark = a.log.mark
        shard = a.pid("shard", 0)
        os.kill(shard, signal.SIGSTOP)
        try:
            # 24 MB for the stopped shard: past what the loopback socket buffers hold, then
            # past Redis's limit for it
            blob = {"pad": "x" * 48_000}
            count = 500
            for n in range(count):  # the other instance is not held up: it hears each
                assert (await b.trigger(channel, "e", {**blob, "n": n}))[0] == 201
                assert (await events(fast, 1))[0]["n"] == n
        finally:
            os.kill(shard, signal.SIGCONT)
        a.log.wait_for(r"shard 0: Redis pub/sub link lost", start=mark)
        a.log.wait_for(r"shard 0: every resubscribed channel subscribed", start=mark)
        assert (await b.trigger(channel, "e", {"n": "after"}))[0] == 201
        while (message := await slow.next())["data"].get("n") != "after":
            assert message["event"] == "e"  # some of the backlog may have come through
        async with aiohttp.ClientSession() as http, \
                http.get(f"{a.base_url}/metrics") as response:
            text = await response.text()
        gaps = [line for line in text.splitlines() if line.startswith("pushy_cluster_gaps")]
        assert gaps and float(gaps[0].rsplit(" ", 1)[1]) >= 1, gaps
    finally:
        await slow.close()
        await fast.close()


async def test_killed_instance_pusher_members_are_removed(
        pair: tuple[Cluster, Cluster]) -> None:
    a, b = pair
    watcher, leaving = await PusherClient.open(a), await PusherClient.open(b)
    try:
        await watcher.subscribe("presence-gone", {"user_id": "stays"})
        await leaving.subscribe("presence-gone", {"user_id": "goes"})
        added = await watcher.expect("pusher_internal:member_added")
        assert added["data"]["user_id"] == "goes"
        os.killpg(b.process.pid, signal.SIGKILL)
        removed = await watcher.expect("pusher_internal:member_removed",
                                       timeout=1.5 * LEASE + 5)
        assert removed["data"] == {"user_id": "goes"}
        await leaving.http.close()
    finally:
        await watcher.close()
