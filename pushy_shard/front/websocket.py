"""WebSocket transports: SockJS's `<prefix>/<server>/<session>/websocket` and the raw
`<prefix>/websocket` (PROTOCOL.md 1), served by the front's own layer.

Every WebSocket is one `WebSocket`: the socket's asyncio protocol and the hub's connection
in one small object, with no aiohttp request, task or timer. Most arrive on a fresh
connection, whose first head the port reads (`wire.py`); an upgrade on a connection aiohttp
already serves (HTTP keep-alive) is handed over here by `serve`, so both paths frame, limit
and close the same way. Received frames go through the pure `FrameReader`; what we send is
pre-built bytes written straight to the socket, so the fan-out loop never awaits
(ARCHITECTURE.md 4).

How a WebSocket closes (the rows are `errors.Close`):
- the client broke the protocol (bad framing, an unmasked frame, invalid UTF-8, an
  oversized frame, broken SockJS framing): the close frame, then TCP ends at once (our
  FIN; RFC 6455 7.1.7);
- the client sent its close frame: ours answers it, then TCP ends at once (RFC 6455 7.1.1:
  the server starts the TCP close);
- the server closes for another reason (shutdown, slow consumer, a limit, a binary frame):
  the close frame, then up to CLOSE_SECONDS for the client's close frame or FIN; the
  front's sweep aborts a client that sends neither.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from pushy_shard.core.channels import MemberState
from pushy_shard.core.frames import Kind
from pushy_shard.core.handshake import switching_protocols
from pushy_shard.core.origins import origin_allowed
from pushy_shard.core.rfc6455 import (
    CLOSE_TOO_BIG,
    OP_PONG,
    Binary,
    Close,
    FrameReader,
    Ping,
    Text,
    close_frame,
    close_reply,
    encode_frame,
)
from pushy_shard.core.sockjs import (
    HEARTBEAT_FRAME,
    OPEN_FRAME,
    decode_client_frame,
    session_close,
    ws_text_frame,
)
from pushy_shard.errors import (
    BINARY_REFUSED,
    BROKEN_FRAMING,
    FrameError,
    SockJSFrameError,
)
from pushy_shard.errors import Close as Closing
from pushy_shard.front.fanout import SocketConnection, plain_descriptor
from pushy_shard.front.front import ClientProtocol, Front

log = logging.getLogger(__name__)

# A close the server starts waits this long for the client's close frame (or FIN), then
# the sweep ends TCP. A client that broke the protocol gets no such wait.
CLOSE_SECONDS = 5.0

FRONT_HEADER = "X-Pushy-Front"  # which front answered: for operators and tests

OPEN_WS = ws_text_frame(OPEN_FRAME)
HEARTBEAT_WS = ws_text_frame(HEARTBEAT_FRAME)


class ClosingSockets:
    """The WebSockets the server has closed, until their TCP connection is gone: the sweep
    aborts those still open CLOSE_SECONDS after our close frame, and shutdown waits here."""

    def __init__(self) -> None:
        self.since: dict[WebSocket, float] = {}  # -> when we sent our close frame (monotonic)
        self._gone: dict[WebSocket, asyncio.Future[None]] = {}

    def __len__(self) -> int:
        return len(self.since)

    def add(self, conn: WebSocket) -> None:
        self.since.setdefault(conn, time.monotonic())

    def sweep(self, now: float) -> None:
        """Called once a second: abort what its client did not close within CLOSE_SECONDS."""
        late = [conn for conn, since in self.since.items() if now - since > CLOSE_SECONDS]
        for conn in late:
            conn.abort()

    async def until_gone(self, conn: WebSocket) -> None:
        """Once `conn`, closing, is closed by its client (or swept)."""
        if conn in self.since:
            waiter = self._gone.get(conn)
            if waiter is None:
                waiter = self._gone[conn] = asyncio.get_running_loop().create_future()
            await waiter

    def forget(self, conn: WebSocket) -> None:
        """`conn`'s socket is gone: whoever waited for it goes on."""
        self.since.pop(conn, None)
        waiter = self._gone.pop(conn, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class WebSocket(SocketConnection, asyncio.Protocol):
    """One WebSocket client (the hub's `Connection`). Writes are synchronous: bytes go to
    the socket buffer now (fanout.SocketConnection). Kept small: every idle subscriber
    holds one."""

    __slots__ = ("sid", "kind", "transport", "channels", "closed", "slow", "front", "adapter",
                 "_socket", "_fd", "_plain_fd", "_reader", "_closing", "_after")

    def __init__(self, front: Front, adapter: ClientProtocol, kind: int,
                 socket: asyncio.Transport, closing: ClosingSockets,
                 after: Callable[[Exception | None], None] | None = None) -> None:
        self.sid = adapter.new_socket_id()
        self.kind = kind
        self.transport = "websocket"
        self.channels: dict[str, MemberState] = {}
        self.closed = False  # we sent our close frame: nothing more is written or read
        self.slow = False  # closed because its client did not keep up (counted by the front)
        self.front = front
        self.adapter = adapter  # the client protocol its messages are in
        self._socket = socket
        self._plain_fd = plain_descriptor(socket)  # before anything is written to it
        self._fd = -1  # until start(): its protocol is still the head's reader
        self._reader: FrameReader | None = FrameReader(front.config.limits.max_frame_bytes)
        self._closing = closing
        self._after = after  # called once the socket is gone (a handed-over connection)

    def start(self, address: str | None, rest: bytes = b"") -> None:
        """The 101 is sent and this is the socket's protocol: SockJS `o`, then the hub
        greets it with pushy:connect; `rest` holds frames that came with the head. When the
        front refuses it (`Front.admit`) it is closed with that reason instead."""
        if not self._socket.get_write_buffer_size():  # else resume_writing comes to us
            self._fd = self._plain_fd
        refusal = self.front.admit_to(self, self.adapter, address)
        if refusal is not None:
            self.close(refusal)
            return
        if self.kind == Kind.SOCKJS_WS:
            self.write(OPEN_WS)
        self.front.opened(self, self.adapter, address)
        if rest:
            self.data_received(rest)

    # -- what the client sends -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        if self.closed:
            if reader is not None:  # we wait for the client's close frame
                self._after_close(reader, data)
            return
        assert reader is not None
        try:
            for event in reader.feed(data):
                kind = type(event)
                if kind is Text:
                    failure = self._received(cast(Text, event).text)
                elif kind is Ping:
                    self.write(encode_frame(OP_PONG, cast(Ping, event).data))
                    self.adapter.activity(self)
                    continue
                elif kind is Close:
                    self._end(close_reply(cast(Close, event)))
                    return
                elif kind is Binary:
                    failure = BINARY_REFUSED
                else:  # a Pong: the client is alive
                    self.adapter.activity(self)
                    continue
                if failure is not None:
                    self.close(failure)
                    return
                if self.closed:  # closed while handling it (a slow consumer): drop the rest
                    return
        except FrameError as exc:  # RFC 6455 7.1.7: fail the connection
            if exc.code == CLOSE_TOO_BIG:
                self.front.breach("frame_bytes", f"closed {self.sid}: frame too large")
            self.close(exc.close())

    def _received(self, text: str) -> Closing | None:
        """One text message, handed to the client protocol (one message per frame, or the
        messages of a SockJS frame); the close to end the connection with if the SockJS
        framing is broken."""
        if self.kind == Kind.RAW_WS:
            self.adapter.message(self, text)
            return None
        try:
            messages = decode_client_frame(text)
        except SockJSFrameError:
            return BROKEN_FRAMING
        for message in messages:
            self.adapter.message(self, message)
        return None

    def _after_close(self, reader: FrameReader, data: bytes) -> None:
        """We closed and wait for the client's close frame: it, or bytes that break
        framing, end TCP; messages are dropped unread."""
        try:
            for event in reader.feed(data):
                if type(event) is Close:
                    self._end()
                    return
        except FrameError:
            self._end()

    def eof_received(self) -> bool:
        return False  # the client closed its side: close ours

    def pause_writing(self) -> None:
        self._fd = -1  # bytes wait in the transport: the compiled loop may not overtake them

    def resume_writing(self) -> None:
        if not self.closed:
            self._fd = self._plain_fd

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing.forget(self)
        self.closed = True
        self.front.closed(self)  # leave every channel (a second call is ignored)
        after, self._after = self._after, None
        if after is not None:
            after(exc)

    # -- what we send: fanout.SocketConnection writes events and replies ---------------------

    def heartbeat(self) -> None:
        if self.kind == Kind.SOCKJS_WS:  # the raw WebSocket has no SockJS framing at all
            self.write(HEARTBEAT_WS)

    # -- closing -----------------------------------------------------------------------------

    def close(self, why: Closing) -> None:
        """Close with `why` (module docstring): the SockJS `c[...]` frame first on a SockJS
        session, then the close frame, queued behind what is buffered; TCP ends right after
        them for a protocol error, else once the client answers (or the sweep gives up)."""
        if self.closed:
            return
        self.closed = True
        socket = self._socket
        if socket.is_closing():
            return
        if self.kind == Kind.SOCKJS_WS and why.sockjs is not None:
            socket.write(ws_text_frame(session_close(why)))
        frame = close_frame(why.code, why.reason)
        if why.protocol_error:
            self._end(frame)
            return
        socket.write(frame)
        self._closing.add(self)

    async def gone(self) -> None:
        """Once the TCP connection of this closing WebSocket is gone (callers bound it)."""
        await self._closing.until_gone(self)

    def abort(self) -> None:
        self._closing.forget(self)
        self.closed = True
        self._socket.abort()

    def _end(self, frame: bytes = b"") -> None:
        """End TCP now: `frame` (a close frame), then our FIN. What the client still sends
        is read and dropped until it closes its side: closing with its bytes unread would
        reset the connection, and a reset can destroy the close frame before the client
        reads it. The sweep aborts a client that never closes. (TLS has no half-close:
        the socket closes.)"""
        self.closed = True
        self._reader = None  # nothing more is parsed
        socket = self._socket
        if socket.is_closing():
            return
        if frame:
            socket.write(frame)
        self._closing.add(self)
        if socket.can_write_eof():
            socket.write_eof()
        else:
            socket.close()


# -- an upgrade on a connection aiohttp serves ---------------------------------------------


class _Tail:
    """Takes the bytes aiohttp read past an upgrade request (its `set_parser` hands them
    over), so frames sent right behind the head are not lost."""

    def __init__(self) -> None:
        self.data = b""

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.data += data
        return False, b""

    def feed_eof(self) -> None:
        pass


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


async def serve(request: web.Request, front: Front, adapter: ClientProtocol, kind: int,
                closing: ClosingSockets) -> web.StreamResponse:
    """An upgrade aiohttp received (on a kept-alive connection, or one the port left to it):
    aiohttp checks the handshake and answers a bad one as it always did; a good one is
    answered here and the socket becomes a `WebSocket`, so every WebSocket is served by
    one layer. The handler then waits until the socket is gone, so aiohttp leaves it alone
    meanwhile, and tells aiohttp's protocol when it is."""
    if kind == Kind.SOCKJS_WS and not valid_session_path(request.match_info["server"],
                                                    request.match_info["session"]):
        raise web.HTTPNotFound()
    refused = refusal(request, front)
    if refused is not None:
        return refused
    checker = web.WebSocketResponse()
    if not checker.can_prepare(request).ok:
        await checker.prepare(request)  # raises aiohttp's 400 for the broken handshake
    socket, handler = request.transport, request.protocol
    if socket is None or socket.is_closing():
        return web.Response(status=400)  # the client is gone; nobody reads this
    lost = asyncio.get_running_loop().create_future()

    def gone(exc: Exception | None) -> None:
        if not lost.done():
            lost.set_result(None)
        handler.connection_lost(exc)  # aiohttp's bookkeeping of the connection it lent us

    conn = WebSocket(front, adapter, kind, socket, closing, gone)
    tail = _Tail()
    handler.set_parser(cast(Any, tail))
    socket.write(switching_protocols(request.headers["Sec-WebSocket-Key"],
                                     ((FRONT_HEADER, str(front.index)),)))
    socket.set_protocol(conn)
    conn.start(front.request_address(request), tail.data)
    await lost
    return web.Response()  # never sent: the connection is closed


def handler(front: Front, kind: int, adapter_for: Callable[[web.Request], ClientProtocol],
            closing: ClosingSockets, sockjs: bool = True
            ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp route of a WebSocket URL: the upgrade is handed to this layer (`serve`)
    with the client protocol `adapter_for` gives; `sockjs`: `sockjs.websocket` false turns
    the route off (404)."""

    async def upgrade(request: web.Request) -> web.StreamResponse:
        if sockjs and not front.config.sockjs.websocket:
            raise web.HTTPNotFound()
        return await serve(request, front, adapter_for(request), kind, closing)

    return upgrade


def go_away(front: Front) -> asyncio.Future[list[Any]]:
    """Server stopping: every WebSocket closes now with its protocol's goodbye (Pushy: the
    SockJS `c[...]` frame on SockJS sessions, then 1001); the future resolves when their
    TCP connections are gone (the caller bounds the wait)."""
    sockets = [conn for conn in front.hub if isinstance(conn, WebSocket)]
    for conn in sockets:
        conn.close(conn.adapter.goodbye(conn))
    return asyncio.gather(*(conn.gone() for conn in sockets), return_exceptions=True)
