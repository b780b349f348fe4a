"""The Pusher protocol on the real processes (3 shards, 2 fronts): the connection, every
error and close code of PUSHER.md 7, channels and presence across fronts and shards, client
events, sign-in, cache channels, subscription counts and the trigger API, with the official
Python SDK (`pusher` on PyPI) as the app server. Faults: a killed shard, a killed front."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pusher
import pytest

from pushy_shard.core.routing import app_key, shard_for
from tests.integration.harness import Cluster
from tests.integration.pusher_client import APP_ID, APPS, KEY, SECRET, PusherClient, sign

# short product timeouts, so that tests of them wait seconds (PUSHER.md: 30 s each)
TIMEOUTS = {"pusher_pong": 1, "pusher_signin": 1}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = Cluster(tmp_path_factory.mktemp("pusher"), apps=APPS, timeouts=TIMEOUTS)
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


def sdk(cluster: Cluster, app_id: str = APP_ID, key: str = KEY,
        secret: str = SECRET) -> pusher.Pusher:
    return pusher.Pusher(app_id=app_id, key=key, secret=secret, host="127.0.0.1",
                         port=cluster.port, ssl=False)


async def trigger(cluster: Cluster, channels: str | list[str], event: str, data: Any,
                  **kwargs: Any) -> Any:
    """The SDK's trigger (it blocks: run in a thread)."""
    return await asyncio.to_thread(sdk(cluster).trigger, channels, event, data, **kwargs)


async def signed_post(cluster: Cluster, path: str, body: bytes, expect: int | None = None
                      ) -> Any:
    """POST `body` to the HTTP API with Pusher's request signature (PUSHER.md 8): its
    JSON answer (with `expect`, the status and the answer)."""
    query = {"auth_key": KEY, "auth_timestamp": str(int(time.time())), "auth_version": "1.0",
             "body_md5": hashlib.md5(body).hexdigest()}
    text = "&".join(f"{k}={v}" for k, v in sorted(query.items()))
    query["auth_signature"] = sign(SECRET, f"POST\n{path}\n{text}")
    async with aiohttp.ClientSession() as http, http.post(
            cluster.base_url + path, params=query, data=body,
            headers={"Content-Type": "application/json"}) as response:
        if expect is not None:
            return response.status, await response.json()
        assert response.status == 200, await response.text()
        return await response.json()


async def opened(cluster: Cluster, count: int, **kwargs: Any) -> list[PusherClient]:
    return [await PusherClient.open(cluster, **kwargs) for _ in range(count)]


# -- the connection (PUSHER.md 2) ---------------------------------------------------------------


async def test_connection_established_and_ping(cluster: Cluster) -> None:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(f"ws://127.0.0.1:{cluster.port}/app/{KEY}?protocol=7")
    try:
        first = await ws.receive(timeout=10)
        established = json.loads(first.data)
        assert established["event"] == "pusher:connection_established"
        assert isinstance(established["data"], str)  # double encoded
        data = json.loads(established["data"])
        assert re.fullmatch(r"\d+\.\d+", data["socket_id"]) and data["activity_timeout"] == 120
        await ws.send_str('{"event":"pusher:ping","data":{}}')
        assert json.loads((await ws.receive(timeout=10)).data) == {
            "event": "pusher:pong", "data": {}}
        await ws.send_str("not json")
        assert json.loads((await ws.receive(timeout=10)).data) == {
            "event": "pusher:error", "data": {"code": None, "message": "Invalid message"}}
        await ws.send_str('{"event":"something:else"}')  # ignored
        await ws.send_str('{"event":"pusher:ping","data":{}}')
        assert json.loads((await ws.receive(timeout=10)).data)["event"] == "pusher:pong"
    finally:
        await ws.close()
        await http.close()


