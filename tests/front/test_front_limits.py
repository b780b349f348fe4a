"""Front's limit checks (front/front.py) with a fake connection and fake shard links: the
command bucket, channels per connection (subscribes in flight count), connections per front,
trigger channel rules and the replay signature sent to the shard. No processes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import orjson
import pytest

from pushy_shard.commands import BUILTINS
from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import Config, Limits
from pushy_shard.core.trigger import Trigger
from pushy_shard.errors import (
    STOPPING,
    TOO_MANY_CONNECTIONS,
    InvalidTriggerChannel,
    TriggerReplayed,
)
from pushy_shard.front.front import BREACHES, Front
from pushy_shard.front.pushy import Pushy


class FakeConn:
    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.kind = 0
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.slow = False
        self.sent: list[dict[str, Any]] = []

    def send(self, message: bytes) -> None:
        self.sent.append(json.loads(message))

    def codes(self) -> list[str]:
        return [m["data"]["code"] for m in self.sent if m["event"] == "pushy:error"]


class FakeLinks:
    """Records each request (its op, its body as the link carries it, its future)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, dict[str, Any], asyncio.Future[Any]]] = []

    def request(self, shard: int, request: link.Request, *, timeout: float
                ) -> asyncio.Future[Any]:
        frames = request.encode(b"1")  # NotEncodable here, as the real links raise it
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.requests.append((frames[0], orjson.loads(frames[2]), future))
        return future


def make_front(**limits: Any) -> tuple[Front, Pushy, FakeLinks]:
    front = Front(Config(secret_key="s", workers=1, limits=Limits(**limits)), 0)
    links = FakeLinks()
    front.attach(links)  # type: ignore[arg-type]
    return front, Pushy(front, dict(BUILTINS)), links


def breaches(front: Front, limit: str) -> float:
    return front.metrics.value(BREACHES, (("limit", limit),))


def subscribe(channel: str) -> str:
    return json.dumps({"command": "subscribe", "data": {"channel": channel}})


async def test_commands_over_the_rate_are_dropped_with_429() -> None:
    front, pushy, links = make_front(commands_per_second=0.001, commands_burst=2)
    conn = FakeConn("a")
    front.opened(conn, pushy)  # type: ignore[arg-type]
    for _ in range(4):
        pushy.message(conn, '{"command":"nope"}')  # type: ignore[arg-type]
    assert conn.codes() == ["200", "200", "429", "429"]
    pushy.message(conn, subscribe("x"))  # type: ignore[arg-type]
    assert links.requests == [] and conn.codes()[-1] == "429"  # dropped unread
    assert breaches(front, "commands_per_second") == 3
    other = FakeConn("b")  # its own bucket
    front.opened(other, pushy)  # type: ignore[arg-type]
    pushy.message(other, '{"command":"nope"}')  # type: ignore[arg-type]
    assert other.codes() == ["200"]


async def test_a_reload_changes_the_rate_at_the_next_message() -> None:
    front, pushy, _ = make_front(commands_per_second=0.001, commands_burst=1)
    conn = FakeConn("a")
    front.opened(conn, pushy)  # type: ignore[arg-type]
    pushy.message(conn, '{"command":"nope"}')  # type: ignore[arg-type]
    front.config = dataclasses.replace(front.config, limits=Limits(max_message_bytes=10))
    pushy.message(conn, '{"command":"nope"}')  # type: ignore[arg-type]
    assert conn.codes() == ["200", "429"]  # the bucket is empty; now the new size applies
    pushy.message(conn, "x" * 11)  # type: ignore[arg-type]
    assert conn.codes()[-1] in ("413", "429")


