"""The front's port in one process (front/wire.py): who serves each connection, and that
connections handed to aiohttp stay aiohttp's (keep-alive, shutdown). Real sockets on
loopback, no shards: only commands that need none are sent."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from pushy_shard.core.config import Config, Limits
from pushy_shard.core.rfc6455 import OP_BINARY, OP_CLOSE, OP_TEXT, encode_frame
from pushy_shard.front import websocket
from pushy_shard.front.front import Front
from pushy_shard.front.http import build_app
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.transports import SESSIONS_KEY
from pushy_shard.front.websocket import CLOSE_SECONDS, ClosingSockets, WebSocket
from pushy_shard.front.wire import HEAD_SECONDS, Listener

PREFIX = "/pushy/socket"
KEY = base64.b64encode(b"0123456789abcdef").decode()
SOCKJS = PREFIX + "/000/abc/websocket"
MASK = b"\x01\x02\x03\x04"


@dataclass
class Served:
    front: Front
    listener: Listener
    runner: web.AppRunner
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    config = Config(secret_key="test-secret", limits=Limits(slow_consumer_bytes=64 * 1024))
    front = Front(config, 0)
    pushy = Pushy(front, {})
    closing = ClosingSockets()
    runner = web.AppRunner(build_app(front, pushy, closing=closing), handle_signals=False,
                           access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    assert runner.server is not None
    listener = Listener(front, pushy, Pusher(front), runner.server, closing)
    server = await asyncio.get_running_loop().create_server(listener, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Served(front, listener, runner, port)
    finally:
        server.close()
        listener.close_all()
        stopping = websocket.go_away(front)
        listener.sweep(time.monotonic() + CLOSE_SECONDS + 1)  # clients that never answer
        await asyncio.wait_for(stopping, 5)
        await runner.cleanup()


def upgrade(path: str = PREFIX + "/000/abc/websocket") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n").encode()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, second = await asyncio.wait_for(reader.readexactly(2), 5)
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_fresh_upgrade_is_served_by_the_front_itself(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(upgrade())
    head = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 101 ") and b"X-Pushy-Front: 0" in head
    assert await read_frame(reader) == (OP_TEXT, b"o")
    opcode, connect = await read_frame(reader)
    assert b"pushy:connect" in connect
    (conn,) = served.front.hub.connections.values()
    assert type(conn) is WebSocket
    assert not served.listener.reading
    writer.close()
    await until(lambda: not served.front.hub.connections)


async def test_upgrade_on_a_kept_alive_connection_is_handed_back(served: Served) -> None:
    """aiohttp reads the upgrade (it came after a request aiohttp served); the WebSocket
    is then the front's own, as on a fresh connection."""
    reader, writer = await served.connect()
    writer.write(f"GET {PREFIX}/info HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 200 ")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(upgrade(PREFIX + "/websocket"))
    head = await read_head(reader)
    assert head.startswith(b"HTTP/1.1 101 ") and b"X-Pushy-Front: 0" in head
    assert b"pushy:connect" in (await read_frame(reader))[1]  # raw: no "o"
    (conn,) = served.front.hub.connections.values()
    assert type(conn) is WebSocket
    writer.write(encode_frame(OP_BINARY, b"\x00", mask=MASK))
    opcode, payload = await read_frame(reader)
    assert (opcode, payload[:2]) == (OP_CLOSE, (1003).to_bytes(2, "big"))
    assert payload[2:] == b"Text frames only"
    writer.close()
    await until(lambda: not served.front.hub.connections)
    await until(lambda: not served.runner.server.connections)  # type: ignore[union-attr]


async def test_head_read_byte_by_byte_with_a_pipelined_frame(served: Served) -> None:
    reader, writer = await served.connect()
    data = upgrade(PREFIX + "/websocket") + encode_frame(OP_TEXT, b'{"command":"x"}', mask=MASK)
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
    assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
    assert b"pushy:connect" in (await read_frame(reader))[1]
    assert b'"code":"200"' in (await read_frame(reader))[1]  # unknown command
    writer.close()