@pytest.mark.parametrize(("key", "query", "code"), [
    ("no-such-key", "protocol=7", 4001),
    (KEY, "client=js", 4008),
    (KEY, "protocol=3", 4007),
])
async def test_refused_connections_get_the_error_then_the_close(
        cluster: Cluster, key: str, query: str, code: int) -> None:
    client = await PusherClient.open(cluster, key=key, query=query, established=False)
    try:
        close_code, before = await client.closed()
        assert close_code == code
        assert [m["event"] for m in before] == ["pusher:error"]
        assert before[0]["data"]["code"] == code
    finally:
        await client.close()


async def test_inactivity_pings_then_closes_4201(cluster: Cluster) -> None:
    """quiet-key's activity_timeout is 1 s, timeouts.pusher_pong 1 s here."""
    client = await PusherClient.open(cluster, key="quiet-key", secret="quiet-secret")
    try:
        assert (await client.expect("pusher:ping", timeout=10))["data"] == {}
        await client.send("pusher:pong")  # answered: the connection stays
        assert (await client.expect("pusher:ping", timeout=10))["event"] == "pusher:ping"
        close_code, before = await client.closed(timeout=10)  # not answered this time
        assert close_code == 4201
        assert before[-1]["data"] == {"code": 4201, "message": "Pong reply not received in time"}
    finally:
        await client.close()


