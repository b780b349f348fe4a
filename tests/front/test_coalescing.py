"""Events bound for one connection in one loop turn leave in one write (ARCHITECTURE.md 4)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import Limits
from pushy_shard.core.frames import Kind
from pushy_shard.front.fanout import Hub
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.websocket import ClosingSockets, WebSocket


class FakeSocket:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no real socket: the Python write path


def connection(hub: Hub, kind: int, key: str = "c") -> tuple[WebSocket, FakeSocket]:
    socket = FakeSocket()
    front = SimpleNamespace(config=SimpleNamespace(limits=Limits()))
    conn = WebSocket(front, Pushy(front, {}), kind, socket,  # type: ignore[arg-type]
                     ClosingSockets())
    hub.add(conn)
    assert hub.joined(MemberState(conn.sid, key, key, False, "0000abcd", None), b'{"ok":1}')
    socket.writes.clear()
    return conn, socket


def ws_payload(frame: bytes) -> bytes:
    """The payload of one unmasked server text frame (lengths < 126 or 16-bit)."""
    assert frame[0] == 0x81
    size = frame[1]
    return frame[4:] if size == 126 else frame[2:]


def sockjs_messages(frame: bytes) -> list[Any]:
    payload = ws_payload(frame).decode()
    assert payload.startswith("a")
    return [json.loads(text) for text in json.loads(payload[1:])]


async def test_one_write_per_connection_per_loop_turn() -> None:
    hub = Hub(shards=1)
    (_, sock_a), (_, sock_b) = connection(hub, Kind.SOCKJS_WS), connection(hub, Kind.SOCKJS_WS)
    for n in range(3):
        message = json.dumps({"event": "e", "channel": "c", "data": n}).encode()
        hub.deliver(link.Deliver("c", None, message))
    assert sock_a.writes == [] and sock_b.writes == []  # nothing before the turn ends
    hub.flush()
    assert len(sock_a.writes) == 1 and len(sock_b.writes) == 1
    assert sock_a.writes[0] is sock_b.writes[0]  # built once, shared by both members
    assert [m["data"] for m in sockjs_messages(sock_a.writes[0])] == [0, 1, 2]


async def test_direct_reply_waits_for_pending_events() -> None:
    hub = Hub(shards=1)
    conn, socket = connection(hub, Kind.SOCKJS_WS)
    hub.deliver(link.Deliver("c", None, b'{"event":"e","channel":"c","data":1}'))
    hub.left(conn.sid, "c", b'{"event":"pushy:subscription-end","data":{"channel":"c"}}')
    hub.flush()
    events = [m["event"] for frame in socket.writes for m in sockjs_messages(frame)]
    assert events == ["e", "pushy:subscription-end"]


async def test_excluded_member_gets_nothing_and_raw_websocket_frames_join() -> None:
    hub = Hub(shards=1)
    raw, raw_socket = connection(hub, Kind.RAW_WS)
    other, other_socket = connection(hub, Kind.SOCKJS_WS)
    hub.deliver(link.Deliver("c", other.sid, b'{"n":1}'))
    hub.deliver(link.Deliver("c", other.sid, b'{"n":2}'))
    hub.flush()
    assert other_socket.writes == []
    assert raw_socket.writes == [b"\x81\x07{\"n\":1}\x81\x07{\"n\":2}"]
