"""A front's own part of /metrics: counted on demand, or once per event, never per member."""

from __future__ import annotations

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import parse_config
from pushy_shard.core.frames import Kind
from pushy_shard.core.metrics import merge
from pushy_shard.front.front import Front
from pushy_shard.front.observe import local_samples
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.websocket import ClosingSockets, WebSocket


class FakeSocket:
    def __init__(self) -> None:
        self.buffered = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no real socket: the Python write path


PUSHY_WS = (("transport", "websocket"), ("protocol", "pushy"))
PUSHY_RAW = (("transport", "raw-websocket"), ("protocol", "pushy"))
PUSHY_XHR = (("transport", "xhr-polling"), ("protocol", "pushy"))


def make_front() -> Front:
    config = parse_config({"secretKey": "s", "demo": False}, env={}, cpu_count=1)
    return Front(config, 0)


def open_conn(front: Front, kind: int) -> tuple[WebSocket, FakeSocket]:
    socket = FakeSocket()
    pushy = Pushy(front, {})
    conn = WebSocket(front, pushy, kind, socket, ClosingSockets())  # type: ignore[arg-type]
    front.opened(conn, pushy)
    return conn, socket


def values(front: Front) -> dict:
    return merge(local_samples(front))


def test_connections_by_transport_and_replies() -> None:
    front = make_front()
    open_conn(front, Kind.SOCKJS_WS)
    open_conn(front, Kind.SOCKJS_WS)
    open_conn(front, Kind.RAW_WS)
    got = values(front)
    assert got[("pushy_connections", PUSHY_WS)] == 2
    assert got[("pushy_connections", PUSHY_RAW)] == 1
    assert got[("pushy_connections", PUSHY_XHR)] == 0
    assert got[("pushy_connections_opened_total", PUSHY_WS)] == 2
    assert got[("pushy_messages_out_total", (("kind", "reply"),))] == 3  # pushy:connect
    assert got[("pushy_bytes_out_total", ())] > 0


def test_fan_out_counts_members_and_bytes_per_event() -> None:
    front = make_front()
    conns = [open_conn(front, Kind.SOCKJS_WS)[0] for _ in range(3)]
    for conn in conns:
        front.hub.joined(MemberState(conn.sid, "c", "c", False, conn.sid[:8], None), b"{}")
    before = values(front)
    front.hub.deliver(link.Deliver("c", conns[0].sid, b"0123456789"))  # no loop: at once
    got = values(front)
    out = ("pushy_messages_out_total", (("kind", "event"),))
    assert got[out] - before[out] == 2
    assert got[("pushy_bytes_out_total", ())] - before[("pushy_bytes_out_total", ())] == 20


async def test_a_slow_consumer_is_counted_when_it_closes() -> None:
    front = make_front()
    conn, socket = open_conn(front, Kind.SOCKJS_WS)
    socket.buffered = front.config.limits.slow_consumer_bytes + 1
    conn.write(b"x")
    assert conn.closed and conn.slow  # closed: the sweep ends TCP if the client never answers
    front.closed(conn)
    got = values(front)
    assert got[("pushy_slow_consumer_disconnects_total", PUSHY_WS)] == 1
    assert got[("pushy_connections", PUSHY_WS)] == 0


def test_client_messages_in() -> None:
    front = make_front()
    conn, _ = open_conn(front, Kind.SOCKJS_WS)
    conn.adapter.message(conn, '{"command": "nope", "data": {"é": 1}}')
    got = values(front)
    assert got[("pushy_messages_in_total", ())] == 1
    assert got[("pushy_bytes_in_total", (("source", "client"),))] == len(
        '{"command": "nope", "data": {"é": 1}}'.encode())
