"""WebSocket transports: SockJS's `<prefix>/<server>/<session>/websocket` and the raw
`<prefix>/websocket` (PROTOCOL.md 1).

Most WebSockets arrive on a fresh connection and are served by the front's own lean layer
(`wire.py`: no aiohttp objects, no task per connection). An upgrade on a connection aiohttp
already serves (HTTP keep-alive) is served here by aiohttp. Both paths share
`WebSocketConnection`: admission, what we send (pre-built frames written straight to the
socket, so the fan-out loop never awaits, ARCHITECTURE.md 4), the slow-consumer cut-off,
and how a received text message becomes Pushy messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from pushy_shard.core.channels import MemberState
from pushy_shard.core.origins import origin_allowed
from pushy_shard.core.rfc6455 import (
    CLOSE_GOING_AWAY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_UNSUPPORTED_DATA,
    close_frame,
)
from pushy_shard.core.sockjs import (
    GO_AWAY,
    HEARTBEAT_FRAME,
    OPEN_FRAME,
    SockJSFrameError,
    decode_client_frame,
    message_frame,
    ws_text_frame,
)
from pushy_shard.core.sockjs import close_frame as sockjs_close_frame
from pushy_shard.errors import SLOW_CONSUMER
from pushy_shard.front.front import Front, new_socket_id
from pushy_shard.front.hub import RAW_WS, SOCKJS_WS, Delivery

log = logging.getLogger(__name__)

SLOW_CLOSE_GRACE = 5.0  # seconds a slow consumer's close frame may take before an abort

FRONT_HEADER = "X-Pushy-Front"  # which front answered: for operators and tests

OPEN_WS = ws_text_frame(OPEN_FRAME)
HEARTBEAT_WS = ws_text_frame(HEARTBEAT_FRAME)

# Why a connection is failed: (close code, reason), the same on both paths.
Failure = tuple[int, str]
BROKEN_FRAMING: Failure = (CLOSE_PROTOCOL_ERROR, "Broken framing.")  # SockJS closes on it
BINARY_REFUSED: Failure = (CLOSE_UNSUPPORTED_DATA, "Text frames only")


class WebSocketConnection:
    """One WebSocket client (the hub's `Connection`). `write` is synchronous: bytes go to
    the socket buffer now. Kept small: every idle subscriber holds one."""

    __slots__ = ("sid", "kind", "transport", "channels", "closed", "slow", "front", "_socket")

    def __init__(self, front: Front, kind: int, socket: asyncio.Transport | None) -> None:
        self.sid = new_socket_id()
        self.kind = kind
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.slow = False  # closed because its client did not keep up (counted by the front)
        self.front = front
        self._socket = socket

    def open(self, address: str | None) -> Failure | None:
        """The session starts: SockJS `o`, then the hub greets it with pushy:connect. When
        the front refuses it (`Front.admit`), the (code, reason) the caller closes it with
        (SockJS sessions get that `c[...]` frame first)."""
        refusal = self.front.admit(address)
        if refusal is not None:
            if self.kind == SOCKJS_WS:
                self.write(ws_text_frame(sockjs_close_frame(*refusal)))
            return refusal
        if self.kind == SOCKJS_WS:
            self.write(OPEN_WS)
        self.front.opened(self, address)
        return None

    def ended(self) -> None:
        """The socket is gone: leave every channel (the hub ignores a second call)."""
        self.closed = True
        self.front.closed(self)

    def received(self, text: str) -> Failure | None:
        """One text message from the client, handed to the front as Pushy messages; a
        failure to close the connection with, if the SockJS framing is broken."""
        if self.kind == RAW_WS:
            self.front.client_message(self, text)
            return None
        try:
            messages = decode_client_frame(text)
        except SockJSFrameError:
            return BROKEN_FRAMING
        for message in messages:
            self.front.client_message(self, message)
        return None

    def too_large(self) -> None:
        """A client frame over `limits.max_frame_bytes` closes it (1009): count the breach."""
        self.front.breach("frame_bytes", f"closed {self.sid}: frame too large")

    def write(self, data: bytes) -> None:
        socket = self._socket
        if self.closed or socket is None or socket.is_closing():
            return
        socket.write(data)
        buffered = socket.get_write_buffer_size()
        if buffered > self.front.config.limits.slow_consumer_bytes:  # read live (SIGHUP)
            self.closed = self.slow = True
            self.front.slow_consumer(self, buffered)
            close_slow_consumer(socket, self.kind == SOCKJS_WS)

    def deliver(self, delivery: Delivery) -> None:
        self.write(delivery.frame(self.kind))

    def deliver_batch(self, batch: list[Delivery], shared: dict[tuple[int, ...], bytes]) -> None:
        """SockJS: one `a[m1,m2,...]` frame (the protocol allows several messages per
        frame); raw WebSocket: its frames in one write."""
        key = (self.kind, *map(id, batch))
        data = shared.get(key)
        if data is None:
            if self.kind == SOCKJS_WS:
                data = ws_text_frame(message_frame([d.quoted for d in batch]))
            else:
                data = b"".join(d.frame(self.kind) for d in batch)
            shared[key] = data
        self.write(data)

    def send(self, message: bytes) -> None:
        self.write(Delivery(message).frame(self.kind))

    def heartbeat(self) -> None:
        if self.kind == SOCKJS_WS:  # the raw WebSocket has no SockJS framing at all
            self.write(HEARTBEAT_WS)

    async def shut(self, failure: Failure) -> None:
        """Close the WebSocket with `failure`'s code and reason; returns once the client
        closed its side too (each path its own way; callers bound the wait)."""
        raise NotImplementedError


def close_slow_consumer(socket: asyncio.Transport, sockjs: bool) -> None:
    """Queue the close frames (SockJS `c[...]` first on a SockJS session) behind what is
    buffered and close; a client that still reads nothing is aborted after a grace period,
    so the memory held stays bounded. The reader sees the socket close and cleans up."""
    if sockjs:
        socket.write(ws_text_frame(sockjs_close_frame(*SLOW_CONSUMER)))
    socket.write(close_frame(*SLOW_CONSUMER))
    socket.close()
    asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, socket.abort)


class AiohttpWebSocket(WebSocketConnection):
    """A WebSocket that aiohttp serves: an upgrade on a kept-alive HTTP connection."""

    __slots__ = ("ws",)

    def __init__(self, front: Front, kind: int, request: web.Request,
                 ws: web.WebSocketResponse) -> None:
        super().__init__(front, kind, request.transport)
        self.ws = ws

    async def shut(self, failure: Failure) -> None:
        await self.ws.close(code=failure[0], message=failure[1].encode())


def valid_session_path(server: str, session: str) -> bool:
    """SockJS server and session ids: non-empty, no dots (sockjs-protocol BaseUrlServerId)."""
    return bool(server) and bool(session) and "." not in server and "." not in session


def refusal(request: web.Request, front: Front) -> web.Response | None:
    """SockJS's answers to requests that are not WebSocket upgrades, and 403 for a browser
    Origin that `allowed_origins` does not list; None: go on with the handshake."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.Response(status=400, text='Can "Upgrade" only to "WebSocket".')
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return web.Response(status=400, text='"Connection" must be "Upgrade".')
    if not origin_allowed(request.headers.get("Origin"), front.config.allowed_origins):
        return web.Response(status=403, text="Origin not allowed")
    return None


async def serve(request: web.Request, front: Front, kind: int) -> web.StreamResponse:
    """The aiohttp path: handshake, then one reader task until the socket closes."""
    if kind == SOCKJS_WS and not valid_session_path(request.match_info["server"],
                                                    request.match_info["session"]):
        raise web.HTTPNotFound()
    refused = refusal(request, front)
    if refused is not None:
        return refused
    ws = web.WebSocketResponse(compress=False, autoping=True, heartbeat=None,
                               max_msg_size=front.config.limits.max_frame_bytes)
    ws.headers[FRONT_HEADER] = str(front.index)
    await ws.prepare(request)
    conn = AiohttpWebSocket(front, kind, request, ws)
    refused_by_front = conn.open(front.request_address(request))
    if refused_by_front is not None:
        await conn.shut(refused_by_front)
        return ws
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                failure = conn.received(msg.data)
            elif msg.type == WSMsgType.BINARY:
                failure = BINARY_REFUSED
            else:
                if msg.type == WSMsgType.ERROR and getattr(msg.data, "code", 0) == 1009:
                    conn.too_large()
                break
            if failure is not None:
                await conn.shut(failure)
                break
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("websocket %s failed", conn.sid)
    finally:
        conn.ended()
    return ws


def go_away(front: Front, frame: bytes = GO_AWAY, reason: str = "Server shutting down"
            ) -> asyncio.Future[list[Any]]:
    """Server stopping: SockJS close `frame` now, and every WebSocket closes with 1001
    (Going Away) and `reason`; the future resolves when the clients closed their side (the
    caller bounds the wait)."""
    closing = []
    ws_frame = ws_text_frame(frame)
    for conn in front.hub:
        if isinstance(conn, WebSocketConnection):
            if conn.kind == SOCKJS_WS:
                conn.write(ws_frame)
            closing.append(conn.shut((CLOSE_GOING_AWAY, reason)))
    return asyncio.gather(*closing, return_exceptions=True)
