"""The front's own WebSocket layer against the real processes (3 shards, 2 fronts), spoken
to byte by byte: handshake answers, fragmentation, ping/pong, close codes for bad frames and
when TCP ends after them, Origin refusal, an upgrade on a kept-alive HTTP connection (read
by aiohttp, then served by the same layer), many clients."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from collections.abc import Iterator

import pytest

from pushy_shard.core.rfc6455 import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
)
from pushy_shard.front.websocket import CLOSE_SECONDS
from tests.integration.harness import PREFIX, Cluster

KEY = base64.b64encode(b"fastpath-key-16b").decode()
ACCEPT = base64.b64encode(hashlib.sha1(
    (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
MASK = b"\x0a\x0b\x0c\x0d"
SOCKJS_PATH = PREFIX + "/000/wire/websocket"
# "TCP ended at once": well inside the CLOSE_SECONDS a server-started close waits for the
# client, so an end that came from that wait (and the sweep after it) fails the test
AT_ONCE = CLOSE_SECONDS / 2
RAW_PATH = PREFIX + "/websocket"


def client_frame(opcode: int, payload: bytes, **kw: object) -> bytes:
    return encode_frame(opcode, payload, mask=MASK, **kw)  # type: ignore[arg-type]


def subscribe_text(channel: str) -> bytes:
    return json.dumps([json.dumps({"command": "subscribe", "data": {"channel": channel}})]
                      ).encode()


class RawClient:
    """A WebSocket client that sends exactly the bytes a test asks for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, cluster: Cluster) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", cluster.port))

    async def request(self, path: str, headers: dict[str, str] | None = None,
                      after: bytes = b"") -> tuple[int, dict[str, str]]:
        fields = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
                  "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY, **(headers or {})}
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        self.writer.write((head + "\r\n").encode() + after)
        return await self.head()

    async def head(self) -> tuple[int, dict[str, str]]:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        lines = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    async def frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        assert not second & 0x80, "server frames are never masked"
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first & 0x0F, await self.reader.readexactly(size)

    async def kept_alive(self) -> None:
        """One plain request answered first: aiohttp serves this connection from now on."""
        self.send(f"GET {PREFIX}/info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        status, headers = await self.head()
        assert status == 200
        await self.reader.readexactly(int(headers["content-length"]))

    async def opened(self, path: str = SOCKJS_PATH, after: bytes = b"") -> None:
        status, _ = await self.request(path, after=after)
        assert status == 101
        if path != RAW_PATH:
            assert await self.frame() == (OP_TEXT, b"o")
        assert b"pushy:connect" in (await self.frame())[1]

    async def close_frame(self) -> tuple[int, str]:
        """The server's close frame, skipping what came before."""
        while True:
            opcode, payload = await self.frame()
            if opcode == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def closed_with(self) -> tuple[int, str]:
        """The server's close frame; we answer it as a client should, and the server ends
        TCP at once (it waits CLOSE_SECONDS only for a client that does not answer)."""
        closed = await self.close_frame()
        self.send(client_frame(OP_CLOSE, struct.pack("!H", closed[0])))
        assert await asyncio.wait_for(self.reader.read(), AT_ONCE) == b""
        return closed

    async def failed_with(self) -> tuple[int, str]:
        """The server's close frame after a protocol error; we never answer it, and the
        server ends TCP at once anyway."""
        closed = await self.close_frame()
        assert await asyncio.wait_for(self.reader.read(), AT_ONCE) == b""
        return closed

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


async def test_handshake_answer(cluster: Cluster) -> None:
    client = await RawClient.open(cluster)
    try:
        status, headers = await client.request(SOCKJS_PATH)
        assert status == 101
        assert headers["upgrade"].lower() == "websocket"
        assert headers["connection"].lower() == "upgrade"
        assert headers["sec-websocket-accept"] == ACCEPT
        assert headers["x-pushy-front"] in ("0", "1")
        assert "content-length" not in headers
        assert await client.frame() == (OP_TEXT, b"o")
        opcode, payload = await client.frame()
        connect = json.loads(json.loads(payload[1:])[0])
        assert connect["event"] == "pushy:connect"
        assert connect["data"]["protocol"] == "websocket"
    finally:
        client.close()


async def test_not_an_upgrade_gets_sockjs_answers(cluster: Cluster) -> None:
    client = await RawClient.open(cluster)
    try:
        status, _ = await client.request(SOCKJS_PATH, {"Upgrade": "h2c"})
        assert status == 400
    finally:
        client.close()
    client = await RawClient.open(cluster)
    try:
        status, _ = await client.request(PREFIX + "/0.0/abc/websocket")
        assert status == 404
    finally:
        client.close()


async def test_fragmented_text_and_frames_sent_with_the_head(cluster: Cluster) -> None:
    text = subscribe_text("wire-fragments")
    frames = (client_frame(OP_TEXT, text[:5], fin=False)
              + client_frame(OP_PING, b"between")
              + client_frame(OP_CONTINUATION, text[5:20], fin=False)
              + client_frame(OP_CONTINUATION, text[20:]))
    client = await RawClient.open(cluster)
    try:
        await client.opened(after=frames)  # the frames arrive together with the head
        assert await client.frame() == (OP_PONG, b"between")
        opcode, payload = await client.frame()
        assert opcode == OP_TEXT and b"pushy:subscription-success" in payload
        status, _ = await cluster.trigger("wire-fragments", "news", {"n": 1})
        assert status == 201
        opcode, payload = await client.frame()
        assert json.loads(json.loads(payload[1:])[0])["data"] == {"n": 1}
    finally:
        client.close()


async def test_ping_pong_and_close_echo(cluster: Cluster) -> None:
    client = await RawClient.open(cluster)
    try:
        await client.opened(RAW_PATH)
        client.send(client_frame(OP_PING, b"are you there"))
        assert await client.frame() == (OP_PONG, b"are you there")
        client.send(client_frame(OP_PONG, b"unsolicited"))  # ignored
        client.send(client_frame(OP_CLOSE, struct.pack("!H", 1000) + b"bye"))
        assert await client.close_frame() == (1000, "")  # our code echoed
        assert await asyncio.wait_for(client.reader.read(), AT_ONCE) == b""
    finally:
        client.close()


BAD_FRAMES = {  # a protocol error: the server ends TCP without waiting for our answer
    "unmasked": (encode_frame(OP_TEXT, b'["a"]'), 1002),
    "reserved bit": (client_frame(OP_TEXT, b'["a"]', rsv=4), 1002),
    "reserved opcode": (client_frame(0x3, b""), 1002),
    "invalid utf-8": (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
    "too big": (client_frame(OP_TEXT, b"x" * (1024 * 1024 + 1)), 1009),
    "long ping": (client_frame(OP_PING, b"p" * 126), 1002),
    "fragmented ping": (client_frame(OP_PING, b"p", fin=False), 1002),
    "lone continuation": (client_frame(OP_CONTINUATION, b"x"), 1002),
    "broken sockjs json": (client_frame(OP_TEXT, b'["a'), 1002),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_bad_frames_close_with_their_code(cluster: Cluster, name: str) -> None:
    frame, code = BAD_FRAMES[name]
    client = await RawClient.open(cluster)
    try:
        await client.opened()
        client.send(frame)
        closed_code, reason = await client.failed_with()
        assert closed_code == code
        if name == "broken sockjs json":
            assert reason == "Broken framing."
    finally:
        client.close()


async def test_binary_frames_are_refused_with_a_close_the_client_answers(
        cluster: Cluster) -> None:
    """Not a protocol error: the server closes with 1003 and waits for our close frame."""
    client = await RawClient.open(cluster)
    try:
        await client.opened()
        client.send(client_frame(OP_BINARY, b"\x00\x01"))
        assert await client.closed_with() == (1003, "Text frames only")
    finally:
        client.close()


CELLS = {"broken sockjs framing": client_frame(OP_TEXT, b'["a'),
         "unmasked client frame": encode_frame(OP_TEXT, b'["a"]')}


@pytest.mark.parametrize("path", ["fresh upgrade", "kept-alive upgrade"])
@pytest.mark.parametrize("error", list(CELLS))
async def test_a_protocol_error_ends_tcp_at_once_on_both_paths(
        cluster: Cluster, path: str, error: str) -> None:
    """One close policy whichever layer first read the connection: after the close frame
    the server ends TCP at once, although this client never answers the close."""
    client = await RawClient.open(cluster)
    try:
        if path == "kept-alive upgrade":
            await client.kept_alive()
        await client.opened()
        client.send(client_frame(OP_TEXT, subscribe_text("wire-" + path.split()[0])))
        assert b"pushy:subscription-success" in (await client.frame())[1]
        client.send(CELLS[error])
        assert await client.failed_with() == (1002, "Broken framing." if "sockjs" in error
                                              else "Client frames must be masked")
    finally:
        client.close()


async def test_upgrade_on_a_kept_alive_connection(cluster: Cluster) -> None:
    """aiohttp serves the connection after its first request; its upgrade is handed to the
    front's own WebSocket layer, which serves it as a fresh one."""
    client = await RawClient.open(cluster)
    try:
        await client.kept_alive()
        await client.opened(after=client_frame(OP_TEXT, subscribe_text("wire-keepalive")))
        opcode, payload = await client.frame()
        assert b"pushy:subscription-success" in payload
        status, _ = await cluster.trigger("wire-keepalive", "news", {"n": 2})
        assert status == 201
        opcode, payload = await client.frame()
        assert json.loads(json.loads(payload[1:])[0])["data"] == {"n": 2}
        client.send(client_frame(OP_PING, b"still there"))
        assert await client.frame() == (OP_PONG, b"still there")
        client.send(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
        assert await client.close_frame() == (1000, "")
        assert await asyncio.wait_for(client.reader.read(), AT_ONCE) == b""
    finally:
        client.close()


async def test_many_connections(cluster: Cluster) -> None:
    clients = []
    try:
        for _ in range(200):
            clients.append(await RawClient.open(cluster))
        await asyncio.gather(*(c.opened(after=client_frame(OP_TEXT, subscribe_text("crowd")))
                               for c in clients))
        for client in clients:
            assert b"pushy:subscription-success" in (await client.frame())[1]
        status, _ = await cluster.trigger("crowd", "hello", {"all": True})
        assert status == 201
        for client in clients:
            opcode, payload = await client.frame()
            assert json.loads(json.loads(payload[1:])[0])["event"] == "hello"
    finally:
        for client in clients:
            client.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One front, one shard, and an Origin allow-list."""
    server = Cluster(tmp_path_factory.mktemp("origins"), workers=1, fronts=1,
                     allowed_origins=["https://app.example.com"])
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


@pytest.mark.parametrize(("origin", "status"), [
    ("https://app.example.com", 101), (None, 101), ("https://evil.example.com", 403),
    ("null", 403),
])
async def test_origin_is_checked_before_upgrading(guarded: Cluster, origin: str | None,
                                                  status: int) -> None:
    headers = {"Origin": origin} if origin else {}
    for path in (SOCKJS_PATH, RAW_PATH):
        client = await RawClient.open(guarded)
        try:
            assert (await client.request(path, headers))[0] == status
        finally:
            client.close()
