"""The HTTP session shell (front/sessions.py) and the fan-out bytes (core/frames.py,
front/fanout.py), with fake sockets: what each transport writes on the fast path, that each
kind's bytes are built once per event, and the slow-reader and queue bounds. No processes,
no HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from pushy_shard.core import frames as hub_module
from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import Config, Limits, SockJSOptions
from pushy_shard.core.frames import Delivery, Kind
from pushy_shard.core.session import MAX_QUEUED_MESSAGES, State
from pushy_shard.core.sockjs import quote_bytes
from pushy_shard.errors import STOPPING, TOO_MANY_CONNECTIONS, Close
from pushy_shard.front.fanout import Hub
from pushy_shard.front.front import new_socket_id
from pushy_shard.front.sessions import (
    HttpSession,
    PollingReceiver,
    Sessions,
    StreamingReceiver,
)

SLOW_CONSUMER_BYTES = Limits().slow_consumer_bytes

EVENT = '{"event":"e","channel":"c","data":"é"}'.encode()


class FakeSocket:
    def __init__(self) -> None:
        self.data = bytearray()
        self.buffered = 0
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default  # no real socket: the Python write path


class FakeFront:
    """What Sessions uses of a Front: the hub, its config, the connection callbacks and
    the limit checks."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.hub = Hub(1)
        self.config = Config(secret_key="s", limits=limits or Limits())
        self.closed_sids: list[str] = []
        self.messages: list[str] = []
        self.breaches: list[str] = []

    def admit(self, address: str | None = None) -> Close | None:
        if len(self.hub) < self.config.limits.max_connections_per_front:
            return None
        self.breaches.append("connections_per_front")
        return TOO_MANY_CONNECTIONS

    def breach(self, limit: str, detail: str) -> None:
        self.breaches.append(limit)

    def slow_consumer(self, conn: Any, buffered: int) -> None:
        self.breaches.append("slow_consumer")

    def opened(self, conn: Any, adapter: Any, address: str | None = None) -> None:
        self.hub.add(conn)
        adapter.greet(conn)

    def closed(self, conn: Any) -> None:
        self.hub.remove(conn)
        self.closed_sids.append(conn.sid)

    open_first = False

    @property
    def adapter(self) -> FakeFront:
        """The client protocol of the sessions: this fake, recording their messages."""
        return self

    @staticmethod
    def new_socket_id() -> str:
        return new_socket_id()

    def greet(self, conn: Any) -> None:
        conn.send(b'{"event":"pushy:connect"}')

    def message(self, conn: Any, text: str) -> None:
        self.messages.append(text)

    def activity(self, conn: Any) -> None:
        pass

    def admit_to(self, conn: Any, adapter: Any, address: str | None = None) -> Close | None:
        return self.admit(address)

    def refusal(self, conn: Any, why: Close) -> Close:
        return why

    def goodbye(self, conn: Any) -> Close:
        return STOPPING


@pytest.fixture
def front() -> FakeFront:
    return FakeFront()


@pytest.fixture
def sessions(front: FakeFront) -> Sessions:
    return Sessions(front, SockJSOptions(disconnect_delay=5.0, response_limit=4096))  # type: ignore[arg-type]


def streaming(kind: int = Kind.XHR, chunked: bool = True, limit: int = 4096
              ) -> tuple[StreamingReceiver, FakeSocket]:
    socket = FakeSocket()
    future = asyncio.get_running_loop().create_future()
    receiver = StreamingReceiver(kind, future, socket, chunked, limit,  # type: ignore[arg-type]
                                 SLOW_CONSUMER_BYTES)
    return receiver, socket


def polling(callback: str | None = None) -> PollingReceiver:
    kind = Kind.FRAME if callback else Kind.XHR
    return PollingReceiver(kind, asyncio.get_running_loop().create_future(), callback)


def unchunk(data: bytes) -> bytes:
    body = b""
    while data:
        size, _, rest = data.partition(b"\r\n")
        n = int(size, 16)
        body += rest[:n]
        assert rest[n:n + 2] == b"\r\n"
        data = rest[n + 2:]
    return body


async def test_delivery_builds_each_kind_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = hub_module.quote_bytes

    def counting(message: bytes) -> bytes:
        calls.append(message)
        return real(message)

    monkeypatch.setattr(hub_module, "quote_bytes", counting)
    delivery = Delivery(EVENT)
    for _ in range(3):
        for kind in (Kind.SOCKJS_WS, Kind.XHR, Kind.EVENTSOURCE, Kind.HTMLFILE, Kind.FRAME):
            assert delivery.frame(kind) is delivery.frame(kind)
            assert delivery.chunk(kind) is delivery.chunk(kind)
    assert len(calls) == 1  # one JSON-string encoding for every transport kind
    quoted = quote_bytes(EVENT)
    assert delivery.quoted == quoted
    assert delivery.frame(Kind.XHR) == b"a[" + quoted + b"]\n"
    assert delivery.frame(Kind.EVENTSOURCE) == b"data: a[" + quoted + b"]\r\n\r\n"
    assert delivery.frame(Kind.HTMLFILE).startswith(b"<script>\np(")
    assert unchunk(delivery.chunk(Kind.XHR)) == delivery.frame(Kind.XHR)


