"""WebSocket transports: SockJS's `<prefix>/<server>/<session>/websocket` and the raw
`<prefix>/websocket` (PROTOCOL.md 1).

aiohttp does the handshake, reads frames and answers pings; everything we send is a
pre-built frame written straight to the socket (ARCHITECTURE.md 4), so the fan-out loop
never awaits. The two transports differ only in their frame kind and in how a received
text frame splits into Pushy messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSMsgType, web

from pushy_shard.core.channels import MemberState
from pushy_shard.core.sockjs import (
    GO_AWAY,
    HEARTBEAT_FRAME,
    OPEN_FRAME,
    SockJSFrameError,
    close_frame,
    decode_client_frame,
    message_frame,
    ws_close_frame,
    ws_text_frame,
)
from pushy_shard.errors import SLOW_CONSUMER, TOO_MANY_CONNECTIONS
from pushy_shard.front.front import Front, new_socket_id
from pushy_shard.front.hub import RAW_WS, SOCKJS_WS, Delivery

log = logging.getLogger(__name__)

# client frames over config.limits.max_frame_bytes close the socket (1009); unsent output
# over limits.slow_consumer_bytes closes the connection (errors.SLOW_CONSUMER)
SLOW_CLOSE_GRACE = 5.0  # seconds a slow consumer's close frame may take before an abort

FRONT_HEADER = "X-Pushy-Front"  # which front answered: for operators and tests

HEARTBEAT_WS = ws_text_frame(HEARTBEAT_FRAME)
GO_AWAY_WS = ws_text_frame(GO_AWAY)


class WebSocketConnection:
    """One WebSocket client (the hub's `Connection`). `write` is synchronous: bytes go to
    the socket buffer now."""

    __slots__ = ("sid", "kind", "transport", "channels", "closed", "slow", "ws", "front",
                 "_socket")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: int,
                 front: Front) -> None:
        self.sid = new_socket_id()
        self.kind = kind
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.slow = False
        self.ws = ws
        self.front = front
        self._socket = request.transport

    def write(self, data: bytes) -> None:
        socket = self._socket
        if self.closed or socket is None or socket.is_closing():
            return
        socket.write(data)
        buffered = socket.get_write_buffer_size()
        if buffered > self.front.config.limits.slow_consumer_bytes:
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


def close_slow_consumer(socket: asyncio.Transport, sockjs: bool) -> None:
    """Queue the close frames (SockJS `c[...]` first on a SockJS session) behind what is
    buffered and close; a client that still reads nothing is aborted after a grace period,
    so the memory held stays bounded. The reader sees the socket close and cleans up."""
    code, reason = SLOW_CONSUMER
    if sockjs:
        socket.write(ws_text_frame(close_frame(code, reason)))
    socket.write(ws_close_frame(code, reason))
    socket.close()
    asyncio.get_running_loop().call_later(SLOW_CLOSE_GRACE, socket.abort)


async def _refuse(ws: web.WebSocketResponse, kind: int) -> None:
    """Past limits.max_connections_per_front: a close frame with code and reason."""
    code, reason = TOO_MANY_CONNECTIONS
    if kind == SOCKJS_WS:
        await ws.send_str(close_frame(code, reason).decode())
    await ws.close(code=code, message=reason.encode())


def _valid_session_path(request: web.Request) -> bool:
    server, session = request.match_info["server"], request.match_info["session"]
    return bool(server) and bool(session) and "." not in server and "." not in session


async def _accept(request: web.Request, front: Front) -> web.WebSocketResponse | web.Response:
    """The handshake, with SockJS's answers to requests that are not WebSocket upgrades."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.Response(status=400, text='Can "Upgrade" only to "WebSocket".')
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return web.Response(status=400, text='"Connection" must be "Upgrade".')
    ws = web.WebSocketResponse(compress=False, autoping=True, heartbeat=None,
                               max_msg_size=front.config.limits.max_frame_bytes)
    ws.headers[FRONT_HEADER] = str(front.index)
    await ws.prepare(request)
    return ws


async def serve(request: web.Request, front: Front, kind: int) -> web.StreamResponse:
    if kind == SOCKJS_WS and not _valid_session_path(request):
        raise web.HTTPNotFound()
    ws = await _accept(request, front)
    if not isinstance(ws, web.WebSocketResponse):
        return ws
    conn = WebSocketConnection(ws, request, kind, front)
    address = front.request_address(request)
    if not front.admit(address):
        await _refuse(ws, kind)
        return ws
    if kind == SOCKJS_WS:
        conn.write(ws_text_frame(OPEN_FRAME))
    front.opened(conn, address)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await ws.close(code=1003, message=b"Text frames only")
                elif msg.type == WSMsgType.ERROR and getattr(msg.data, "code", 0) == 1009:
                    front.breach("frame_bytes", f"closed {conn.sid}: frame too large")
                break
            if kind == RAW_WS:
                front.client_message(conn, msg.data)
                continue
            try:
                messages = decode_client_frame(msg.data)
            except SockJSFrameError:  # SockJS closes a session on broken framing
                await ws.close(code=1002, message=b"Broken framing.")
                break
            for text in messages:
                front.client_message(conn, text)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("websocket %s failed", conn.sid)
    finally:
        conn.closed = True
        front.closed(conn)
    return ws


def go_away(front: Front, frame: bytes = GO_AWAY, reason: bytes = b"Server shutting down"
            ) -> asyncio.Future[list[Any]]:
    """Server stopping: SockJS close `frame` now, and every WebSocket starts closing with
    1001 (Going Away) and `reason`; the future resolves when the clients answered the close
    (the caller bounds the wait)."""
    closing = []
    ws_frame = GO_AWAY_WS if frame == GO_AWAY else ws_text_frame(frame)
    for conn in front.hub:
        if isinstance(conn, WebSocketConnection):
            if conn.kind == SOCKJS_WS:
                conn.write(ws_frame)
            closing.append(conn.ws.close(code=1001, message=reason))
    return asyncio.gather(*closing, return_exceptions=True)