async def test_binary_and_oversized_frames_close(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        await client.ws.send_bytes(b"\x00")
        assert (await client.closed())[0] == 1003
    finally:
        await client.close()
    client = await PusherClient.open(cluster)
    try:
        await client.ws.send_str('{"event":"x","data":"' + "y" * 70_000 + '"}')
        assert (await client.closed())[0] == 1009
    finally:
        await client.close()


# -- channels and triggers (PUSHER.md 3, 8) ----------------------------------------------------


async def test_public_channels_and_the_sdk_trigger(cluster: Cluster) -> None:
    a, b = await opened(cluster, 2)
    try:
        for client in (a, b):
            assert await client.subscribe("news") == {
                "event": "pusher_internal:subscription_succeeded", "channel": "news",
                "data": {}}
        assert await trigger(cluster, ["news", "other"], "flash", {"n": 1}) == {}
        for client in (a, b):
            got = await client.expect("flash")
            assert got == {"event": "flash", "channel": "news", "data": {"n": 1}}
        # socket_id excludes that connection
        await trigger(cluster, "news", "flash", "plain text", socket_id=a.socket_id)
        assert (await b.expect("flash"))["data"] == "plain text"
        await a.nothing_pending()
        await a.send("pusher:unsubscribe", {"channel": "news"})
        await a.nothing_pending()
        await trigger(cluster, "news", "after", {})
        assert (await b.expect("after"))["channel"] == "news"
        await a.nothing_pending()
    finally:
        await a.close()
        await b.close()


async def test_batch_and_info(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    other = await PusherClient.open(cluster)
    try:
        await client.subscribe("presence-batch", {"user_id": "u1"})
        await other.subscribe("presence-batch", {"user_id": "u2"})
        await client.expect("pusher_internal:member_added")
        await client.subscribe("batch-public")
        answer = await asyncio.to_thread(sdk(cluster).trigger_batch, [
            {"channel": "batch-public", "name": "one", "data": "1"},
            {"channel": "presence-batch", "name": "two", "data": "2",
             "info": "user_count,subscription_count"},
        ])
        assert answer == {"batch": [{}, {"user_count": 2, "subscription_count": 2}]}
        assert [(await client.next())["event"] for _ in range(2)] == ["one", "two"]
        # the Python SDK has no `info` for trigger: a request signed as it signs
        body = json.dumps({"name": "three", "data": "3", "info": "user_count",
                           "channels": ["presence-batch", "batch-public"]}).encode()
        info = await signed_post(cluster, f"/apps/{APP_ID}/events", body)
        # user_count applies to presence channels only
        assert info == {"channels": {"presence-batch": {"user_count": 2}, "batch-public": {}}}
    finally:
        await client.close()
        await other.close()


async def test_private_channels_check_their_signature(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        refused = await client.subscribe("private-room", auth=f"{KEY}:" + "0" * 64)
        assert refused == {"event": "pusher:subscription_error", "channel": "private-room",
                           "data": {"type": "AuthError", "error": "Invalid signature",
                                    "status": 401}}
        token = sdk(cluster).authenticate(channel="private-room", socket_id=client.socket_id)
        ok = await client.subscribe("private-room", auth=token["auth"])
        assert ok["event"] == "pusher_internal:subscription_succeeded"
        # the same token for another connection is worthless
        other = await PusherClient.open(cluster)
        try:
            assert (await other.subscribe("private-room", auth=token["auth"]))["data"][
                "type"] == "AuthError"
        finally:
            await other.close()
    finally:
        await client.close()


async def test_bad_subscriptions_are_refused_per_channel(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        cases = [
            ({"channel": "bad name!"}, "BadRequest", 400),
            ({"channel": "presence-x", "auth": client.auth("presence-x")}, "BadRequest", 400),
            ({"channel": "presence-x", "channel_data": '{"user_info":{}}',
              "auth": client.auth("presence-x", '{"user_info":{}}')}, "BadRequest", 400),
            ({"channel": "presence-x", "channel_data": json.dumps({"user_id": "u" * 129}),
              "auth": client.auth("presence-x", json.dumps({"user_id": "u" * 129}))},
             "LimitReached", 413),
            ({"channel": "#server-to-user-someone"}, "AuthError", 403),
        ]
        for data, kind, status in cases:
            await client.send("pusher:subscribe", data)
            refused = await client.expect("pusher:subscription_error")
            assert (refused["data"]["type"], refused["data"]["status"]) == (kind, status), data
            assert refused["channel"] == data["channel"]
        await client.nothing_pending()
    finally:
        await client.close()


async def test_an_event_to_several_channels_refuses_an_encrypted_one(cluster: Cluster) -> None:
    """The SDK refuses it itself; the server does too, for any other client."""
    with pytest.raises(ValueError, match="encrypted"):
        await trigger(cluster, ["private-encrypted-a", "b"], "e", "x")
    body = json.dumps({"name": "e", "data": "x", "channels": ["private-encrypted-a", "b"]})
    status, answer = await signed_post(cluster, f"/apps/{APP_ID}/events", body.encode(),
                                       expect=400)
    assert status == 400 and "encrypted" in answer["error"]


# -- presence (PUSHER.md 4) ---------------------------------------------------------------------


async def test_presence_is_one_list_per_user_across_fronts_and_shards(cluster: Cluster) -> None:
    channel = next(f"presence-dedup-{n}" for n in range(100)
                   if shard_for(app_key(APP_ID, f"presence-dedup-{n}"), 3) == 2)
    watcher = await PusherClient.on_front(cluster, 0)
    ann_0 = await PusherClient.on_front(cluster, 0)
    ann_1 = await PusherClient.on_front(cluster, 1)
    try:
        joined = await watcher.subscribe(channel, {"user_id": "w"})
        assert joined["data"]["presence"] == {"ids": ["w"], "hash": {"w": {}}, "count": 1}
        first = await ann_0.subscribe(channel, {"user_id": 7, "user_info": {"name": "ann"}})
        assert first["data"]["presence"]["ids"] == ["w", 7]  # as written: an integer
        added = await watcher.expect("pusher_internal:member_added")
        assert added["data"] == {"user_id": 7, "user_info": {"name": "ann"}}
        # ann's second connection, on the other front, as "7": the same user
        second = await ann_1.subscribe(channel, {"user_id": "7"})
        assert second["data"]["presence"]["count"] == 2
        await ann_1.close()
        await ann_0.nothing_pending()
        await watcher.nothing_pending()  # no member_added, and no member_removed yet
        await ann_0.close()
        removed = await watcher.expect("pusher_internal:member_removed")
        assert removed["data"] == {"user_id": 7}
    finally:
        for client in (watcher, ann_0, ann_1):
            await client.close()


async def test_a_full_presence_channel_refuses_new_users(cluster: Cluster) -> None:
    """count-key allows 2 users per presence channel."""
    clients = await opened(cluster, 3, key="count-key", secret="count-secret")
    try:
        for client, user in zip(clients[:2], ("a", "b"), strict=True):
            assert (await client.subscribe("presence-full", {"user_id": user}))["event"] == (
                "pusher_internal:subscription_succeeded")
        refused = await clients[2].subscribe("presence-full", {"user_id": "c"})
        assert refused["data"] == {"type": "LimitReached", "error": "Presence channel is full",
                                   "status": 4100}
        again = await clients[2].subscribe("presence-full", {"user_id": "a"})
        assert again["event"] == "pusher_internal:subscription_succeeded"
    finally:
        for client in clients:
            await client.close()


# -- client events (PUSHER.md 5) ----------------------------------------------------------------


async def test_client_events(cluster: Cluster) -> None:
    a, b = await opened(cluster, 2)
    try:
        await a.subscribe("presence-chat", {"user_id": "ann"})
        await b.subscribe("presence-chat", {"user_id": "bob"})
        await a.expect("pusher_internal:member_added")
        await a.subscribe("news")
        await a.send("client-typing", {"t": 1}, channel="presence-chat")
        got = await b.expect("client-typing")
        assert got == {"event": "client-typing", "channel": "presence-chat", "data": {"t": 1},
                       "user_id": "ann"}
        await a.nothing_pending()  # never echoed
        for channel, problem in (("news", "Client events need a private or presence channel"),
                                 ("private-elsewhere", "Not subscribed to this channel")):
            await a.send("client-x", {}, channel=channel)
            assert (await a.expect("pusher:error"))["data"] == {"code": None,
                                                                "message": problem}
        await a.send("client-big", {"s": "x" * 11_000}, channel="presence-chat")
        assert (await a.expect("pusher:error"))["data"]["message"] == "Client event too large"
        for n in range(12):  # a bucket of 10, refilled 10/s
            await a.send("client-burst", {"n": n}, channel="presence-chat")
        errors = [m for m in [await a.next() for _ in range(2)] if m["event"] == "pusher:error"]
        assert errors and errors[0]["data"] == {
            "code": 4301, "message": "Client event rejected due to rate limit"}
        assert (await b.expect("client-burst"))["data"] == {"n": 0}
    finally:
        await a.close()
        await b.close()


async def test_client_events_need_the_app_to_allow_them(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster, key="count-key", secret="count-secret")
    try:
        await client.subscribe("private-c")
        await client.expect("pusher_internal:subscription_count")  # count-key asks for them
        await client.send("client-x", {}, channel="private-c")
        assert (await client.expect("pusher:error"))["data"] == {
            "code": None, "message": "Client events are not enabled"}
    finally:
        await client.close()


# -- user authentication (PUSHER.md 6) ----------------------------------------------------------


async def test_signin_and_server_to_user(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        user = {"id": "u-42", "name": "Ann"}
        signed = sdk(cluster).authenticate_user(client.socket_id, user)
        await client.send("pusher:signin", {"auth": "bad:sig",
                                            "user_data": signed["user_data"]})
        assert (await client.expect("pusher:error"))["data"]["message"] == "Invalid signin"
        await client.send("pusher:signin", signed)
        success = await client.expect("pusher:signin_success")
        assert json.loads(success["data"]["user_data"]) == user
        assert (await client.subscribe("#server-to-user-u-42", auth=""))["event"] == (
            "pusher_internal:subscription_succeeded")
        await asyncio.to_thread(sdk(cluster).send_to_user, "u-42", "note", {"hi": 1})
        assert await client.expect("note") == {"event": "note",
                                               "channel": "#server-to-user-u-42",
                                               "data": {"hi": 1}}
    finally:
        await client.close()


async def test_required_signin_closes_4009(cluster: Cluster) -> None:
    """strict-key has user_authentication; timeouts.pusher_signin is 1 s here."""
    late = await PusherClient.open(cluster, key="strict-key", secret="strict-secret")
    bad = await PusherClient.open(cluster, key="strict-key", secret="strict-secret")
    good = await PusherClient.open(cluster, key="strict-key", secret="strict-secret")
    # opened after `good`: once its deadline closes it, good's deadline has passed too
    fence = await PusherClient.open(cluster, key="strict-key", secret="strict-secret")
    try:
        signed = pusher.Pusher(app_id="11", key="strict-key", secret="strict-secret").\
            authenticate_user(good.socket_id, {"id": "g"})
        await good.send("pusher:signin", signed)
        await good.expect("pusher:signin_success")
        await bad.send("pusher:signin", {"auth": "strict-key:00", "user_data": '{"id":"b"}'})
        assert (await bad.closed())[0] == 4009
        code, before = await late.closed(timeout=10)
        assert code == 4009 and before[-1]["data"]["code"] == 4009
        assert (await fence.closed(timeout=10))[0] == 4009
        await good.nothing_pending()  # past its deadline, signed in: it stays
    finally:
        for client in (late, bad, good, fence):
            await client.close()


# -- cache channels and subscription counts (PUSHER.md 3) ---------------------------------------


async def test_cache_channels(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        await client.subscribe("cache-prices")
        assert await client.expect("pusher:cache_miss") == {"event": "pusher:cache_miss",
                                                             "channel": "cache-prices"}
        await trigger(cluster, "cache-prices", "price", {"eur": 3})
        assert (await client.expect("price"))["data"] == {"eur": 3}
        late = await PusherClient.open(cluster)
        try:
            await late.subscribe("cache-prices")
            assert (await late.expect("price"))["data"] == {"eur": 3}
        finally:
            await late.close()
    finally:
        await client.close()


async def test_subscription_counts_when_the_app_asks(cluster: Cluster) -> None:
    a, b = await opened(cluster, 2, key="count-key", secret="count-secret")
    try:
        await a.subscribe("counted")
        assert (await a.expect("pusher_internal:subscription_count"))["data"] == {
            "subscription_count": 1}
        await b.subscribe("counted")
        for client in (a, b):
            assert (await client.expect("pusher_internal:subscription_count"))["data"] == {
                "subscription_count": 2}
    finally:
        await a.close()
        await b.close()


# -- the HTTP API's refusals (PUSHER.md 8) ------------------------------------------------------


async def test_the_trigger_api_refuses_what_is_wrong(cluster: Cluster) -> None:
    wrong_secret = pusher.Pusher(app_id=APP_ID, key=KEY, secret="nope", host="127.0.0.1",
                                 port=cluster.port, ssl=False)
    with pytest.raises(pusher.errors.PusherBadAuth):
        await asyncio.to_thread(wrong_secret.trigger, "news", "e", "x")
    other_app = pusher.Pusher(app_id="11", key=KEY, secret=SECRET, host="127.0.0.1",
                              port=cluster.port, ssl=False)
    with pytest.raises(pusher.errors.PusherBadAuth):  # the key is app 10's
        await asyncio.to_thread(other_app.trigger, "news", "e", "x")
    url = f"{cluster.base_url}/apps/{APP_ID}/events"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"{}") as response:  # unsigned
            assert response.status == 401 and "error" in await response.json()
        stale = int(time.time()) - 601
        async with http.post(url + f"?auth_key={KEY}&auth_timestamp={stale}&auth_version=1.0"
                             "&auth_signature=00") as response:
            assert response.status == 401
        async with http.post(url, data=b"x" * (256 * 1024 + 1)) as response:
            assert response.status == 413


async def scrape(cluster: Cluster, pattern: str) -> int:
    """One sample of the server-wide /metrics (whichever front answers sums every process);
    0 for a counter not counted yet."""
    async with aiohttp.ClientSession() as http, http.get(
            cluster.base_url + "/metrics") as response:
        body = await response.text()
    match = re.search(pattern, body)
    return int(match.group(1)) if match else 0


async def test_metrics_name_the_protocol_and_app(cluster: Cluster) -> None:
    client = await PusherClient.open(cluster)
    try:
        assert await scrape(cluster, r'pushy_connections\{transport="websocket",'
                                     r'protocol="pusher",app="10"\} (\d+)') >= 1
        bytes_in = r'pushy_bytes_in_total\{source="trigger"\} (\d+)'
        accepted = r'pushy_pusher_api_requests_total\{status="200"\} (\d+)'
        before, requests = await scrape(cluster, bytes_in), await scrape(cluster, accepted)
        body = b'{"name":"counted","channels":["metrics-c"],"data":"12345"}'
        assert await signed_post(cluster, f"/apps/{APP_ID}/events", body) == {}
        assert await scrape(cluster, bytes_in) == before + len(body)
        assert await scrape(cluster, accepted) == requests + 1
    finally:
        await client.close()


# -- limits and stops on servers of their own ---------------------------------------------------


async def test_app_quota_and_server_capacity(tmp_path: Path) -> None:
    server = Cluster(tmp_path, workers=1, fronts=1, apps=APPS,
                     limits={"max_connections_per_front": 2})
    try:
        first = await PusherClient.open(server, key="quota-key", secret="quota-secret")
        over = await PusherClient.open(server, key="quota-key", secret="quota-secret",
                                       established=False)
        code, before = await over.closed()
        assert code == 4004 and before[0]["data"]["code"] == 4004
        await over.close()
        second = await PusherClient.open(server)
        full = await PusherClient.open(server, established=False)
        code, before = await full.closed()
        assert code == 4100 and before[0]["data"]["code"] == 4100
        for client in (first, second, full):
            await client.close()
    finally:
        assert server.stop() == 0


async def test_a_graceful_stop_closes_4200(tmp_path: Path) -> None:
    server = Cluster(tmp_path, workers=1, fronts=1, apps=APPS)
    client = await PusherClient.open(server)
    try:
        server.process.send_signal(15)
        code, before = await client.closed()
        assert code == 4200 and before[-1]["data"] == {"code": 4200,
                                                       "message": "Server shutting down"}
        assert await asyncio.to_thread(server.process.wait, 15) == 0
    finally:
        await client.close()
        server.stop()


# -- faults (README, When a process dies) -------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    server = Cluster(tmp_path, apps=APPS, timeouts={"trigger": 30})
    yield server
    server.stop()


async def test_a_killed_shard_keeps_presence_without_clients_noticing(own_cluster: Cluster
                                                                      ) -> None:
    cluster = own_cluster
    channel = "presence-survivor"
    shard = shard_for(app_key(APP_ID, channel), cluster.workers)
    ann = await PusherClient.on_front(cluster, 0)
    bob = await PusherClient.on_front(cluster, 1)
    try:
        await ann.subscribe(channel, {"user_id": "ann"})
        await bob.subscribe(channel, {"user_id": "bob"})
        await ann.expect("pusher_internal:member_added")
        mark = cluster.kill("shard", shard)
        cluster.wait_restarted("shard", shard, mark)
        await trigger(cluster, channel, "after", {"ok": True})  # waits for the new shard
        for client in (ann, bob):
            assert (await client.expect("after"))["data"] == {"ok": True}
        cid = await PusherClient.open(cluster)
        try:
            joined = await cid.subscribe(channel, {"user_id": "cid"})
            assert joined["data"]["presence"]["ids"] == ["ann", "bob", "cid"]
            for client in (ann, bob):
                added = await client.expect("pusher_internal:member_added")
                assert added["data"]["user_id"] == "cid"
                await client.nothing_pending()  # no member_removed/added for the restart
        finally:
            await cid.close()
    finally:
        await ann.close()
        await bob.close()


async def test_a_killed_fronts_users_are_removed_for_the_others(own_cluster: Cluster) -> None:
    cluster = own_cluster
    ann = await PusherClient.on_front(cluster, 0)
    bob = await PusherClient.on_front(cluster, 1)
    try:
        await ann.subscribe("presence-fronts", {"user_id": "ann"})
        await bob.subscribe("presence-fronts", {"user_id": "bob"})
        await ann.expect("pusher_internal:member_added")
        mark = cluster.kill("front", 1)
        cluster.wait_restarted("front", 1, mark)
        removed = await ann.expect("pusher_internal:member_removed")
        assert removed["data"] == {"user_id": "bob"}
    finally:
        await ann.close()
        await bob.close()
