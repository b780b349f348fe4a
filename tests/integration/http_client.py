"""A small Pushy client over each SockJS HTTP transport, for the integration tests.

It behaves like sockjs-client: one receiving request at a time (a stream it reopens when the
server ends it at `response_limit`, or one poll after another), messages sent with xhr_send
(jsonp_send for jsonp-polling). Frames are parsed per transport; Pushy messages and the
close frame come out of `next()` in order.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from typing import Any

import aiohttp

from pushy_shard.core.session import owner_front
from tests.integration.harness import TIMEOUT, Cluster

HTTP_TRANSPORTS = ("xhr-streaming", "xhr-polling", "eventsource", "htmlfile", "jsonp-polling")
STREAMING = {"xhr-streaming": "xhr_streaming", "eventsource": "eventsource",
             "htmlfile": "htmlfile"}
CALLBACK = "_jp.cb1"
MAX_FRAME = 1 << 24  # a flush of a full queue is one frame of up to 1 MiB, escaped

_HTMLFILE_FRAME = re.compile(rb'<script>\np\((".*?")\);\n</script>\r\n', re.S)
_JSONP_FRAME = re.compile(rb'^/\*\*/' + re.escape(CALLBACK.encode()) + rb'\((".*")\);\r\n$',
                          re.S)


def session_id_for_front(front: int, fronts: int) -> str:
    """A fresh session id whose session lives on `front` (core.session.owner_front)."""
    while True:
        candidate = uuid.uuid4().hex
        if owner_front(candidate, fronts) == front:
            return candidate


class HttpPushyClient:
    """One SockJS session over an HTTP transport, speaking Pushy."""

    def __init__(self, cluster: Cluster, transport: str, session_id: str | None = None) -> None:
        assert transport in HTTP_TRANSPORTS, transport
        self.cluster = cluster
        self.transport = transport
        self.session_id = session_id or uuid.uuid4().hex
        self.url = (f"{cluster.base_url}{cluster.prefix}/{secrets.randbelow(1000):03d}/"
                    f"{self.session_id}")
        self.http = aiohttp.ClientSession()
        self.frames: asyncio.Queue[str] = asyncio.Queue()
        self.inbox: list[dict[str, Any]] = []
        self.socket_id = ""
        self.front = -1  # the front holding the session (X-Pushy-Front)
        self.receivers = 0  # receiving requests made so far
        self.closed_with: str | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, cluster: Cluster, transport: str, session_id: str | None = None,
                      *, receive: bool = True) -> HttpPushyClient:
        """Open a session. With `receive` False (polling transports) nothing polls in the
        background: each `next()` that finds no frame queued makes one poll."""
        client = cls(cluster, transport, session_id)
        if receive:
            client.start()
        assert await client.frame() == "o"
        connect = await client.expect("pushy:connect")
        assert connect["data"]["protocol"] == transport, connect
        client.socket_id = connect["data"]["socketId"]
        return client

    def start(self) -> None:
        """Keep a receiving request open, as sockjs-client does."""
        self._task = asyncio.ensure_future(self._receive_forever())

    async def _receive_forever(self) -> None:
        while True:
            if self.transport in STREAMING:
                await self.stream()
            else:
                await self.poll()
            if self.closed_with is not None:
                return

    # -- receiving -------------------------------------------------------------------------

    async def poll(self) -> list[str]:
        """One xhr / jsonp poll; its frames go to the queue and are returned."""
        self.receivers += 1
        if self.transport == "xhr-polling":
            response = await self.http.post(self.url + "/xhr")
        else:
            response = await self.http.get(self.url + "/jsonp", params={"c": CALLBACK})
        async with response:
            assert response.status == 200, (response.status, await response.text())
            self.front = int(response.headers["X-Pushy-Front"])
            body = await response.read()
        if self.transport == "xhr-polling":
            assert body.endswith(b"\n") and body.count(b"\n") == 1, body
            frames = [body[:-1].decode()]
        else:
            match = _JSONP_FRAME.match(body)
            assert match is not None, body
            frames = [json.loads(match.group(1))]
        for frame in frames:
            self._frame_in(frame)
        return frames

    async def stream(self) -> None:
        """One streaming request, read to its end."""
        self.receivers += 1
        path = STREAMING[self.transport]
        if self.transport == "xhr-streaming":
            response = await self.http.post(f"{self.url}/{path}")
        else:
            params = {"c": CALLBACK} if self.transport == "htmlfile" else None
            response = await self.http.get(f"{self.url}/{path}", params=params)
        async with response:
            assert response.status == 200, (response.status, await response.text())
            self.front = int(response.headers["X-Pushy-Front"])
            content = response.content
            if self.transport == "xhr-streaming":
                prelude = await content.readexactly(2049)
                assert prelude == b"h" * 2048 + b"\n"
                while line := await content.readuntil(b"\n", max_size=MAX_FRAME):
                    assert line.endswith(b"\n"), line[-100:]
                    self._frame_in(line[:-1].decode())
            elif self.transport == "eventsource":
                assert await content.readexactly(2) == b"\r\n"
                while event := await content.readuntil(b"\r\n\r\n", max_size=MAX_FRAME):
                    if not event.endswith(b"\r\n\r\n"):
                        assert event == b"", event
                        break
                    assert event.startswith(b"data: "), event
                    self._frame_in(event[6:-4].decode())
            else:
                await content.readuntil(b"</script>\n")
                assert (await content.readuntil(b"\r\n\r\n")).strip() == b""
                while chunk := await content.readuntil(b"</script>\r\n", max_size=MAX_FRAME):
                    match = _HTMLFILE_FRAME.fullmatch(chunk)
                    assert match is not None, chunk
                    self._frame_in(json.loads(match.group(1)))

    def _frame_in(self, frame: str) -> None:
        if frame.startswith("c"):
            self.closed_with = frame
        self.frames.put_nowait(frame)

    async def frame(self, timeout: float = TIMEOUT) -> str:
        """The next frame; without a receiving task, a poll fetches it when none is queued."""
        if self._task is None and self.frames.empty():
            if self.transport in STREAMING:
                raise AssertionError("a streaming client needs its receiving task")
            await asyncio.wait_for(self.poll(), timeout)
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next Pushy message (heartbeats skipped); a close frame raises ConnectionError."""
        while not self.inbox:
            frame = await self.frame(timeout)
            if frame.startswith("a"):
                self.inbox.extend(json.loads(text) for text in json.loads(frame[1:]))
            elif frame.startswith("c"):
                raise ConnectionError(f"session closed: {frame}")
        return self.inbox.pop(0)

    async def expect(self, event: str, timeout: float = TIMEOUT, **fields: Any
                     ) -> dict[str, Any]:
        message = await self.next(timeout)
        assert message.get("event") == event, f"expected {event}, got {message}"
        for name, value in fields.items():
            assert message["data"].get(name) == value, f"{name}: {message}"
        return message

    # -- sending ---------------------------------------------------------------------------

    async def send_raw(self, messages: list[str]) -> int:
        payload = json.dumps(messages)
        if self.transport == "jsonp-polling":
            response = await self.http.post(self.url + "/jsonp_send", data={"d": payload})
        else:
            response = await self.http.post(self.url + "/xhr_send", data=payload.encode())
        async with response:
            await response.read()
            return response.status

    async def send(self, command: str, data: Any = None) -> None:
        status = await self.send_raw([json.dumps({"command": command, "data": data or {}})])
        assert status in (200, 204), status

    async def call(self, command: str, data: Any, reply: str, **fields: Any) -> dict[str, Any]:
        await self.send(command, data)
        return await self.expect(reply, **fields)

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        return await self.call("subscribe", {"channel": channel, **extra},
                               "pushy:subscription-success")

    async def nothing_pending(self) -> None:
        """No message was queued before this point: an unknown command's reply is next."""
        await self.send("no-such-command", {})
        await self.expect("pushy:error", code="200")

    async def close(self) -> None:
        """Stop receiving (dropping an open request, as a closed browser tab does)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.http.close()