async def test_fan_out_shares_one_delivery(sessions: Sessions, front: FakeFront) -> None:
    sockets = []
    for n in range(3):
        session = sessions.open(f"s{n}", "xhr-streaming", Kind.XHR, sessions.front.adapter)
        receiver, socket = streaming()
        session.attach(receiver)
        front.hub.index.setdefault("c", {})[session.sid] = session
        sockets.append(socket)
    front.hub.deliver(link.Deliver("c", None, EVENT))
    front.hub.flush()  # the end of the loop turn, when coalesced deliveries are written
    chunks = [bytes(s.data).split(b"\r\n", 2)[-1] for s in sockets]
    # every member got the same pre-built chunk after its own `o` and pushy:connect
    assert all(s.data.endswith(Delivery(EVENT).chunk(Kind.XHR)) for s in sockets)
    assert len(set(chunks)) == 1


async def test_streaming_session_writes_frames_and_ends_at_the_limit(sessions: Sessions) -> None:
    session = sessions.open("a", "xhr-streaming", Kind.XHR, sessions.front.adapter)
    receiver, socket = streaming(chunked=False, limit=300)
    session.attach(receiver)
    assert socket.data.startswith(b"o\na[")  # open, then pushy:connect
    while not receiver.done.done():
        session.send(EVENT)
    assert receiver.full and receiver.sent >= 300
    assert session.core.state is State.WAITING  # the client reopens; meanwhile messages queue
    written = len(socket.data)
    session.send(EVENT)
    assert len(socket.data) == written and len(session.core.queue) == 1


async def test_polling_answers_one_frame_and_queues_the_rest(sessions: Sessions) -> None:
    session = sessions.open("p", "xhr-polling", Kind.XHR, sessions.front.adapter)
    first = polling()
    session.attach(first)
    assert first.body == b"o\n" and first.done.done()
    second = polling()
    session.attach(second)  # pushy:connect was queued since
    assert second.body.startswith(b'a["{\\"event\\":\\"pushy:connect\\"}"]')
    third = polling()
    session.attach(third)
    assert not third.done.done()
    session.send(EVENT)
    assert third.body == Delivery(EVENT).frame(Kind.XHR)
    session.send(EVENT)
    session.send(EVENT)
    fourth = polling("cb")
    session.attach(fourth)
    assert fourth.body.startswith(b'/**/cb("a[') and fourth.body.count(b"\\\\u00e9") == 0


async def test_second_receiver_is_refused(sessions: Sessions) -> None:
    session = sessions.open("r", "xhr-streaming", Kind.XHR, sessions.front.adapter)
    first, _ = streaming()
    session.attach(first)
    second = polling()
    session.attach(second)
    assert second.body == b'c[2010,"Another connection still open"]\n'
    assert session.receiver is first


async def test_slow_stream_reader_closes_the_session(sessions: Sessions, front: FakeFront
                                                     ) -> None:
    session = sessions.open("slow", "eventsource", Kind.EVENTSOURCE, sessions.front.adapter)
    receiver, socket = streaming(Kind.EVENTSOURCE)
    session.attach(receiver)
    socket.buffered = SLOW_CONSUMER_BYTES + 1
    session.send(EVENT)
    assert socket.aborted and receiver.slow and receiver.done.done()
    assert session.closed and session.core.state is State.CLOSING
    await asyncio.sleep(0)  # the Pushy connection leaves its channels on the next turn
    assert front.closed_sids == [session.sid] and front.breaches == ["slow_consumer"]
    late = polling()
    session.attach(late)
    assert late.body == b'c[1008,"Slow consumer"]\n'  # the reason, to every later request


async def test_queue_over_its_bound_closes_without_touching_the_hub_now(
        sessions: Sessions, front: FakeFront) -> None:
    session: HttpSession = sessions.open("q", "xhr-polling", Kind.XHR, sessions.front.adapter)
    session.attach(polling())  # `o`: the session now waits for its next poll
    member = MemberState(session.sid, "c", "c", False, "0000abcd", None)
    assert front.hub.joined(member, b'{"event":"pushy:subscription-success"}')
    for _ in range(MAX_QUEUED_MESSAGES):
        front.hub.deliver(link.Deliver("c", None, EVENT))
    front.hub.flush()  # the end of the loop turn, when coalesced deliveries are written
    assert front.hub.index["c"]  # still indexed: the fan-out loop was not disturbed
    assert session.closed and front.closed_sids == []
    assert front.breaches == ["session_queue"]
    await asyncio.sleep(0)
    assert front.closed_sids == [session.sid] and "c" not in front.hub.index
    late = polling()
    session.attach(late)
    assert late.body == b'c[1008,"Session queue full"]\n'


