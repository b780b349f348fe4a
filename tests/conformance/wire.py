"""Helpers of the conformance tests: plain requests, the header checks the SockJS suite
repeats (CORS, caching, OPTIONS), a raw socket for HTTP/1.0 and chunking, and the Pushy
stand-ins for the suite's echo service.

The suite's test server echoes every message; ours is Pushy, so a message that is not a
JSON object (`"a"`, `"x"`) is answered with `pushy:error` code 100, once per message, and
the open frame is followed by `pushy:connect`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from tests.integration.harness import Cluster

NOT_CACHED = "no-store, no-cache, must-revalidate, max-age=0"
# What a closed session answers. The suite's `close` service answers c[3000,"Go away!"];
# `closed_session` below closes one by overflowing its queue, and Pushy names that reason.
CLOSED = 'c[1008,"Session queue full"]'
ANOTHER = 'c[2010,"Another connection still open"]'
BOGUS = {"event": "pushy:error", "data": {"message": "Bogus message received", "code": "100"}}
UNKNOWN = {"event": "pushy:error", "data": {"message": "Unknown command", "code": "200"}}


def quoted(message: dict[str, Any]) -> str:
    """A Pushy message as it appears in a SockJS `a[...]` frame (compact JSON, quoted)."""
    return json.dumps(json.dumps(message, separators=(",", ":"), ensure_ascii=False),
                      ensure_ascii=False)


def frame(*messages: dict[str, Any]) -> str:
    return "a[" + ",".join(quoted(m) for m in messages) + "]"


def bogus_replies(count: int) -> str:
    """The `a[...]` frame answering `count` non-object messages at once."""
    return frame(*([BOGUS] * count))


@dataclass
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def content_type(self) -> str:
        """Content-Type without spaces, as the suite compares it."""
        return (self.headers.get("Content-Type") or "").replace(" ", "")


async def fetch(method: str, url: str, *, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> Answer:
    """One request on a fresh connection (as the suite's helpers do)."""
    async with aiohttp.ClientSession(skip_auto_headers=("Content-Type",)) as http:
        data = body.encode() if isinstance(body, str) else body
        async with http.request(method, URL(url, encoded=True), data=data,
                                headers=headers or {}) as response:
            return Answer(response.status, response.headers, await response.read())


def new_session(cluster: Cluster, server: str = "000") -> str:
    """A session URL with a fresh session id (`<base>/<server>/<session>`)."""
    return f"{cluster.base_url}{cluster.prefix}/{server}/{uuid.uuid4()}"


async def open_polling(url: str) -> str:
    """Open an xhr-polling session: `o`, then pushy:connect; returns the socketId."""
    r = await fetch("POST", url + "/xhr")
    assert (r.status, r.text) == (200, "o\n")
    r = await fetch("POST", url + "/xhr")
    assert r.status == 200 and r.text.startswith("a[") and r.text.endswith("]\n"), r.text
    (message,) = [json.loads(m) for m in json.loads(r.text[1:])]
    assert message["event"] == "pushy:connect"
    assert message["data"]["protocol"] == "xhr-polling"
    return str(message["data"]["socketId"])


async def closed_session(cluster: Cluster) -> str:
    """A session the server has closed: its queue passed its bound while nobody polled.

    The test suite's `close` service closes sessions at once; Pushy closes one when it
    would hold more than 1 MiB of undelivered messages (limits.session_queue_bytes), and it
    answers CLOSED from then on. Returns the session URL.
    """
    url = new_session(cluster)
    await open_polling(url)
    channel = f"flood-{uuid.uuid4().hex[:8]}"
    command = json.dumps({"command": "subscribe", "data": {"channel": channel}})
    assert (await fetch("POST", url + "/xhr_send", body=json.dumps([command]))).status == 204
    r = await fetch("POST", url + "/xhr")
    assert "subscription-success" in r.text, r.text
    big = "x" * 60_000
    for n in range(60):  # 201 while the session is a member; 200 once it was closed and left
        status, _ = await cluster.trigger(channel, "big", {"n": n, "s": big})
        if status == 200:
            return url
        assert status == 201
    raise AssertionError("the session was never closed")


def assert_cors(r: Answer, origin: str | None = None) -> None:
    """sockjs-protocol 0.3.3 `verify_cors`: the Origin echoed, or `*` (none, or `null`)."""
    expected = origin if origin and origin != "null" else "*"
    assert r.header("Access-Control-Allow-Origin") == expected
    assert r.header("Access-Control-Allow-Credentials") == "true"


def assert_not_cached(r: Answer) -> None:
    assert r.header("Cache-Control") == NOT_CACHED
    assert r.header("Expires") is None and r.header("Last-Modified") is None


def assert_no_cookie(r: Answer) -> None:
    assert r.header("Set-Cookie") is None


def assert_cacheable_for_long(r: Answer) -> None:
    cache = r.header("Cache-Control") or ""
    assert "public" in cache
    assert re.search(r"max-age=[1-9][0-9]{6}", cache), cache
    assert r.header("Expires")


async def assert_options(url: str, methods: str) -> None:
    """sockjs-protocol `verify_options`, for each kind of Origin."""
    for origin in (None, "test", "null"):
        r = await fetch("OPTIONS", url, headers={"Origin": origin} if origin else None)
        assert r.status == 204
        assert_cacheable_for_long(r)
        assert int(r.header("Access-Control-Max-Age") or 0) > 1_000_000
        assert r.header("Access-Control-Allow-Methods") == methods
        assert r.body == b""
        assert_cors(r, origin)


@dataclass
class RawAnswer:
    status: int
    version: str
    headers: dict[str, str]


class RawHttp:
    """An HTTP connection on a plain socket: exact versions, chunks and connection ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, cluster: Cluster) -> RawHttp:
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        return cls(reader, writer)

    async def request(self, method: str, path: str, version: str = "1.1",
                      headers: dict[str, str] | None = None) -> RawAnswer:
        lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if method == "POST":
            lines.append("Content-Length: 0")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        http_version, status, _ = status_line.split(" ", 2)
        fields = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return RawAnswer(int(status), http_version.removeprefix("HTTP/"), fields)

    async def read(self, size: int) -> bytes:
        return await asyncio.wait_for(self.reader.readexactly(size), 10)

    async def read_chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the last one)."""
        size_line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 10)
        size = int(size_line.split(b";")[0], 16)
        data = await self.read(size)
        assert await self.read(2) == b"\r\n"
        return data

    async def read_chunked_until(self, end: bytes) -> bytes:
        """Chunks, joined, until the body so far ends with `end`."""
        body = b""
        while not body.endswith(end):
            chunk = await self.read_chunk()
            assert chunk, f"body ended before {end!r}: {body[-200:]!r}"
            body += chunk
        return body

    async def closed(self) -> bool:
        """True when the server closed the connection (nothing more to read)."""
        return await asyncio.wait_for(self.reader.read(1), 10) == b""

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