async def test_subscribes_in_flight_count_toward_the_channel_limit() -> None:
    front, pushy, links = make_front(max_channels_per_connection=2)
    conn = FakeConn("a")
    front.opened(conn, pushy)  # type: ignore[arg-type]
    for name in ("one", "two", "three"):
        pushy.message(conn, subscribe(name))  # type: ignore[arg-type]
    assert [body["channel"] for _, body, _ in links.requests] == ["one", "two"]
    assert conn.codes() == ["302"] and breaches(front, "channels_per_connection") == 1
    # "two" is refused by the shard (say), "one" joins: one slot is free again
    conn.channels["one"] = MemberState("a", "one", "one", False, "00000001", None)
    for _, _, future in links.requests:
        future.set_result({})
    await asyncio.sleep(0)
    pushy.message(conn, subscribe("three"))  # type: ignore[arg-type]
    pushy.message(conn, subscribe("ONE"))  # already in: the shard answers that one
    assert [body["channel"] for _, body, _ in links.requests][2:] == ["three", "ONE"]
    pushy.message(conn, subscribe("four"))  # type: ignore[arg-type]
    assert conn.codes() == ["302", "302"]


async def test_connections_per_front() -> None:
    front, pushy, _ = make_front(max_connections_per_front=1)
    assert front.admit("10.0.0.1") is None
    front.opened(FakeConn("a"), pushy)  # type: ignore[arg-type]
    assert front.admit("10.0.0.2") == TOO_MANY_CONNECTIONS
    assert breaches(front, "connections_per_front") == 1


async def test_a_stopping_front_refuses_new_connections_without_a_breach() -> None:
    front, pushy, _ = make_front()
    front.stopping = True
    assert front.admit("10.0.0.1") == STOPPING
    assert breaches(front, "connections_per_front") == 0


async def test_messages_of_a_dropped_connection_are_ignored() -> None:
    front, pushy, links = make_front()
    conn = FakeConn("a")
    front.opened(conn, pushy)  # type: ignore[arg-type]
    front.closed(conn)  # type: ignore[arg-type]
    front.closed(conn)  # type: ignore[arg-type]  # transports may report it twice
    pushy.message(conn, subscribe("x"))  # type: ignore[arg-type]
    assert links.requests == [] and conn.codes() == []


async def test_client_addresses_behind_trusted_proxies() -> None:
    front, pushy, _ = make_front()
    front.config = dataclasses.replace(front.config, trusted_proxies=("127.0.0.1",))

    class Request:
        remote = "127.0.0.1"
        headers = {"X-Forwarded-For": "198.51.100.4, 127.0.0.1"}

    assert front.request_address(Request()) == "198.51.100.4"
    Request.remote = "192.0.2.9"  # not a proxy we trust: its header is ignored
    assert front.request_address(Request()) == "192.0.2.9"


def trigger(channel: str = "room") -> Trigger:
    return Trigger(channel, "e", 1_700_000_000, {}, None, signature="ab" * 32)


async def test_triggers_carry_their_signature_to_the_shard_and_409_on_replay() -> None:
    front, pushy, links = make_front()
    pending = asyncio.ensure_future(pushy.trigger(trigger()))
    await asyncio.sleep(0)
    op, body, future = links.requests[0]
    assert op == link.Trigger.OP and body["sig"] == "ab" * 32 and body["ts"] == 1_700_000_000
    future.set_result({"replay": True})
    with pytest.raises(TriggerReplayed) as info:
        await pending
    assert (info.value.status, info.value.code) == (409, "409")


async def test_replay_protection_off_sends_no_signature() -> None:
    front, pushy, links = make_front(replay_protection=False)
    pending = asyncio.ensure_future(pushy.trigger(trigger()))
    await asyncio.sleep(0)
    _, body, future = links.requests[0]
    assert "sig" not in body
    future.set_result({"members": True})
    assert await pending is True


async def test_trigger_channel_rules() -> None:
    front, pushy, links = make_front(max_channel_length=4, channel_pattern="[a-z]+")
    for name in ("roomy", "Room"):
        with pytest.raises(InvalidTriggerChannel):
            await pushy.trigger(trigger(name))
    assert links.requests == [] and breaches(front, "channel_name") == 2