async def test_queue_bounds_are_read_from_the_config_at_use() -> None:
    front = FakeFront(Limits(session_queue_messages=3))
    sessions = Sessions(front, SockJSOptions())  # type: ignore[arg-type]
    session = sessions.open("q", "xhr-polling", Kind.XHR, sessions.front.adapter)
    session.attach(polling())
    session.core.take()  # pushy:connect
    for _ in range(3):
        session.send(EVENT)
    assert not session.closed and len(session.core.queue) == 3
    session.send(EVENT)
    assert session.closed and front.breaches == ["session_queue"]


async def test_queue_bytes_bound() -> None:
    front = FakeFront(Limits(session_queue_bytes=3 * len(quote_bytes(EVENT))))
    sessions = Sessions(front, SockJSOptions())  # type: ignore[arg-type]
    session = sessions.open("q", "xhr-polling", Kind.XHR, sessions.front.adapter)
    session.attach(polling())
    session.core.take()  # pushy:connect
    for _ in range(3):
        session.send(EVENT)
    assert not session.closed
    session.send(EVENT)
    assert session.closed


async def test_a_new_session_past_the_connection_limit_gets_a_close_frame() -> None:
    front = FakeFront(Limits(max_connections_per_front=1))
    sessions = Sessions(front, SockJSOptions())  # type: ignore[arg-type]
    first = polling()
    sessions.open("a", "xhr-polling", Kind.XHR, sessions.front.adapter).attach(first)
    assert first.body == b"o\n"
    refused = polling()
    session = sessions.open("b", "xhr-polling", Kind.XHR, sessions.front.adapter)
    session.attach(refused)
    assert refused.body == b'c[1013,"Too many connections"]\n'
    assert session.closed and len(front.hub) == 1
    assert front.breaches == ["connections_per_front"]
    again = polling()
    session.attach(again)  # the session stays closed with its reason until it expires
    assert again.body == b'c[1013,"Too many connections"]\n'


async def test_a_protocol_that_opens_first_refuses_on_an_open_session() -> None:
    """Pusher's clients read why they were refused only on a session that opened: `o`,
    then the close frame on the next poll or later in the same stream."""
    front = FakeFront(Limits(max_connections_per_front=0))
    front.open_first = True
    sessions = Sessions(front, SockJSOptions())  # type: ignore[arg-type]
    first, again = polling(), polling()
    session = sessions.open("a", "xhr-polling", Kind.XHR, front.adapter)
    session.attach(first)
    assert first.body == b"o\n"
    session.attach(again)
    assert again.body == b'c[1013,"Too many connections"]\n'
    receiver, socket = streaming()
    sessions.open("b", "xhr-streaming", Kind.XHR, front.adapter).attach(receiver)
    body = unchunk(bytes(socket.data))
    assert body.endswith(b'o\nc[1013,"Too many connections"]\n'), body
    assert len(front.hub) == 0 and front.breaches == ["connections_per_front"] * 2


async def test_sweep_expires_waiting_sessions_and_sends_heartbeats(
        sessions: Sessions, front: FakeFront) -> None:
    waiting = sessions.open("w", "xhr-polling", Kind.XHR, sessions.front.adapter)
    waiting.attach(polling())
    streaming_session = sessions.open("s", "xhr-streaming", Kind.XHR, sessions.front.adapter)
    receiver, socket = streaming(chunked=False)
    streaming_session.attach(receiver)
    assert waiting.core.deadline is not None
    sessions.sweep(waiting.core.deadline + 30.0)
    assert socket.data.endswith(b"h\n")  # heartbeat to the attached receiver
    assert sessions.get("w") is None and sessions.get("s") is streaming_session
    await asyncio.sleep(0)
    assert front.closed_sids == [waiting.sid]


async def test_client_messages_go_to_pushy_in_order(sessions: Sessions, front: FakeFront
                                                    ) -> None:
    session = sessions.open("m", "xhr-polling", Kind.XHR, sessions.front.adapter)
    session.attach(polling())
    session.receive(["1", "2", "3"])
    assert front.messages == ["1", "2", "3"]
    session.close()
    session.receive(["4"])  # a closed session drops them
    assert front.messages == ["1", "2", "3"]
