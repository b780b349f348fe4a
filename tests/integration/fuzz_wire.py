"""Raw-socket tools for the live fuzz test: hand-built HTTP requests and WebSocket frames.

aiohttp's own client refuses to send malformed frames or truncated requests, so these speak
HTTP/1.1 and RFC 6455 directly over asyncio streams.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import struct

TIMEOUT = 5.0


async def send_and_drop(port: int, data: bytes) -> None:
    """Write `data` and close at once (a client that vanishes mid-request)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    writer.transport.abort()


async def exchange(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Write `data` and read until the server closes, which it must within TIMEOUT.

    A complete request carries `Connection: close`, so the server closes once it answered.
    With `half_close` our side ends after `data` (for requests that can never complete: the
    server must give up on them); aiohttp drops a request whose client half-closed before
    the answer, so complete requests are sent without it.
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if half_close:
            writer.write_eof()
        chunks = []
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            except ConnectionResetError:
                break  # the server reset a connection it would not read to the end: closed
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.transport.abort()


def status_of(response: bytes) -> int | None:
    """The status of the first response in `response`, or None if there is none."""
    if not response.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):  # 1.0: aiohttp's parser errors
        return None
    return int(response[9:12])


def http_request(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                 *, content_length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if content_length is None:
        content_length = len(body)
    lines.append(f"Content-Length: {content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0,
             length: int | None = None, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    """A client WebSocket frame; `length` overrides the length field (a lie, for fuzzing)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    mask_bit = 0x80 if mask else 0
    if size < 126:
        header = bytes((first, mask_bit | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, size)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, size)
    if not mask:
        return header + payload
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return header + key + masked


class RawWebSocket:
    """A WebSocket client over a plain stream, for frames no library would send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 sockjs: bool) -> None:
        self.reader = reader
        self.writer = writer
        self.sockjs = sockjs

    @classmethod
    async def connect(cls, port: int, path: str, rng: random.Random, sockjs: bool
                      ) -> RawWebSocket:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(rng.randbytes(16)).decode()
        writer.write(upgrade_request(path, key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        ws = cls(reader, writer, sockjs)
        first = await ws.text()
        if sockjs:
            assert first == "o", first
            first = await ws.text()
        assert first is not None and "pushy:connect" in first, first
        return ws

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)

    async def frame(self) -> tuple[int, bytes] | None:
        """The next server frame (opcode, payload), or None once the connection ended."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
            size = head[1] & 0x7F
            if size == 126:
                (size,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif size == 127:
                (size,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None
        return head[0] & 0x0F, payload

    async def text(self) -> str | None:
        """The next text frame's text (heartbeats and pongs skipped), None when closed."""
        while True:
            frame = await self.frame()
            if frame is None or frame[0] == 0x8:
                return None
            if frame[0] == 0x1:
                text = frame[1].decode()
                if text != "h":
                    return text

    async def probe(self) -> str:
        """'closed' if the server ended this connection, 'alive' if it still answers an
        unknown command with pushy:error 200, 'silent' if neither happens within TIMEOUT
        (the server still waits for the rest of a frame whose length we lied about)."""
        try:
            return await self._probe()
        except TimeoutError:
            return "silent"

    async def _probe(self) -> str:
        message = json.dumps({"command": "fuzz-probe", "data": {}})
        payload = json.dumps([message]) if self.sockjs else message
        try:
            self.send(ws_frame(0x1, payload.encode()))
            await self.writer.drain()
        except ConnectionError:
            return "closed"
        while True:
            text = await self.text()
            if text is None:
                return "closed"
            messages = json.loads(text[1:]) if self.sockjs and text.startswith("a") else [text]
            if text.startswith("c"):
                return "closed"
            for item in messages:
                reply = json.loads(item)
                if reply.get("event") == "pushy:error" and reply["data"].get("code") == "200":
                    return "alive"

    def abort(self) -> None:
        self.writer.transport.abort()


def upgrade_request(path: str, key: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n").encode()
