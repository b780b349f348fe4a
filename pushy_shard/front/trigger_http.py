"""Trigger requests served by the front's own HTTP layer, without aiohttp (ARCHITECTURE.md
4's fast path, as for WebSocket upgrades): the keep-alive connection an app server posts
its triggers on is a `TriggerConnection` from its first trigger on.

Each request is parsed here (core/http_head.py, core/http_trigger.py) and answered by the
same functions the aiohttp routes call (http.trigger_answer, pusher_http.trigger_answer),
one request at a time, in order. The first request that is not a plain trigger, with the
bytes after it, is handed to aiohttp, which serves the connection from then on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from multidict import MultiDict

from pushy_shard.core import protocol
from pushy_shard.core.handshake import error_response
from pushy_shard.core.http_head import MAX_HEAD_BYTES, check_size, head_end, parse_head
from pushy_shard.core.http_trigger import (
    TriggerRoute,
    keeps_alive,
    plain_body_length,
    response,
    trigger_route,
)
from pushy_shard.errors import BadRequestHead, HeadTooLarge
from pushy_shard.front import http, pusher_http

if TYPE_CHECKING:
    from pushy_shard.front.wire import Listener

log = logging.getLogger(__name__)


class TriggerConnection(asyncio.Protocol):
    """A connection whose requests so far were triggers."""

    def __init__(self, listener: Listener, socket: asyncio.Transport) -> None:
        self._listener = listener
        self._socket = socket
        self._buffer = b""
        self._busy = False  # a request is being answered: later ones wait in the buffer
        self._closing = False  # answer what is in flight, then close (server stopping)
        self.since = time.monotonic()  # last activity, for the idle sweep

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self.since = time.monotonic()
        if not self._busy:
            self._next()
        elif len(self._buffer) > self._bound():  # pipelined past one request: wait
            self._socket.pause_reading()

    def _bound(self) -> int:
        return MAX_HEAD_BYTES + self._listener.front.config.limits.max_trigger_body

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.triggers.discard(self)
        self._closing = True

    def stale(self, now: float, seconds: float) -> bool:
        """Nothing in flight, and nothing received for `seconds` (idle, or a head or body
        that stopped coming)."""
        return not self._busy and now - self.since > seconds

    def close(self) -> None:
        """Close now when idle, else once the request in flight is answered."""
        self._closing = True
        if not self._busy:
            self._socket.close()

    def _next(self) -> None:
        """Serve the next complete request in the buffer, or hand the connection over."""
        buffer = self._buffer
        if not buffer or self._socket.is_closing():
            return
        config = self._listener.front.config
        try:
            end = head_end(buffer)
            if end < 0:
                check_size(buffer, line_complete=b"\n" in buffer)
                return
            head = parse_head(buffer[:end])
        except HeadTooLarge as exc:
            self._socket.write(error_response(exc.status, exc.message))
            self._socket.close()
            return
        except BadRequestHead:
            self._hand_off()  # aiohttp gives its own answer
            return
        route = trigger_route(head.line, config.pusher_path_prefix)
        size = plain_body_length(head, config.limits.max_trigger_body)
        if route is None or size is None:
            self._hand_off()
            return
        if len(buffer) < end + size:
            return  # the body is still coming
        body, self._buffer = buffer[end:end + size], buffer[end + size:]
        self._busy = True
        answering = self._answer(route, head.get("content-type"), body, keeps_alive(head))
        task = asyncio.get_running_loop().create_task(answering)
        task.add_done_callback(_log_failure)

    async def _answer(self, route: TriggerRoute, content_type: str | None, body: bytes,
                      keep: bool) -> None:
        listener = self._listener
        try:
            if route.protocol == "pushy":
                query: Mapping[str, str] = MultiDict(route.query)
                status, answer, headers = await http.trigger_answer(
                    listener.front, listener.adapter, route.channel, query, body, content_type)
            else:
                status, answer, headers = await pusher_http.trigger_answer(
                    listener.pusher, listener.front.config.pusher_path_prefix, route.path,
                    route.query, route.app_id, body, route.batch)
        except Exception:
            self._socket.write(error_response(500, "Internal Server Error"))
            self._socket.close()
            raise
        close = not keep or self._closing
        if not self._socket.is_closing():
            body = protocol.dumps(answer)
            self._socket.write(response(status, body, headers, time.time(), close))
            if close:
                self._socket.close()
        self._busy = False
        self.since = time.monotonic()
        if not close:
            self._socket.resume_reading()
            self._next()

    def _hand_off(self) -> None:
        self._listener.triggers.discard(self)
        buffer, self._buffer = self._buffer, b""
        self._listener.hand_off(self._socket, buffer)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a trigger failed", exc_info=task.exception())