class Stream:
    """A streaming response, read piece by piece as the suite's `*_async` helpers do."""

    def __init__(self, http: aiohttp.ClientSession, response: aiohttp.ClientResponse) -> None:
        self.http = http
        self.response = response
        self.status = response.status
        self.headers = response.headers

    @classmethod
    async def open(cls, method: str, url: str, headers: dict[str, str] | None = None
                   ) -> Stream:
        http = aiohttp.ClientSession()
        response = await http.request(method, URL(url, encoded=True), headers=headers or {})
        return cls(http, response)

    def answer(self) -> Answer:
        """The status and headers, for the header checks."""
        return Answer(self.status, self.headers, b"")

    async def read(self, size: int) -> bytes:
        return await asyncio.wait_for(self.response.content.readexactly(size), 10)

    async def until(self, separator: bytes) -> bytes:
        data = await asyncio.wait_for(
            self.response.content.readuntil(separator, max_size=1 << 24), 10)
        assert data.endswith(separator), f"ended before {separator!r}: {data[-200:]!r}"
        return data

    async def rest(self) -> bytes:
        """Everything up to the end of the response (the server must end it)."""
        return await asyncio.wait_for(self.response.content.read(), 10)

    async def close(self) -> None:
        self.response.close()
        await self.http.close()
