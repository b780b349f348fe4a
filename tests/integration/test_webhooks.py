"""Webhooks (PUSHER.md 9) on real processes (3 shards, 2 fronts, the hooks process), received
by a test endpoint that checks every post with the official Python SDK: occupancy and
presence once per transition across fronts and shards, the holds, the other events, the
filters, retries with fresh signatures, the post deadline, the queue bound, a shard killed,
the hooks process killed, and the Pushy channels' app."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import pytest

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
                   **apps(receiver), **overrides)


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
