"""SockJS sessions over the HTTP transports: the shell around `core.session`.

An `HttpSession` is the hub's `Connection` for one Pushy client whose SockJS session lives
across HTTP requests. Frames go to its current *receiver* (the open xhr / xhr_streaming /
eventsource / htmlfile / jsonp request) or wait in its bounded queue; the table in
`core/session.py` decides which, and this module only performs what it returns.

Fast path (ARCHITECTURE.md 4): a streaming receiver writes the event's pre-built bytes for
its kind (as a pre-built HTTP/1.1 chunk when the response is chunked) straight to the
socket, after aiohttp has sent the headers and the prelude; a polling receiver takes the
pre-built bytes as its response body. Nothing here awaits: the request handlers
(front/transports.py) await the receiver's `done` future and end the response.

`Sessions` is the front's registry; its `sweep`, called by the front's one periodic task,
sends heartbeats and runs every session's disconnect clock. There are no per-session timers.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic

from pushy_shard.core.channels import MemberState
from pushy_shard.core.config import SockJSOptions
from pushy_shard.core.frames import Delivery, Kind, wrap_frame
from pushy_shard.core.session import Do, Event, Session
from pushy_shard.core.sockjs import (
    ANOTHER_CONNECTION,
    GO_AWAY,
    HEARTBEAT_FRAME,
    OPEN_FRAME,
    http_chunk,
    jsonp_frame,
    message_frame,
    session_close,
)
from pushy_shard.errors import QUEUE_FULL, SESSION_CLOSED, SLOW_CONSUMER, Close
from pushy_shard.front.front import ClientProtocol, Front

log = logging.getLogger(__name__)


class Receiver:
    """One receiving request: where a session's frames go while it lasts.

    `done` resolves when the response must end (it is full, the session closed, or this
    request was refused); the handler awaiting it then finishes the HTTP response.
    """

    __slots__ = ("kind", "done", "full", "slow")

    def __init__(self, kind: int, done: asyncio.Future[None]) -> None:
        self.kind = kind
        self.done = done
        self.full = False  # the response carried all it may: end it, the session waits
        self.slow = False  # the client stopped reading: close the session

    def write(self, frame: bytes) -> None:
        """Write one SockJS frame (`o`, `h`, `a[...]`, `c[...]`) in this transport's form."""
        raise NotImplementedError

    def deliver(self, delivery: Delivery) -> None:
        """Write one event's pre-built bytes."""
        raise NotImplementedError

    def end(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class PollingReceiver(Receiver):
    """xhr and jsonp polling: the first frame becomes the whole response body."""

    __slots__ = ("callback", "body")

    def __init__(self, kind: int, done: asyncio.Future[None], callback: str | None = None
                 ) -> None:
        super().__init__(kind, done)
        self.callback = callback  # jsonp: each request names its own
        self.body = b""

    def write(self, frame: bytes) -> None:
        if self.callback is not None:
            self._take(jsonp_frame(self.callback, frame))
        else:
            self._take(wrap_frame(self.kind, frame))

    def deliver(self, delivery: Delivery) -> None:
        if self.callback is not None:
            self._take(jsonp_frame(self.callback, delivery.frame(Kind.FRAME)))
        else:
            self._take(delivery.frame(self.kind))

    def _take(self, data: bytes) -> None:
        if not self.full:
            self.body = data
            self.full = True


class StreamingReceiver(Receiver):
    """xhr_streaming, eventsource, htmlfile: frames written to the socket as they come,
    until `limit` bytes (sockjs `response_limit`) were sent and the client must reopen.
    Unsent output past `slow_limit` (limits.slow_consumer_bytes, read when the request
    came) marks it `slow`."""

    __slots__ = ("socket", "chunked", "limit", "sent", "slow_limit", "buffered")

    def __init__(self, kind: int, done: asyncio.Future[None], socket: asyncio.Transport,
                 chunked: bool, limit: int, slow_limit: int) -> None:
        super().__init__(kind, done)
        self.socket = socket
        self.chunked = chunked  # HTTP/1.1: aiohttp chose chunked encoding, frames are chunks
        self.limit = limit
        self.sent = 0
        self.slow_limit = slow_limit
        self.buffered = 0

    def write(self, frame: bytes) -> None:
        data = wrap_frame(self.kind, frame)
        self._write(http_chunk(data) if self.chunked else data, len(data))

    def deliver(self, delivery: Delivery) -> None:
        kind = self.kind
        data = delivery.frame(kind)
        self._write(delivery.chunk(kind) if self.chunked else data, len(data))

    def _write(self, data: bytes, size: int) -> None:
        socket = self.socket
        if self.full or socket.is_closing():
            return
        socket.write(data)
        self.sent += size
        if self.sent >= self.limit:
            self.full = True
        buffered = socket.get_write_buffer_size()
        if buffered > self.slow_limit:
            self.slow = True
            self.buffered = buffered
            socket.abort()  # nothing more reaches it; the handler sees the connection drop


class HttpSession:
    """One SockJS session over HTTP, and the hub's Connection for its Pushy client.

    `sid` is the Pushy socketId; the SockJS `session_id` from the URL is never shown to the
    application (sockjs-protocol, Session URLs).
    """

    __slots__ = ("sid", "kind", "transport", "channels", "closed", "slow", "session_id", "core",
                 "receiver", "registry", "address", "close_frame", "adapter")

    def __init__(self, registry: Sessions, session_id: str, transport: str, kind: int,
                 adapter: ClientProtocol, address: str | None = None) -> None:
        self.sid = adapter.new_socket_id()
        self.kind = kind
        self.transport = transport  # the Pushy `protocol`: the transport that opened it
        self.channels: dict[str, MemberState] = {}
        self.closed = False
        self.slow = False  # closed because its client did not keep up (counted by the front)
        self.session_id = session_id
        self.core = Session(registry.options.disconnect_delay)
        self.receiver: Receiver | None = None
        self.registry = registry
        self.address = address  # the client's, as the front sees it (trusted_proxies)
        self.close_frame = GO_AWAY  # what a closed session answers: the reason it closed
        self.adapter = adapter  # the client protocol its messages are in

    # -- the hub's Connection ----------------------------------------------------------------

    def deliver(self, delivery: Delivery) -> None:
        do = self.core.handle(Event.SEND, monotonic())
        if do is Do.WRITE:
            receiver = self.receiver
            assert receiver is not None
            receiver.deliver(delivery)
            self._written(receiver)
        elif do is Do.QUEUE:
            limits = self.registry.front.config.limits
            if not self.core.enqueue(delivery.quoted, limits.session_queue_messages,
                                     limits.session_queue_bytes):
                self.registry.front.breach(
                    "session_queue", f"closing SockJS session {self.sid}: over "
                    f"{limits.session_queue_messages} messages or "
                    f"{limits.session_queue_bytes} bytes queued")
                self.slow = True
                self.close(QUEUE_FULL)

    def deliver_batch(self, batch: list[Delivery], shared: dict[tuple[int, ...], bytes]) -> None:
        for delivery in batch:
            self.deliver(delivery)

    def send(self, message: bytes) -> None:
        self.deliver(Delivery(message))

    def heartbeat(self) -> None:
        if self.core.handle(Event.HEARTBEAT, monotonic()) & Do.HEARTBEAT:
            receiver = self.receiver
            assert receiver is not None
            receiver.write(HEARTBEAT_FRAME)
            self._written(receiver)

    # -- receivers and client messages -------------------------------------------------------

    def attach(self, receiver: Receiver) -> None:
        """A receiving request arrived: open, flush the queue, or refuse it."""
        do = self.core.handle(Event.ATTACH, monotonic())
        if do & (Do.REJECT | Do.CLOSE_FRAME):
            receiver.write(ANOTHER_CONNECTION if do & Do.REJECT else self.close_frame)
            receiver.end()
            return
        self.receiver = receiver
        if do & Do.OPEN:
            # a Pusher client reads why it was refused only on a session that opened
            open_first = self.adapter.open_first
            if open_first:
                receiver.write(OPEN_FRAME)
            refusal = self.registry.front.admit_to(self, self.adapter, self.address)
            if refusal is not None:
                self.close(refusal)
                return
            if not open_first:
                receiver.write(OPEN_FRAME)
        elif do & Do.FLUSH and self.core.queue:
            receiver.write(message_frame(self.core.take()))
        self._written(receiver)
        if do & Do.OPEN:
            self.registry.front.opened(self, self.adapter, self.address)  # greeting after `o`

    def aborted(self, receiver: Receiver) -> None:
        """The receiving request's connection dropped (its handler was cancelled)."""
        if self.receiver is receiver:
            self.receiver = None
            self._perform(self.core.handle(Event.ABORT, monotonic()))

    def receive(self, messages: list[str]) -> None:
        """Messages from xhr_send / jsonp_send: to the client protocol one by one, in order
        (a send, even of none, is activity)."""
        if self.core.handle(Event.CLIENT, monotonic()) & Do.DISPATCH:
            self.adapter.activity(self)
            for text in messages:
                if self.closed:
                    break
                self.adapter.message(self, text)

    def close(self, why: Close = SESSION_CLOSED) -> None:
        """The server ends the session for `why` (errors.Close): its `c[...]` frame now or
        to the next receiver (`c[3000,"Go away!"]` unless a limit or the protocol closed
        it)."""
        if self.core.open:
            self.close_frame = session_close(why)
        self._perform(self.core.handle(Event.CLOSE, monotonic()))

    def expire(self, now: float) -> None:
        if self.core.expired(now):
            self._perform(self.core.handle(Event.EXPIRE, now))

    # -- internals ---------------------------------------------------------------------------

    def _written(self, receiver: Receiver) -> None:
        """After a write: a slow reader closes the session, a full response detaches."""
        if receiver.slow:
            self.registry.front.slow_consumer(self, getattr(receiver, "buffered", 0))
            self.close(SLOW_CONSUMER)
        elif receiver.full and self.receiver is receiver:
            self.receiver = None
            receiver.end()
            self._perform(self.core.handle(Event.DETACH, monotonic()))

    def _perform(self, do: Do) -> None:
        if do & Do.CLOSE_FRAME:
            receiver, self.receiver = self.receiver, None
            if receiver is not None:
                receiver.write(self.close_frame)
                receiver.end()
        if do & Do.LEAVE and not self.closed:
            self.closed = True
            self.registry.leave(self)
        if do & Do.FORGET:
            self.registry.forget(self)


class Sessions:
    """The front's HTTP sessions by SockJS session id, and their one periodic sweep."""

    def __init__(self, front: Front, options: SockJSOptions) -> None:
        self.front = front
        self.options = options
        self.by_id: dict[str, HttpSession] = {}
        self._last_heartbeat = monotonic()

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, session_id: str) -> HttpSession | None:
        return self.by_id.get(session_id)

    def open(self, session_id: str, transport: str, kind: int, adapter: ClientProtocol,
             address: str | None = None) -> HttpSession:
        """The session `session_id`, created (not yet opened) if there is none."""
        session = self.by_id.get(session_id)
        if session is None:
            session = self.by_id[session_id] = HttpSession(self, session_id, transport, kind,
                                                           adapter, address)
        return session

    def forget(self, session: HttpSession) -> None:
        if self.by_id.get(session.session_id) is session:
            del self.by_id[session.session_id]

    def leave(self, session: HttpSession) -> None:
        """The Pushy connection ended: it leaves its channels on the next loop turn, so a
        close inside the fan-out loop never changes the hub's index under it."""
        asyncio.get_running_loop().call_soon(self.front.closed, session)

    def sweep(self, now: float) -> None:
        """Heartbeats when due (to every SockJS connection of the front, WebSockets too),
        then the disconnect clocks: waiting sessions past `disconnect_delay` are closed."""
        if now >= self._last_heartbeat + self.options.heartbeat_delay:  # SIGHUP may change it
            self._last_heartbeat = now
            for conn in self.front.hub:
                conn.heartbeat()
        for session in list(self.by_id.values()):
            session.expire(now)

    def close_all(self) -> None:
        """Server stopping: every session gets its protocol's goodbye (the SockJS close
        frame: now with a receiver, or to its next poll); requests end, they leave
        channels."""
        for session in list(self.by_id.values()):
            session.close(session.adapter.goodbye(session))


def sweep_interval(options: SockJSOptions, longest: float = 1.0) -> float:
    """How often the sweep runs: fine enough for the configured delays, at most `longest`."""
    return max(0.02, min(longest, options.heartbeat_delay / 2, options.disconnect_delay / 4))
