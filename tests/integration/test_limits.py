"""Every limit of config.limits (README, Limits) against the real server, set small: each
breach gets its documented error or close frame, is logged, and the offending client's other
channels and every other client carry on."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.harness import Cluster, PushyClient
from tests.integration.http_client import HttpPushyClient

APP = "https://app.example.com"
LIMITS: dict[str, Any] = {
    "max_message_bytes": 2048,
    "max_frame_bytes": 8192,
    "max_trigger_body": 40_000,
    "max_presence_data": 64,
    "max_channel_length": 24,
    "channel_pattern": "[A-Za-z0-9_:.-]+",
    "max_channels_per_connection": 3,
    "session_queue_messages": 5,
    "slow_consumer_bytes": "64K",
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    server = Cluster(tmp_path_factory.mktemp("limited"), workers=2, limits=LIMITS,
                     allowed_origins=[APP], trusted_proxies=["127.0.0.1"],
                     commands={"address": "tests.integration.custom_commands:address"})
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


async def watcher(cluster: Cluster, channel: str = "watch") -> PushyClient:
    client = await cluster.client()
    await client.subscribe(channel)
    return client


async def delivered(cluster: Cluster, client: PushyClient, channel: str) -> None:
    """A trigger on `channel` reaches `client` (and it had nothing else pending)."""
    data = {"t": time.monotonic_ns()}
    status, _ = await cluster.trigger(channel, "alive", data)
    assert status == 201
    assert await client.next() == {"event": "alive", "channel": channel, "data": data}


def logged(cluster: Cluster, limit: str, mark: int) -> None:
    cluster.log.wait_for(rf"limit {limit}: ", start=mark)


async def test_message_size_and_channel_names(limited: Cluster) -> None:
    ref = await watcher(limited)
    bad = await watcher(limited, "mine")
    mark = limited.log.mark
    try:
        await bad.send("x", {"p": "y" * 3000})
        assert (await bad.expect("pushy:error"))["data"]["code"] == "413"
        logged(limited, "message_bytes", mark)
        for name in ("c" * 25, "a b", "room/1", "é"):
            await bad.send("subscribe", {"channel": name})
            error = await bad.expect("pushy:error")
            assert error["data"]["code"] == "301", (name, error)
        logged(limited, "channel_name", mark)
        await bad.subscribe("c" * 24)
        await delivered(limited, bad, "mine")
        await delivered(limited, ref, "watch")
    finally:
        await bad.close()
        await ref.close()


async def test_a_frame_over_the_limit_closes_only_that_connection(limited: Cluster) -> None:
    ref = await watcher(limited)
    big = await limited.client()
    mark = limited.log.mark
    try:
        await big.ws.send_str(json.dumps(["x" * 9000]))
        msg = await big.ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert big.ws.close_code == 1009
        logged(limited, "frame_bytes", mark)
        await delivered(limited, ref, "watch")
    finally:
        await big.close()
        await ref.close()


async def test_trigger_body_and_channel_names(limited: Cluster) -> None:
    ref = await watcher(limited)
    mark = limited.log.mark
    try:
        status, body = await limited.trigger("watch", "e", {"s": "x" * 41_000})
        assert (status, body["error"]["code"]) == (413, "413")
        logged(limited, "trigger_body", mark)
        for name in ("a b", "c" * 25):
            status, body = await limited.trigger(name, "e", {})
            assert status == 400 and body["error"]["code"] == "400", (name, body)
            assert body["error"]["message"].startswith("Invalid channel name")
        # (logged as limit channel_name too, unless within a second of another such line)
        await delivered(limited, ref, "watch")
        await ref.nothing_pending()
    finally:
        await ref.close()


async def test_presence_data_size(limited: Cluster) -> None:
    from tests.integration.harness import channel_token

    ref = await watcher(limited)
    small = await limited.client()
    big = await limited.client()
    mark = limited.log.mark
    try:
        channel = "private-people"
        data = json.dumps({"name": "ann"})
        await small.subscribe(channel, auth=channel_token(small.socket_id, channel, data),
                              data=data)
        huge = json.dumps({"name": "x" * 100})
        await big.send("subscribe", {"channel": channel, "data": huge,
                                     "auth": channel_token(big.socket_id, channel, huge)})
        failed = await big.expect("pushy:subscription-failed")
        assert failed["data"]["reason"].startswith("Presence data too large")
        logged(limited, "presence_data", mark)
        await small.nothing_pending()  # no presence-add went out
        await delivered(limited, ref, "watch")
    finally:
        for client in (small, big, ref):
            await client.close()


async def test_channels_per_connection(limited: Cluster) -> None:
    ref = await watcher(limited)
    client = await limited.client()
    mark = limited.log.mark
    try:
        for name in ("one", "two", "three"):
            await client.subscribe(name)
        await client.send("subscribe", {"channel": "four"})
        assert (await client.expect("pushy:error"))["data"]["code"] == "302"
        logged(limited, "channels_per_connection", mark)
        await client.send("subscribe", {"channel": "ONE"})  # the usual answer, not 302
        failed = await client.expect("pushy:subscription-failed")
        assert failed["data"]["reason"] == "Already subscribed to this channel"
        for name in ("one", "two", "three"):
            await delivered(limited, client, name)
        await client.call("unsubscribe", {"channel": "one"}, "pushy:subscription-end")
        await client.subscribe("four")
        await delivered(limited, client, "four")
        # subscribes in flight count too: five at once, three fit
        fresh = await limited.client()
        try:
            await fresh.ws.send_str(json.dumps([
                json.dumps({"command": "subscribe", "data": {"channel": f"p{n}"}})
                for n in range(5)]))
            replies = [await fresh.next() for _ in range(5)]
            events = sorted(r["event"] for r in replies)
            assert events == ["pushy:error"] * 2 + ["pushy:subscription-success"] * 3
            assert {r["data"]["code"] for r in replies if r["event"] == "pushy:error"} == {"302"}
        finally:
            await fresh.close()
        await delivered(limited, ref, "watch")
    finally:
        await client.close()
        await ref.close()


async def test_replayed_trigger_is_refused(limited: Cluster) -> None:
    ref = await watcher(limited)
    mark = limited.log.mark
    try:
        ts = int(time.time())
        data = {"pay": 1}
        assert (await limited.trigger("watch", "e", data, timestamp=ts))[0] == 201
        status, body = await limited.trigger("watch", "e", data, timestamp=ts)
        assert (status, body["error"]["code"]) == (409, "409")
        logged(limited, "replay", mark)
        assert (await limited.trigger("watch", "e", {"pay": 2}, timestamp=ts))[0] == 201
        assert (await ref.next())["data"] == {"pay": 1}
        assert (await ref.next())["data"] == {"pay": 2}
        await ref.nothing_pending()  # the replay reached nobody
    finally:
        await ref.close()


async def test_allowed_origins(limited: Cluster) -> None:
    base, prefix = limited.base_url, limited.prefix
    evil = {"Origin": "https://evil.example"}
    mark = limited.log.mark
    async with aiohttp.ClientSession() as http:
        async with http.get(base + prefix + "/info", headers=evil) as r:
            assert r.status == 403
        logged(limited, "origin", mark)
        async with http.get(base + prefix + "/info", headers={"Origin": APP}) as r:
            assert r.status == 200 and (await r.json())["origins"] == [APP]
        async with http.get(base + prefix + "/info", headers={"Origin": base}) as r:
            assert r.status == 200  # same origin: the server's own pages
        async with http.get(base + prefix + "/info") as r:
            assert r.status == 200  # no Origin: not a browser
        async with http.post(base + prefix + "/000/evil/xhr", headers=evil) as r:
            assert r.status == 403
        async with http.get(base + prefix + "/iframe.html", headers=evil) as r:
            assert r.status == 403
        for path in ("/000/evil/websocket", "/websocket"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await http.ws_connect(f"ws://127.0.0.1:{limited.port}{prefix}{path}",
                                      origin="https://evil.example")
            assert info.value.status == 403
        ws = await http.ws_connect(limited.ws_url(), origin=APP)
        assert (await ws.receive(timeout=5)).data == "o"
        await ws.close()


async def test_client_address_behind_a_trusted_proxy(limited: Cluster) -> None:
    async with aiohttp.ClientSession(headers={"X-Forwarded-For": "203.0.113.7"}) as http:
        client = await limited.client(session=http)
        try:
            reply = await client.call("address", {}, "address")
            assert reply["data"]["address"] == "203.0.113.7"
            reply = await client.call("address", {"channel": "addr"}, "address")
            assert reply["data"]["address"] == "203.0.113.7"  # in the shard too
        finally:
            await client.close()


async def test_client_address_of_http_sessions_relayed_or_not(limited: Cluster) -> None:
    """Sessions live on one front; a request the kernel hands to the other is relayed, and
    the address the relaying front saw goes with it."""
    for _ in range(6):  # some of these land on the front that does not own the session
        client = HttpPushyClient(limited, "xhr-polling")
        await client.http.close()
        client.http = aiohttp.ClientSession(headers={"X-Forwarded-For": "203.0.113.8",
                                                     "X-Pushy-Client": "6.6.6.6"})
        try:
            assert await client.frame() == "o"
            await client.expect("pushy:connect")
            reply = await client.call("address", {}, "address")
            assert reply["data"]["address"] == "203.0.113.8"
        finally:
            await client.close()


async def test_session_queue_length(limited: Cluster) -> None:
    ref = await watcher(limited, "queue")
    client = await HttpPushyClient.connect(limited, "xhr-polling", receive=False)
    mark = limited.log.mark
    try:
        await client.subscribe("queue")
        for n in range(6):  # nobody polls: the sixth passes the 5-message queue
            assert (await limited.trigger("queue", "item", {"n": n}))[0] == 201
            assert (await ref.next())["data"] == {"n": n}
        logged(limited, "session_queue", mark)
        assert await client.frame() == 'c[1008,"Session queue full"]'
        await delivered(limited, ref, "queue")
    finally:
        await client.close()
        await ref.close()


async def test_slow_consumer_is_closed_and_others_carry_on(limited: Cluster) -> None:
    slow = await watcher(limited, "flood")
    ref = await watcher(limited, "flood")
    got: list[int] = []
    last = asyncio.Event()
    final: int | None = None  # the number of the last event, once it is sent

    async def read_all() -> None:
        while True:
            got.append((await ref.next(timeout=30))["data"]["n"])
            if got[-1] == final:
                last.set()

    reader = asyncio.ensure_future(read_all())
    mark = limited.log.mark
    sent = 0
    try:
        payload = "x" * 30_000
        while not any("limit slow_consumer" in line for line in limited.log.lines[mark:]):
            assert sent < 2000, "the slow consumer was never closed"
            assert (await limited.trigger("flood", "big", {"n": sent, "s": payload}))[0] == 201
            sent += 1
        # the slow client reads what reached it, then the close frame (or, if it took
        # longer than the grace period, the aborted connection)
        with pytest.raises(ConnectionError):
            while True:
                await slow.next(timeout=30)
        assert slow.closed_with in (None, 'c[1008,"Slow consumer"]')
        final = sent
        status, _ = await limited.trigger("flood", "last", {"n": sent})
        assert status == 201  # the slow one left the channel; the reader is still in it
        await asyncio.wait([asyncio.ensure_future(last.wait()), reader], timeout=30,
                           return_when=asyncio.FIRST_COMPLETED)
        assert last.is_set(), reader
        assert got == list(range(sent + 1))
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await slow.close()
        await ref.close()


# -- limits with a server of their own -------------------------------------------------------


@pytest.fixture
def tight(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    server = Cluster(tmp_path, workers=1, fronts=1, limits=request.param)
    yield server
    server.stop()


@pytest.mark.parametrize("tight", [{"max_connections_per_front": 2}], indirect=True)
async def test_connections_per_front(tight: Cluster) -> None:
    first = await watcher(tight, "a")
    second = await tight.client()
    mark = tight.log.mark
    try:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(tight.ws_url())
            assert (await ws.receive(timeout=5)).data == 'c[1013,"Too many connections"]'
            assert (await ws.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1013
            raw = await http.ws_connect(f"ws://127.0.0.1:{tight.port}{tight.prefix}/websocket")
            assert (await raw.receive(timeout=5)).type == aiohttp.WSMsgType.CLOSE
            assert raw.close_code == 1013
            async with http.post(f"{tight.base_url}{tight.prefix}/000/x1/xhr") as r:
                assert await r.text() == 'c[1013,"Too many connections"]\n'
        logged(tight, "connections_per_front", mark)
        await delivered(tight, first, "a")
        await second.close()
        for _ in range(100):  # the server notices the close on its own time
            try:
                third = await tight.client()
            except (AssertionError, ConnectionError):
                continue
            await third.close()
            break
        else:
            raise AssertionError("a freed slot was never reused")
    finally:
        await first.close()
        await second.close()


@pytest.mark.parametrize("tight", [{"commands_per_second": 1, "commands_burst": 4,
                                    "replay_protection": False}], indirect=True)
async def test_commands_per_second_and_replay_opt_out(tight: Cluster) -> None:
    client = await watcher(tight, "mine")  # one token spent
    other = await tight.client()
    mark = tight.log.mark
    try:
        await client.ws.send_str(json.dumps([json.dumps({"command": "nope"})] * 6))
        codes = [(await client.expect("pushy:error"))["data"]["code"] for _ in range(6)]
        assert codes[:3] == ["200"] * 3 and codes[4:] == ["429"] * 2, codes
        logged(tight, "commands_per_second", mark)
        await delivered(tight, client, "mine")  # its channels are untouched
        await other.subscribe("mine")  # another connection has its own bucket
        # replay protection off: an identical request goes through twice
        ts = int(time.time())
        for _ in range(2):
            assert (await tight.trigger("mine", "same", {"a": 1}, timestamp=ts))[0] == 201
            assert (await other.next())["data"] == {"a": 1}
    finally:
        await client.close()
        await other.close()