async def test_handed_off_keep_alive_connections_close_at_shutdown(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(f"GET {PREFIX} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (await read_head(reader)).startswith(b"HTTP/1.1 200 ")
    await reader.readexactly(len(b"Welcome to SockJS!\n"))
    assert len(served.runner.server.connections) == 1  # type: ignore[union-attr]
    await served.runner.cleanup()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by aiohttp's shutdown
    writer.close()


async def test_slow_heads_are_swept_and_shutdown_closes_heads(served: Served) -> None:
    slow_reader, slow = await served.connect()
    slow.write(b"GET " + PREFIX.encode() + b"/websocket HTTP/1.1\r\nHost: x\r\n")
    other_reader, other = await served.connect()
    await until(lambda: len(served.listener.reading) == 2)
    reader = next(iter(served.listener.reading))
    served.listener.reading[reader] -= HEAD_SECONDS + 1  # as if it connected long ago
    served.listener.sweep(time.monotonic())
    assert len(served.listener.reading) == 1
    served.listener.close_all()
    assert not served.listener.reading
    assert await asyncio.wait_for(slow_reader.read(), 5) == b""
    assert await asyncio.wait_for(other_reader.read(), 5) == b""
    slow.close()
    other.close()


async def test_oversized_head_gets_431(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(upgrade().replace(b"\r\n\r\n", b"\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n"))
    answer = await asyncio.wait_for(reader.read(), 5)
    assert answer.startswith(b"HTTP/1.1 431 ")
    writer.close()


async def test_slow_consumer_is_cut_off(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(upgrade(PREFIX + "/websocket"))
    await read_head(reader)
    await read_frame(reader)
    (conn,) = served.front.hub.connections.values()
    chunk = b'{"event":"e","data":"' + b"x" * 60_000 + b'"}'
    for _ in range(2000):  # the client reads nothing: the socket buffer fills up
        conn.send(chunk)
        if conn.closed:
            break
    assert conn.closed and conn.slow
    assert conn in served.listener.closing.since  # waits for the client, bounded by the sweep
    served.listener.sweep(time.monotonic() + CLOSE_SECONDS + 1)
    await until(lambda: not served.front.hub.connections and not served.listener.closing)
    writer.close()


async def test_go_away_waits_for_the_clients_close_frame(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(upgrade())
    await read_head(reader)
    await read_frame(reader)
    await read_frame(reader)
    stopping = asyncio.ensure_future(websocket.go_away(served.front))
    assert await read_frame(reader) == (
        OP_TEXT, b'c[3000,"Server shutting down, please reconnect"]')
    assert await read_frame(reader) == (
        OP_CLOSE, b"\x03\xe9Server shutting down, please reconnect")
    await asyncio.sleep(0)
    assert not stopping.done() and len(served.listener.closing) == 1
    writer.write(encode_frame(OP_CLOSE, (1001).to_bytes(2, "big"), mask=MASK))
    assert await asyncio.wait_for(reader.read(), 5) == b""  # TCP ends once the client answered
    writer.close()
    await asyncio.wait_for(stopping, 5)  # the client closed its side too
    assert not served.front.hub.connections and not served.listener.closing


async def kept_alive(served: Served, path: str) -> tuple[asyncio.StreamReader,
                                                          asyncio.StreamWriter]:
    """A connection aiohttp serves (one request answered), then an upgrade on it."""
    reader, writer = await served.connect()
    writer.write(f"GET {PREFIX}/info HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = await read_head(reader)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(upgrade(path))
    return reader, writer


async def fresh(served: Served, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await served.connect()
    writer.write(upgrade(path))
    return reader, writer


PROTOCOL_ERRORS = {
    "broken sockjs framing": (encode_frame(OP_TEXT, b'["a', mask=MASK), 1002),
    "unmasked frame": (encode_frame(OP_TEXT, b'["a"]'), 1002),
    "invalid utf-8": (encode_frame(OP_TEXT, b"\xff", mask=MASK), 1007),
}


@pytest.mark.parametrize("path", ["fresh", "kept-alive"])
@pytest.mark.parametrize("error", list(PROTOCOL_ERRORS))
async def test_a_protocol_error_ends_tcp_at_once(served: Served, path: str, error: str) -> None:
    """RFC 6455 7.1.7 on both paths: the close frame, then TCP ends without waiting for a
    client that broke the protocol. The fixture never sweeps, so an end can only be ours."""
    reader, writer = await (fresh if path == "fresh" else kept_alive)(served, SOCKJS)
    assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
    assert await read_frame(reader) == (OP_TEXT, b"o")
    await read_frame(reader)  # pushy:connect
    frame, code = PROTOCOL_ERRORS[error]
    writer.write(frame)
    opcode, payload = await read_frame(reader)
    assert (opcode, int.from_bytes(payload[:2], "big")) == (OP_CLOSE, code)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # never answered our close
    writer.close()
    await until(lambda: not served.front.hub.connections and not served.listener.closing)
    await until(lambda: not served.runner.server.connections)  # type: ignore[union-attr]


@pytest.mark.parametrize("path", ["fresh", "kept-alive"])
async def test_the_clients_close_is_answered_and_tcp_ends(served: Served, path: str) -> None:
    reader, writer = await (fresh if path == "fresh" else kept_alive)(served, SOCKJS)
    assert (await read_head(reader)).startswith(b"HTTP/1.1 101 ")
    await read_frame(reader)
    await read_frame(reader)
    writer.write(encode_frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"bye", mask=MASK))
    assert await read_frame(reader) == (OP_CLOSE, (1000).to_bytes(2, "big"))
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    await until(lambda: not served.front.hub.connections and not served.listener.closing)


async def test_a_client_that_never_closes_is_aborted_by_the_sweep(served: Served) -> None:
    reader, writer = await served.connect()
    writer.write(upgrade(PREFIX + "/websocket"))
    await read_head(reader)
    await read_frame(reader)
    writer.write(encode_frame(OP_BINARY, b"x", mask=MASK))
    assert (await read_frame(reader))[0] == OP_CLOSE
    await until(lambda: len(served.listener.closing) == 1)
    served.listener.sweep(time.monotonic() + CLOSE_SECONDS + 1)
    await until(lambda: not served.front.hub.connections and not served.listener.closing)
    writer.close()


async def test_handler_cancellation_reaches_a_handed_off_request(served: Served) -> None:
    """aiohttp still cancels the handler of a request whose client went away: that is how a
    streaming SockJS session learns its receiver dropped."""
    reader, writer = await served.connect()
    writer.write(f"POST {PREFIX}/000/dropped/xhr_streaming HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 0\r\n\r\n".encode())
    assert (await read_head(reader)).startswith(b"HTTP/1.1 200 ")
    await asyncio.wait_for(reader.readuntil(b"o\n"), 5)  # prelude, then the open frame
    session = served.runner.app[SESSIONS_KEY].get("dropped")
    assert session is not None and session.receiver is not None
    writer.close()
    await until(lambda: session.receiver is None)


async def test_trigger_connections_answer_and_are_swept_when_silent(served: Served) -> None:
    answered_reader, answered = await served.connect()
    answered.write(b"POST /pushy/channel/a/trigger?event=e&timestamp=1&auth_key=k HTTP/1.1\r\n"
                   b"Host: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    head = await read_head(answered_reader)  # served here: refused before any shard
    assert head.startswith(b"HTTP/1.1 400 ") or head.startswith(b"HTTP/1.1 403 "), head
    stalled_reader, stalled = await served.connect()
    stalled.write(b"POST /pushy/channel/a/trigger HTTP/1.1\r\nHost: x\r\n")  # no end
    await until(lambda: len(served.listener.triggers) == 2)
    served.listener.sweep(time.monotonic())  # neither silent long enough yet
    assert len(served.listener.triggers) == 2
    served.listener.sweep(time.monotonic() + HEAD_SECONDS + 1)
    assert await asyncio.wait_for(stalled_reader.read(), 5) == b""
    assert (await asyncio.wait_for(answered_reader.read(), 5)).endswith(b"}")  # then EOF
    await until(lambda: not served.listener.triggers)
    answered.close()
    stalled.close()
