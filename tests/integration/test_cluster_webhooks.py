"""Webhooks of two instances on one real redis-server: every occupancy and presence
transition announced once cluster-wide, by the instance whose Redis write made it, with
the hold of channel_vacated / member_removed cancelled by a return on either instance
(shard/redis_scripts.py). Each post is validated with the official SDK."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from pushy_shard.core.routing import app_key, shard_for
from tests.integration.harness import Cluster
from tests.integration.redis_server import RedisServer
from tests.integration.test_cluster import LEASE
from tests.integration.test_webhooks import (
    APP_ID,
    APP_SECRET,
    DELIVERY,
    KEY,
    apps,
    connect,
    join,
    occupancy,
    presence,
)
from tests.integration.webhook_receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver({KEY: APP_SECRET})
    await hooks.start()
    yield hooks
    await hooks.stop()
    assert not hooks.invalid, hooks.invalid[:3]


@pytest.fixture
def pair(tmp_path: Path, redis_server: RedisServer,
         receiver: Receiver) -> Iterator[tuple[Cluster, Cluster]]:
    servers = []
    for node in ("host-a", "host-b"):
        (tmp_path / node).mkdir()
        server = Cluster(tmp_path / node, workers=2, fronts=1, webhook_delivery=DELIVERY,
                         cluster={"redis": redis_server.url, "node": node,
                                  "lease_seconds": LEASE}, **apps(receiver))
        server.log.wait_for(r"in the cluster as", count=2)
        servers.append(server)
    yield servers[0], servers[1]
    for server in servers:
        server.stop()


def vacated(channel: str) -> Callable[[Receiver], bool]:
    return lambda r: occupancy(r, channel)[-1:] == ["channel_vacated"]


async def test_occupancy_is_announced_once_across_instances(
        pair: tuple[Cluster, Cluster], receiver: Receiver) -> None:
    a, b = pair
    on_a, on_b = await connect(a), await connect(b)
    await join(on_a, "room")
    await receiver.until(lambda r: occupancy(r, "room") == ["channel_occupied"])
    await join(on_b, "room")  # occupied already: nothing
    await on_a.close()  # B still has a member: nothing
    await on_b.close()
    await receiver.until(vacated("room"))
    again = await connect(b)  # a second cycle, so that nothing stray hides between them
    await join(again, "room")
    await receiver.until(lambda r: len(occupancy(r, "room")) == 3)
    await again.close()
    await receiver.until(lambda r: len(occupancy(r, "room")) == 4)
    assert occupancy(receiver, "room") == ["channel_occupied", "channel_vacated"] * 2


async def test_a_return_on_the_other_instance_cancels_the_hold(
        pair: tuple[Cluster, Cluster], receiver: Receiver) -> None:
    a, b = pair
    on_a = await connect(a)
    await join(on_a, "held")
    await receiver.until(lambda r: occupancy(r, "held") == ["channel_occupied"])
    on_b = await connect(b)
    await on_a.close()
    await join(on_b, "held")  # back, on the other instance, within the hold (0.5 s)
    # a marker channel of the same shard of A: its vacate is checked after any check of
    # "held" that A's leave may have started (one shard checks them in order)
    owner = shard_for(app_key(APP_ID, "held"), 2)
    marker = next(f"marker-{n}" for n in range(100)
                  if shard_for(app_key(APP_ID, f"marker-{n}"), 2) == owner)
    later = await connect(a)
    await join(later, marker)
    await later.close()
    await receiver.until(vacated(marker))
    assert occupancy(receiver, "held") == ["channel_occupied"]
    await on_b.close()
    await receiver.until(vacated("held"))
    assert occupancy(receiver, "held") == ["channel_occupied", "channel_vacated"]


async def test_a_user_on_both_instances_is_added_and_removed_once(
        pair: tuple[Cluster, Cluster], receiver: Receiver) -> None:
    a, b = pair
    first, second = await connect(a), await connect(b)
    await join(first, "presence-team", "u1")
    await receiver.until(lambda r: presence(r, "presence-team") == [("member_added", "u1")])
    await join(second, "presence-team", "u1")  # the same user on the other instance
    await first.close()  # still there through the second connection
    await second.close()
    await receiver.until(vacated("presence-team"))
    assert presence(receiver, "presence-team") == [("member_added", "u1"),
                                                   ("member_removed", "u1")]


async def test_a_killed_instance_is_announced_gone_by_the_other(
        pair: tuple[Cluster, Cluster], receiver: Receiver) -> None:
    a, b = pair
    on_b = await connect(b)
    await join(on_b, "presence-lost", "u9")
    await receiver.until(lambda r: presence(r, "presence-lost") == [("member_added", "u9")])
    os.killpg(b.process.pid, signal.SIGKILL)
    await receiver.until(vacated("presence-lost"), timeout=1.5 * LEASE + 10)
    assert presence(receiver, "presence-lost") == [("member_added", "u9"),
                                                   ("member_removed", "u9")]
    assert occupancy(receiver, "presence-lost") == ["channel_occupied", "channel_vacated"]
    await on_b.http.close()
