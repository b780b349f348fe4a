"""The front's port: every TCP connection starts here (ARCHITECTURE.md 4, "no per-member
task").

A `HeadReader` reads the first request head. A plain WebSocket upgrade on one of the two
WebSocket URLs is answered here, and the connection becomes a `WebSocket` (websocket.py):
one small object that is both the asyncio protocol and the hub's connection, with no
aiohttp request, no task and no timer. Anything else is handed, with the bytes read so far,
to aiohttp's request handler, which then owns the connection (keep-alive, every answer,
shutdown); an upgrade it receives later is handed back to the same layer
(`websocket.serve`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import cast
from urllib.parse import parse_qs

from aiohttp import web

from pushy_shard.core.frames import Kind
from pushy_shard.core.handshake import (
    Route,
    error_response,
    fast_path_candidate,
    pusher_app_key,
    switching_protocols,
    upgrade_key,
)
from pushy_shard.core.http_head import (
    check_size,
    head_end,
    line_end,
    parse_head,
    parse_request_line,
)
from pushy_shard.core.http_trigger import trigger_route
from pushy_shard.core.origins import client_address, origin_allowed
from pushy_shard.errors import BadRequestHead, HeadTooLarge
from pushy_shard.front.front import Front
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.trigger_http import TriggerConnection
from pushy_shard.front.websocket import FRONT_HEADER, ClosingSockets, WebSocket

log = logging.getLogger(__name__)

# A connection that has not finished its first head by then is closed; aiohttp gives an idle
# connection the same time (its keepalive_timeout) before its first request.
HEAD_SECONDS = 75.0


class Listener:
    """The protocol factory of the front's port, and the connections still sending a head."""

    def __init__(self, front: Front, adapter: Pushy, pusher: Pusher,
                 web_server: web.Server, closing: ClosingSockets) -> None:
        self.front = front
        self.adapter = adapter  # the client protocol of the SockJS WebSocket routes (Pushy)
        self.pusher = pusher  # the Pusher apps of `<pusher prefix>/app/<key>`
        self.web_server = web_server  # makes aiohttp's request handler for a connection
        self.closing = closing  # WebSockets we closed, both paths (websocket.py)
        self.reading: dict[HeadReader, float] = {}  # -> when it connected (monotonic)
        self.triggers: set[TriggerConnection] = set()  # trigger_http.py's connections
        self._headers = ((FRONT_HEADER, str(front.index)),)

    def __call__(self) -> HeadReader:
        return HeadReader(self)

    def sweep(self, now: float) -> None:
        """Called once a second: close connections slower than HEAD_SECONDS to send a head,
        and WebSockets whose client did not close within CLOSE_SECONDS of our close frame."""
        late = [reader for reader, since in self.reading.items() if now - since > HEAD_SECONDS]
        for reader in late:
            reader.close()
        # trigger connections silent as long as aiohttp lets its own idle ones be
        for conn in [c for c in self.triggers if c.stale(now, HEAD_SECONDS)]:
            conn.close()
        self.closing.sweep(now)

    def close_all(self) -> None:
        """Server stopping: connections still sending a head are closed, and trigger
        connections once they answered the request in flight."""
        for reader in list(self.reading):
            reader.close()
        for conn in list(self.triggers):
            conn.close()

    def serve_triggers(self, socket: asyncio.Transport, data: bytes) -> None:
        """This layer answers `socket`'s trigger requests, starting with the bytes read."""
        conn = TriggerConnection(self, socket)
        self.triggers.add(conn)
        socket.set_protocol(conn)
        conn.data_received(data)

    def hand_off(self, socket: asyncio.Transport, data: bytes) -> None:
        """aiohttp serves `socket` from now on, starting with the bytes already read."""
        handler = self.web_server()
        handler.connection_made(socket)
        socket.set_protocol(handler)
        if data:
            handler.data_received(data)

    def upgrade(self, socket: asyncio.Transport, route: Route, target: str, key: str,
                rest: bytes, address: str) -> None:
        """Answer 101; `socket` is a WebSocket from now on (`rest`: its first frames)."""
        kind = Kind.SOCKJS_WS if route is Route.SOCKJS else Kind.RAW_WS
        adapter = self.adapter
        if route is Route.PUSHER:
            app_key = pusher_app_key(target, self.front.config.pusher_path_prefix) or ""
            query = parse_qs(target.partition("?")[2])
            adapter = self.pusher.adapter_for(app_key, query.get("protocol", [None])[0])
        conn = WebSocket(self.front, adapter, kind, socket, self.closing)
        socket.write(switching_protocols(key, self._headers))
        socket.set_protocol(conn)
        conn.start(address, rest)


class HeadReader(asyncio.Protocol):
    """A new connection until its first request head says who serves it."""

    __slots__ = ("_listener", "_socket", "_buffer", "_route", "_target")

    def __init__(self, listener: Listener) -> None:
        self._listener = listener
        self._socket: asyncio.Transport | None = None
        self._buffer = b""
        self._route: Route | None = None  # set once the request line names a WebSocket URL
        self._target = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = cast(asyncio.Transport, transport)
        self._listener.reading[self] = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.reading.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self._socket is None or self._socket.is_closing():
            return
        buffer = self._buffer = self._buffer + data if self._buffer else data
        config = self._listener.front.config
        try:
            if self._route is None:
                end = line_end(buffer)
                if end < 0:
                    check_size(buffer, line_complete=False)
                    return
                line = parse_request_line(buffer[:end])
                if trigger_route(line, config.pusher_path_prefix) is not None:
                    self._serve_triggers()
                    return
                route = fast_path_candidate(
                    line, config.sockjs.prefix if config.sockjs.websocket else None,
                    config.pusher_path_prefix)
                if route is None:
                    self._finish(None)
                    return
                self._route = route
                self._target = line.target
            end = head_end(buffer)
            if end < 0:
                check_size(buffer, line_complete=True)
                return
            head = parse_head(buffer[:end])
        except HeadTooLarge as exc:
            self.close(error_response(exc.status, exc.message))
            return
        except BadRequestHead:  # aiohttp gives its own answer
            self._finish(None)
            return
        key = upgrade_key(head)
        if key is None or not origin_allowed(head.get("origin"), config.allowed_origins):
            self._finish(None)  # aiohttp's route answers as SockJS does, or 403
            return
        peer = self._socket.get_extra_info("peername") if self._socket is not None else None
        address = client_address(peer[0] if peer else None, head.get("x-forwarded-for"),
                                 config.trusted_proxies)
        self._finish((key, end, address))

    def eof_received(self) -> bool:
        return False  # an incomplete head: close

    def close(self, answer: bytes = b"") -> None:
        """Close the connection, after writing `answer` (an HTTP error) if given."""
        self._listener.reading.pop(self, None)
        if self._socket is not None:
            if answer:
                self._socket.write(answer)
            self._socket.close()

    def _serve_triggers(self) -> None:
        listener, socket, buffer = self._listener, self._socket, self._buffer
        assert socket is not None
        listener.reading.pop(self, None)
        self._buffer = b""
        listener.serve_triggers(socket, buffer)

    def _finish(self, upgrade: tuple[str, int, str] | None) -> None:
        """Leave the connection to aiohttp (None) or upgrade it with (key, head length,
        client address)."""
        listener, socket, buffer = self._listener, self._socket, self._buffer
        assert socket is not None
        listener.reading.pop(self, None)
        self._buffer = b""
        if upgrade is None:
            listener.hand_off(socket, buffer)
        else:
            assert self._route is not None
            key, end, address = upgrade
            listener.upgrade(socket, self._route, self._target, key, buffer[end:], address)
