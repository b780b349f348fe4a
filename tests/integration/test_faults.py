"""Killed processes (ARCHITECTURE.md 6): the supervisor restarts them and state comes back."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushy_shard.core.routing import shard_for
from tests.integration.harness import Cluster, PushyClient, channel_token

# The shard gives up on a silent front after `front_silence` (set short here), noticed by
# its once-a-second sweep, the front's last PING up to a second before the stall.
FRONT_SILENCE = 2
GIVEN_UP_WITHIN = FRONT_SILENCE + 2 + 6  # + PING and sweep intervals, + a busy box's margin


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A server of the test's own, for tests that kill its processes. A trigger may wait
    for a restarting shard well past the usual 5 s here: the tests check what it reaches,
    not how fast a new Python process starts."""
    server = Cluster(tmp_path, timeouts={"front_silence": FRONT_SILENCE, "trigger": 30})
    yield server
    server.stop()


async def join_presence(client: PushyClient, channel: str, name: str) -> dict:
    data = json.dumps({"name": name})
    auth = channel_token(client.socket_id, channel, data)
    return await client.subscribe(channel, auth=auth, data=data)


async def test_killed_shard_comes_back_whole(own_cluster: Cluster) -> None:
    cluster = own_cluster
    room = "private-lobby"
    shard = shard_for(room, cluster.workers)
    public = next(f"pub-{n}" for n in range(100) if shard_for(f"pub-{n}", cluster.workers) == shard)
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        await join_presence(a, room, "ann")
        await join_presence(b, room, "bob")
        await a.expect("pushy:presence-add")
        await b.subscribe(public)

        mark = cluster.kill("shard", shard)
        cluster.wait_restarted("shard", shard, mark)

        # a trigger sent while the shard restarts still reaches the replayed member
        status, _ = await cluster.trigger(public, "after", {"ok": True})
        assert status == 201
        assert await b.next() == {"event": "after", "channel": public, "data": {"ok": True}}

        # presence came back whole and in join order
        c = await cluster.client(front=0)
        success = await join_presence(c, room, "cid")
        assert [m["name"] for m in success["data"]["presence"]] == ["ann", "bob", "cid"]
        for member in (a, b):
            add = await member.expect("pushy:presence-add")
            assert add["data"]["member"]["name"] == "cid"
        # and already-subscribed is still known
        await a.send("subscribe", {"channel": room, "auth": channel_token(
            a.socket_id, room, json.dumps({"name": "ann"})), "data": json.dumps({"name": "ann"})})
        failed = await a.expect("pushy:subscription-failed")
        assert failed["data"]["reason"] == "Already subscribed to this channel"
        for client in (a, b, c):
            await client.nothing_pending()
        await c.close()
    finally:
        await a.close()
        await b.close()


async def test_killed_front_members_leave_with_presence_quit(own_cluster: Cluster) -> None:
    cluster = own_cluster
    room = "private-front-test"
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        await join_presence(a, room, "ann")
        await join_presence(b, room, "bob")
        await a.expect("pushy:presence-add")

        mark = cluster.kill("front", 1)
        cluster.wait_restarted("front", 1, mark)
        quit_ = await a.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "bob"

        # the restarted front serves again
        cluster.log.wait_for(r"front 2/2 ready", start=mark)
        c = await cluster.client(front=1)
        success = await join_presence(c, room, "cid")
        assert [m["name"] for m in success["data"]["presence"]] == ["ann", "cid"]
        await c.close()
    finally:
        await a.close()
        await b.close()


async def test_stalled_front_is_given_up_then_rejoins(own_cluster: Cluster) -> None:
    """A front that stops answering (SIGSTOP) loses its members after the shard's timeout;
    when it resumes, it replays them and the others see them come back."""
    cluster = own_cluster
    room = "private-stall"
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        await join_presence(a, room, "ann")
        await join_presence(b, room, "bob")
        await a.expect("pushy:presence-add")
        pid = cluster.pid("front", 1)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            quit_ = await a.expect("pushy:presence-quit", timeout=GIVEN_UP_WITHIN)
            assert quit_["data"]["member"]["name"] == "bob"
            assert time.monotonic() - stopped >= FRONT_SILENCE - 1  # not before its timeout
        finally:
            os.kill(pid, signal.SIGCONT)
        add = await a.expect("pushy:presence-add")  # its next PING: replayed at once
        assert add["data"]["member"]["name"] == "bob"
        status, _ = await cluster.trigger(room, "hello", {"to": "all"})
        assert status == 201
        assert (await b.next())["event"] == "hello"
        assert (await a.next())["event"] == "hello"
    finally:
        await a.close()
        await b.close()
