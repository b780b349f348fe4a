"""The query API (PUSHER.md 8) on real processes (3 shards, 2 fronts), asked with the official
Python SDK: channels, one channel, its users, terminate_connections, for a Pusher app and for
the Pushy channels' app; and the deadline: a shard or front that does not answer makes the
answer 503, never a partial one."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pusher
import pusher.errors
import pytest

from tests.integration.harness import SECRET, Cluster, channel_token
from tests.integration.pusher_client import APP_ID, APPS, KEY, PusherClient
from tests.integration.pusher_client import SECRET as APP_SECRET

PUSHY_APP = {"id": "99", "key": "pushy-key"}  # the Python SDK wants a numeric id


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = Cluster(tmp_path_factory.mktemp("query"), apps=APPS, pushy_app=PUSHY_APP)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


def sdk(cluster: Cluster, app_id: str = APP_ID, key: str = KEY, secret: str = APP_SECRET
        ) -> pusher.Pusher:
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1",
                         port=cluster.port, ssl=False)


def pushy_sdk(cluster: Cluster) -> pusher.Pusher:
    return sdk(cluster, PUSHY_APP["id"], PUSHY_APP["key"], SECRET)


async def ask(client: pusher.Pusher, method: str, *args: Any) -> Any:
    """An SDK call (it blocks: run in a thread)."""
    return await asyncio.to_thread(getattr(client, method), *args)


async def refused(client: pusher.Pusher, method: str, *args: Any) -> str:
    """The SDK call fails: the server's error message."""
    with pytest.raises(pusher.errors.PusherError) as caught:
        await ask(client, method, *args)
    return str(caught.value)


async def present(cluster: Cluster, channel: str, user: str, front: int) -> PusherClient:
    client = await PusherClient.on_front(cluster, front)
    answer = await client.subscribe(channel, {"user_id": user, "user_info": {"n": user}})
    assert answer["event"] == "pusher_internal:subscription_succeeded", answer
    return client


async def test_channels_across_shards(cluster: Cluster) -> None:
    names = [f"list-{i}" for i in range(8)]  # over 3 shards
    clients = [await PusherClient.open(cluster) for _ in names]
    extra = await PusherClient.open(cluster)
    try:
        for client, name in zip(clients, names, strict=True):
            await client.subscribe(name)
        await extra.subscribe("list-0")
        listed = await ask(sdk(cluster), "channels_info", "list-", ["subscription_count"])
        assert listed == {"channels": {name: {"subscription_count": 2 if name == "list-0" else 1}
                                       for name in names}}
        assert await ask(sdk(cluster), "channels_info", "list-7") == {
            "channels": {"list-7": {}}}
        assert await ask(sdk(cluster), "channels_info", "nothing-") == {"channels": {}}
        assert "user_count needs filter_by_prefix=presence-" in await refused(
            sdk(cluster), "channels_info", "list-", ["user_count"])
        assert "Unknown info attribute" in await refused(
            sdk(cluster), "channels_info", None, ["colour"])
    finally:
        for client in [*clients, extra]:
            await client.close()
    # a vacated channel is no longer listed
    assert await ask(sdk(cluster), "channels_info", "list-") == {"channels": {}}


async def test_presence_counts_users_across_fronts(cluster: Cluster) -> None:
    ann_0 = await present(cluster, "presence-q", "ann", front=0)
    ann_1 = await present(cluster, "presence-q", "ann", front=1)
    bob = await present(cluster, "presence-q", "7", front=1)
    try:
        info = await ask(sdk(cluster), "channel_info", "presence-q",
                         ["user_count", "subscription_count"])
        assert info == {"occupied": True, "user_count": 2, "subscription_count": 3}
        users = await ask(sdk(cluster), "users_info", "presence-q")
        assert users == {"users": [{"id": "ann"}, {"id": "7"}]}
        listed = await ask(sdk(cluster), "channels_info", "presence-", ["user_count"])
        assert listed["channels"]["presence-q"] == {"user_count": 2}
        assert "only for presence channels" in await refused(
            sdk(cluster), "channel_info", "public-q", ["user_count"])
        assert "only listed for presence channels" in await refused(
            sdk(cluster), "users_info", "public-q")
    finally:
        for client in (ann_0, ann_1, bob):
            await client.close()
    assert await ask(sdk(cluster), "channel_info", "presence-q", ["user_count"]) == {
        "occupied": False, "user_count": 0}


