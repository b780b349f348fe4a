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
    decode_client_frame,
    message_frame,
    ws_text_frame,
)
from pushy_shard.front.front import Front, new_socket_id
from pushy_shard.front.hub import RAW_WS, SOCKJS_WS, Delivery

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 1024 * 1024  # larger client frames close the socket (1009)
SLOW_CONSUMER_BYTES = 4 * 1024 * 1024  # unsent output past this closes the connection

FRONT_HEADER = "X-Pushy-Front"  # which front answered: for operators and tests

HEARTBEAT_WS = ws_text_frame(HEARTBEAT_FRAME)
GO_AWAY_WS = ws_text_frame(GO_AWAY)


class WebSocketConnection:
    """One WebSocket client (the hub's `Connection`). `write` is synchronous: bytes go to
    the socket buffer now."""

    __slots__ = ("sid", "kind", "transport", "channels", "closed", "ws", "_socket")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, kind: int) -> None:
        self.sid = new_socket_id()
        self.kind = kind
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.ws = ws
        self._socket = request.transport

    def write(self, data: bytes) -> None:
        socket = self._socket
        if self.closed or socket is None or socket.is_closing():
            return
        socket.write(data)
        if socket.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
            log.warning("closing slow consumer %s: over %d bytes unsent", self.sid,
                        SLOW_CONSUMER_BYTES)
            self.closed = True
            socket.abort()  # the reader sees the socket close and cleans up

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


def _valid_session_path(request: web.Request) -> bool:
    server, session = request.match_info["server"], request.match_info["session"]
    return bool(server) and bool(session) and "." not in server and "." not in session


async def _accept(request: web.Request, front: Front) -> web.WebSocketResponse | web.Response:
    """The handshake, with SockJS's answers to requests that are not WebSocket upgrades."""
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.Response(status=400, text='Can "Upgrade" only to "WebSocket".')
    if "upgrade" not in request.headers.get("Connection", "").lower():
        return web.Response(status=400, text='"Connection" must be "Upgrade".')
    ws = web.WebSocketResponse(compress=False, max_msg_size=MAX_FRAME_BYTES, autoping=True,
                               heartbeat=None)
    ws.headers[FRONT_HEADER] = str(front.index)
    await ws.prepare(request)
    return ws


async def serve(request: web.Request, front: Front, kind: int) -> web.StreamResponse:
    if kind == SOCKJS_WS and not _valid_session_path(request):
        raise web.HTTPNotFound()
    ws = await _accept(request, front)
    if not isinstance(ws, web.WebSocketResponse):
        return ws
    conn = WebSocketConnection(ws, request, kind)
    if kind == SOCKJS_WS:
        conn.write(ws_text_frame(OPEN_FRAME))
    front.opened(conn)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                if msg.type == WSMsgType.BINARY:
                    await ws.close(code=1003, message=b"Text frames only")
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
