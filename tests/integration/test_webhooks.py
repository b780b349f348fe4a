"""Webhooks (PUSHER.md 9) on real processes (3 shards, 2 fronts, the hooks process), received
by a test endpoint that checks every post with the official Python SDK: occupancy and
presence once per transition across fronts and shards, the holds, the other events, the
filters, retries with fresh signatures, the post deadline, the queue bound, a shard killed,
the hooks process killed, and the Pushy channels' app."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import pytest

from pushy_shard.core.routing import app_key, shard_for
from tests.integration.harness import SECRET, Cluster, channel_token
from tests.integration.pusher_client import PusherClient
from tests.integration.webhook_receiver import Receiver

KEY, APP_SECRET, APP_ID = "hook-key", "hook-secret", "20"
PUSHY_KEY, PUSHY_ID = "pushy-hook-key", "21"
ALL = ["channel_occupied", "channel_vacated", "member_added", "member_removed",
       "client_event", "cache_miss", "subscription_count"]
HOLD = 0.5  # webhook_delivery.hold in these tests (3 s in production)
DELIVERY = {"hold": HOLD, "batch_delay": 0.05, "post_timeout": 1, "retry_for": 30}


def apps(receiver: Receiver, **webhook: Any) -> dict[str, Any]:
    hook = {"url": receiver.url, "events": ALL, **webhook}
    return {
        "apps": [{"id": APP_ID, "key": KEY, "secret": APP_SECRET, "client_events": True,
                  "webhooks": [hook]}],
        "pushy_app": {"id": PUSHY_ID, "key": PUSHY_KEY,
                      "webhooks": [{"url": receiver.url, "events": ALL}]},
    }


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver({KEY: APP_SECRET, PUSHY_KEY: SECRET})
    await hooks.start()
    yield hooks
    await hooks.stop()
    assert not hooks.invalid, hooks.invalid[:3]


def serve(tmp_path: Path, receiver: Receiver, delivery: dict[str, Any] | None = None,
          **overrides: Any) -> Cluster:
    return Cluster(tmp_path, webhook_delivery={**DELIVERY, **(delivery or {})},
                   **{**apps(receiver), **overrides})


def sdk(cluster: Cluster) -> pusher.Pusher:
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=APP_SECRET, host="127.0.0.1",
                         port=cluster.port, ssl=False)


async def connect(cluster: Cluster, front: int | None = None) -> PusherClient:
    if front is None:
        return await PusherClient.open(cluster, key=KEY, secret=APP_SECRET)
    return await PusherClient.on_front(cluster, front, key=KEY, secret=APP_SECRET)


async def join(client: PusherClient, channel: str, user: str | None = None) -> None:
    answer = await client.subscribe(channel, {"user_id": user} if user else None)
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer


def occupancy(receiver: Receiver, channel: str) -> list[str]:
    return [e["name"] for e in receiver.named("channel_occupied", "channel_vacated")
            if e["channel"] == channel]


def presence(receiver: Receiver, channel: str) -> list[tuple[str, str]]:
    return [(e["name"], e["user_id"]) for e in receiver.named("member_added", "member_removed")
            if e["channel"] == channel]


async def fence(cluster: Cluster, receiver: Receiver, channel: str) -> None:
    """Every hold started before this has ended once it returns: a channel occupied, then
    vacated, and its vacate announced (holds end in the order they started, all as long)."""
    client = await connect(cluster)
    await join(client, channel)
    await receiver.until(lambda r: channel in {e["channel"] for _, e in r.events})
    await client.close()
    await receiver.until(lambda r: {"name": "channel_vacated", "channel": channel}
                         in [e for _, e in r.events])


async def scrape(cluster: Cluster) -> str:
    async with aiohttp.ClientSession() as http, http.get(cluster.base_url + "/metrics") as r:
        return await r.text()


def sample(text: str, pattern: str) -> float:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def test_occupancy_and_presence_once_across_fronts_and_shards(
        tmp_path: Path, receiver: Receiver) -> None:
    cluster = serve(tmp_path, receiver)
    try:
        channels = [f"room-{i}" for i in range(6)]  # over the 3 shards
        a, b = await connect(cluster, 0), await connect(cluster, 1)
        for channel in channels:
            await join(a, channel)
            await join(b, channel)
        ann_0, ann_1, bob = await connect(cluster, 0), await connect(cluster, 1), \
            await connect(cluster)
        for client, user in ((ann_0, "ann"), (ann_1, "ann"), (bob, "7")):
            await join(client, "presence-hall", user)
        await receiver.until(lambda r: len(r.named("channel_occupied")) == 7
                             and len(r.named("member_added")) == 2)
        assert {e["channel"] for e in receiver.named("channel_occupied")} == {
            *channels, "presence-hall"}
        assert presence(receiver, "presence-hall") == [("member_added", "ann"),
                                                       ("member_added", "7")]
        # one of ann's connections leaves: she is still there; bob leaves and comes back
        # within the hold: nothing at all
        await ann_0.close()
        await bob.close()
        bob = await connect(cluster)
        await join(bob, "presence-hall", "7")
        await a.close()  # the rooms keep b
        await fence(cluster, receiver, "fence-1")
        assert presence(receiver, "presence-hall") == [("member_added", "ann"),
                                                       ("member_added", "7")]
        assert occupancy(receiver, "presence-hall") == ["channel_occupied"]
        # now everyone leaves
        for client in (b, ann_1, bob):
            await client.close()
        await receiver.until(lambda r: len(r.named("channel_vacated")) == 8)
        for channel in channels:
            assert occupancy(receiver, channel) == ["channel_occupied", "channel_vacated"]
        assert presence(receiver, "presence-hall") == [
            ("member_added", "ann"), ("member_added", "7"),
            ("member_removed", "ann"), ("member_removed", "7")] or presence(
            receiver, "presence-hall") == [
            ("member_added", "ann"), ("member_added", "7"),
            ("member_removed", "7"), ("member_removed", "ann")]
        removed_at = max(i for i, (_, e) in enumerate(receiver.events)
                         if e["name"] == "member_removed")
        vacated_at = next(i for i, (_, e) in enumerate(receiver.events)
                          if e == {"name": "channel_vacated", "channel": "presence-hall"})
        assert removed_at < vacated_at
        for post in receiver.posts:
            assert set(post.body) == {"time_ms", "events"}
            assert post.headers["Content-Type"] == "application/json"
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


async def test_client_events_cache_misses_counts_filters_and_headers(
        tmp_path: Path, receiver: Receiver) -> None:
    """The events that are not states pass through; a webhook's channel_prefix and its extra
    headers (which cannot replace the signed ones)."""
    filtered = Receiver({KEY: APP_SECRET})
    await filtered.start()
    hook = {"url": filtered.url, "events": ["channel_occupied", "client_event"],
            "channel_prefix": "private-",
            "headers": {"X-Hook": "yes", "X-Pusher-Signature": "forged"}}
    config = apps(receiver)
    config["apps"][0]["webhooks"].append(hook)
    cluster = Cluster(tmp_path, webhook_delivery=DELIVERY, **config)
    try:
        a, b = await connect(cluster), await connect(cluster)
        await join(a, "private-chat")
        await join(b, "private-chat")
        await a.send("client-typing", {"on": True}, channel="private-chat")
        await b.expect("client-typing")
        await join(a, "presence-room", "ann")
        await a.send("client-wave", "hi", channel="presence-room")
        await join(a, "cache-prices")  # nothing cached yet
        await a.expect("pusher:cache_miss")
        await join(a, "public-news")
        await receiver.until(lambda r: len(r.named("cache_miss")) == 1
                             and len(r.named("client_event")) == 2)
        assert receiver.named("client_event") == [
            {"name": "client_event", "channel": "private-chat", "event": "client-typing",
             "data": '{"on":true}', "socket_id": a.socket_id},
            {"name": "client_event", "channel": "presence-room", "event": "client-wave",
             "data": "hi", "socket_id": a.socket_id, "user_id": "ann"}]
        assert receiver.named("cache_miss") == [{"name": "cache_miss",
                                                 "channel": "cache-prices"}]
        counts = [e["subscription_count"] for e in receiver.named("subscription_count")
                  if e["channel"] == "private-chat"]
        assert counts == [1, 2]
        assert not [e for e in receiver.named("subscription_count")
                    if e["channel"] == "presence-room"]  # not on presence channels
        await filtered.until(lambda r: len(r.events) == 2)
        assert [e for _, e in filtered.events] == [
            {"name": "channel_occupied", "channel": "private-chat"},
            receiver.named("client_event")[0]]
        assert all(post.headers["X-Hook"] == "yes" for post in filtered.posts)
        await a.close()
        await b.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])
        await filtered.stop()
        assert not filtered.invalid


async def test_failed_posts_are_retried_signed_anew(tmp_path: Path, receiver: Receiver
                                                    ) -> None:
    receiver.fail = 2
    cluster = serve(tmp_path, receiver)
    try:
        client = await connect(cluster)
        await join(client, "retried")
        await receiver.until(lambda r: len(r.named("channel_occupied")) == 1)
        tries = [post for post in receiver.posts
                 if {"name": "channel_occupied", "channel": "retried"} in post.body["events"]]
        assert [post.status for post in tries] == [500, 500, 200]
        stamps = [post.body["time_ms"] for post in tries]
        assert stamps == sorted(stamps) and len(set(stamps)) == 3  # re-stamped, re-signed
        assert len({post.headers["X-Pusher-Signature"] for post in tries}) == 3
        text = await scrape(cluster)
        assert sample(text, r'pushy_webhook_posts_total\{status="500"\} (\d+)') == 2
        assert sample(text, r"pushy_webhook_retries_total (\d+)") == 2
        await client.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


async def test_a_slow_receiver_misses_the_deadline_and_gets_the_batch_again(
        tmp_path: Path, receiver: Receiver) -> None:
    """No answer within post_timeout (1 s here) is a failed try: the batch is sent again
    (delivery is at least once; what is announced is once)."""
    receiver.delay = 1.5
    cluster = serve(tmp_path, receiver)
    try:
        client = await connect(cluster)
        await join(client, "slow")
        await receiver.until(lambda r: len(r.posts) >= 1)
        receiver.delay = 0
        await receiver.until(lambda r: len(r.posts) >= 2)
        first, second = receiver.posts[:2]
        assert first.body["events"] == second.body["events"]
        assert second.body["time_ms"] > first.body["time_ms"]
        text = await scrape(cluster)
        assert sample(text, r'pushy_webhook_posts_total\{status="timeout"\} (\d+)') >= 1
        assert sample(text, r'pushy_webhook_events_total\{event="channel_occupied"\} (\d+)') == 1
        await client.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


async def test_a_receiver_that_is_down_fills_the_bounded_queue(tmp_path: Path,
                                                             receiver: Receiver) -> None:
    """What does not fit is dropped, counted and logged; the rest goes once the receiver is
    back."""
    await receiver.stop()
    cluster = serve(tmp_path, receiver, {"max_queue_bytes": 1000},
                    apps=[{"id": APP_ID, "key": KEY, "secret": APP_SECRET,
                           "webhooks": [{"url": receiver.url, "events": ["channel_occupied"]}]}])
    clients = []
    try:
        for i in range(40):  # each event is about 50 bytes of JSON
            client = await connect(cluster)
            await join(client, f"queued-{i:02d}")
            clients.append(client)
        cluster.log.wait_for(r"webhook queue full \(1000 bytes\)")
        # the last transitions may still be on their way from the shards: the hooks
        # process's own figures say when all 40 arrived (each kept or dropped)
        deadline = time.monotonic() + 10
        while True:
            text = await scrape(cluster)
            dropped = sample(text, r'pushy_webhook_dropped_total\{reason="queue_full"\} (\d+)')
            queued = sample(text, r"pushy_webhook_queue_events (\d+)")
            if dropped + queued >= 40 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert dropped >= 1 and queued >= 1 and dropped + queued == 40
        assert sample(text, r"pushy_webhook_queue_bytes (\d+)") <= 1000
        await receiver.start()
        await receiver.until(lambda r: len(r.events) == queued, timeout=20)
        names = [e["channel"] for e in receiver.named("channel_occupied")]
        # the kept ones, once each (the shards' transitions reach the hooks process in
        # about join order; which ones were dropped depends on that)
        assert len(set(names)) == len(names) == queued
        assert set(names) <= {f"queued-{i:02d}" for i in range(40)}
    finally:
        for client in clients:
            await client.close()
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


def on_shard(name: str, shard: int, shards: int = 3) -> bool:
    return shard_for(app_key(APP_ID, name), shards) == shard


async def test_a_killed_shard_announces_nothing_twice_and_nothing_lost(
        tmp_path: Path, receiver: Receiver) -> None:
    """Channels and users of a shard that is SIGKILLed: its replay announces nothing again;
    what left while it was down is announced once it is back (its state compared with
    what was announced)."""
    cluster = serve(tmp_path, receiver, timeouts={"shard_recovery": 1})
    names = [n for n in (f"k-{i}" for i in range(40)) if on_shard(n, 1)][:3]
    hall = next(n for n in (f"presence-k-{i}" for i in range(40)) if on_shard(n, 1))
    try:
        stay, leave = await connect(cluster, 0), await connect(cluster, 1)
        for name in names[:2]:
            await join(stay, name)
        await join(leave, names[2])
        await join(stay, hall, "ann")
        await join(leave, hall, "bob")
        await receiver.until(lambda r: len(r.named("channel_occupied")) == 4
                             and len(r.named("member_added")) == 2)
        mark = cluster.kill("shard", 1)
        await leave.close()  # its channel empties, bob leaves, while the shard is down
        cluster.wait_restarted("shard", 1, mark)
        # (the front may replay the closed connection's memberships before its leave)
        cluster.log.wait_for(r"hooks: shard 1 recovered: [34] channel\(s\)", start=mark)
        await receiver.until(lambda r: len(r.named("channel_vacated")) == 1
                             and len(r.named("member_removed")) == 1)
        assert receiver.named("channel_vacated") == [{"name": "channel_vacated",
                                                      "channel": names[2]}]
        assert presence(receiver, hall) == [("member_added", "ann"), ("member_added", "bob"),
                                            ("member_removed", "bob")]
        # the restarted shard goes on as before: a new transition is announced once
        newcomer = await connect(cluster)
        await join(newcomer, hall, "cy")
        await fence(cluster, receiver, "k-fence")
        assert presence(receiver, hall)[-1] == ("member_added", "cy")
        for name in names[:2]:
            assert occupancy(receiver, name) == ["channel_occupied"]
        assert len(receiver.named("channel_occupied")) == 5  # the 4, then the fence's
        await stay.close()
        await newcomer.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


async def test_a_killed_hooks_process_learns_the_state_without_announcing_it(
        tmp_path: Path, receiver: Receiver) -> None:
    """A restarted hooks process asks every shard for its state and adopts it silently;
    what happens afterwards is announced as usual."""
    cluster = serve(tmp_path, receiver)
    try:
        client = await connect(cluster)
        await join(client, "before")
        await receiver.until(lambda r: len(r.named("channel_occupied")) == 1)
        mark = cluster.kill("hooks", 0)
        cluster.wait_restarted("hooks", 0, mark)
        for shard in range(3):
            cluster.log.wait_for(rf"hooks: shard {shard} (answered|recovered)", start=mark)
        await join(client, "after")
        await client.send("pusher:unsubscribe", {"channel": "before"})
        await receiver.until(lambda r: len(r.named("channel_vacated")) == 1)
        assert occupancy(receiver, "before") == ["channel_occupied", "channel_vacated"]
        assert occupancy(receiver, "after") == ["channel_occupied"]
        await client.close()
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])


async def test_the_pushy_channels_have_webhooks_too(tmp_path: Path, receiver: Receiver
                                                    ) -> None:
    """pushy_app's webhooks: Pushy channels' occupancy, and presence by member id, signed
    with secretKey (the receiver checks with the SDK and that key)."""
    cluster = serve(tmp_path, receiver)
    try:
        a = await cluster.client()
        await a.subscribe("Pushy-Hall")
        data = json.dumps({"name": "ann"})
        joined = await a.subscribe("private-pushy-presence",
                                   auth=channel_token(a.socket_id, "private-pushy-presence",
                                                      data), data=data)
        member = joined["data"]["memberId"]
        await receiver.until(lambda r: len(r.named("member_added")) == 1)
        await a.close()
        await receiver.until(lambda r: len(r.named("channel_vacated")) == 2)
        pushy = [e for key, e in receiver.events if key == PUSHY_KEY
                 and e["name"] != "subscription_count"]
        assert [e for key, e in receiver.events if key == PUSHY_KEY
                and e["name"] == "subscription_count"] == [
            {"name": "subscription_count", "channel": "Pushy-Hall", "subscription_count": 1}]
        removed = {"name": "member_removed", "channel": "private-pushy-presence",
                   "user_id": member}
        vacated = {"name": "channel_vacated", "channel": "private-pushy-presence"}
        # the two channels may be on different shards: their order is only per channel
        occupied = {"name": "channel_occupied", "channel": "private-pushy-presence"}
        added = {"name": "member_added", "channel": "private-pushy-presence", "user_id": member}
        hall = {"name": "channel_occupied", "channel": "Pushy-Hall"}
        assert sorted(map(str, pushy[:3])) == sorted(map(str, [hall, occupied, added]))
        assert pushy.index(occupied) < pushy.index(added)
        assert len(pushy) == 6 and pushy.index(removed) < pushy.index(vacated)
        assert {"name": "channel_vacated", "channel": "Pushy-Hall"} in pushy[3:]
        assert not [e for key, e in receiver.events if key == KEY]  # not the Pusher app's
    finally:
        assert cluster.stop() == 0, "\n".join(cluster.log.lines[-30:])