async def test_cache_attribute(cluster: Cluster) -> None:
    assert await ask(sdk(cluster), "channel_info", "cache-q", ["cache"]) == {
        "occupied": False, "cache": None}
    assert await ask(sdk(cluster), "trigger", "cache-q", "price", {"eur": 3}) == {}
    info = await ask(sdk(cluster), "channel_info", "cache-q", ["cache"])
    assert info["occupied"] is False
    assert info["cache"]["data"] == '{"eur":3}' or json.loads(info["cache"]["data"]) == {
        "eur": 3}
    assert 1795 <= info["cache"]["ttl"] <= 1800
    assert "only for cache channels" in await refused(
        sdk(cluster), "channel_info", "plain-q", ["cache"])


async def test_terminate_user_connections_on_every_front(cluster: Cluster) -> None:
    signed_in = []
    for front in (0, 1):
        client = await PusherClient.on_front(cluster, front)
        signed = sdk(cluster).authenticate_user(client.socket_id, {"id": "doomed"})
        await client.send("pusher:signin", signed)
        await client.expect("pusher:signin_success")
        signed_in.append(client)
    other = await PusherClient.open(cluster)
    signed = sdk(cluster).authenticate_user(other.socket_id, {"id": "spared"})
    await other.send("pusher:signin", signed)
    await other.expect("pusher:signin_success")
    try:
        assert await ask(sdk(cluster), "terminate_user_connections", "doomed") == {}
        for client in signed_in:
            code, before = await client.closed()
            assert code == 4009 and before[-1]["data"]["code"] == 4009, before
        await other.nothing_pending()  # still open
    finally:
        for client in [*signed_in, other]:
            await client.close()


async def test_the_pushy_channels_answer_as_an_app(cluster: Cluster) -> None:
    """pushy_app: the Pushy channels queried with the Pusher SDK, signed with secretKey."""
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    try:
        await a.subscribe("Pushy-Room")
        await b.subscribe("pushy-room")  # one channel: Pushy names are case-insensitive
        data = json.dumps({"name": "bea"})
        token = channel_token(b.socket_id, "private-pushy-presence", data)
        await b.subscribe("private-pushy-presence", auth=token, data=data)
        client = pushy_sdk(cluster)
        listed = await ask(client, "channels_info", "pushy-", ["subscription_count"])
        assert listed == {"channels": {"Pushy-Room": {"subscription_count": 2}}}
        info = await ask(client, "channel_info", "private-pushy-presence",
                         ["user_count", "subscription_count"])
        assert info == {"occupied": True, "user_count": 1, "subscription_count": 1}
        (user,) = (await ask(client, "users_info", "private-pushy-presence"))["users"]
        assert isinstance(user["id"], str) and user["id"]
        assert "only for presence channels" in await refused(
            client, "channel_info", "pushy-room", ["user_count"])
        assert "do not sign in" in await refused(client, "terminate_user_connections", "x")
        assert "triggered at /pushy/channel" in await refused(client, "trigger", "pushy-room",
                                                               "e", {})
        # the Pusher app's key does not read the Pushy channels, nor the reverse
        assert await ask(sdk(cluster), "channels_info", "pushy-") == {"channels": {}}
    finally:
        await a.close()
        await b.close()


# -- the deadline, on a server of its own ---------------------------------------------------------


async def test_a_silent_shard_or_front_makes_the_answer_503(tmp_path: Path) -> None:
    server = Cluster(tmp_path, workers=2, fronts=2, apps=APPS,
                     timeouts={"query": 0.5, "front_silence": 30})
    stopped: list[int] = []
    try:
        client = sdk(server)
        assert await ask(client, "channels_info") == {"channels": {}}
        pid = server.pid("shard", 1)
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        assert "Service temporarily unavailable" in await refused(client, "channels_info")
        os.kill(pid, signal.SIGCONT)
        stopped.remove(pid)
        assert await ask(client, "channels_info") == {"channels": {}}
        # a front that does not answer: terminate needs every front. The kernel may hand a
        # request to the stopped front itself, so each try has a short client timeout.
        pid = server.pid("front", 1)
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)
        quick = pusher.Pusher(app_id=APP_ID, key=KEY, secret=APP_SECRET, host="127.0.0.1",
                              port=server.port, ssl=False, timeout=3)
        for _ in range(50):
            try:
                message = await refused(quick, "terminate_user_connections", "u")
            except (pusher.errors.PusherError, OSError) as exc:
                message = repr(exc)
            if "Service temporarily unavailable" in message:
                break
        else:
            raise AssertionError(f"no 503: {message}")
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        assert server.stop() == 0, "\n".join(server.log.lines[-30:])
