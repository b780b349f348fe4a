"""The front's links to every shard: the shell around `core.shard_view` (ARCHITECTURE.md 3, 6).

`ShardLinks` keeps a future per request and performs what the pure view decides (Hello on
connect, Resync and resends on Welcome, Pings and expiries on the tick); it is the one place
the front decodes what shards send, and hands each channel message to its `LinkHandler`.
The link sockets are a transport's: `ZmqTransport` in the front process, an in-memory pair
in tests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

import zmq
from zmq.utils.monitor import parse_monitor_message

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.shard_view import Replay, Send, ShardsView
from pushy_shard.errors import LinkError, LinkUnavailable
from pushy_shard.zmqio import ZmqChannel, tune

log = logging.getLogger(__name__)

BATCH_MESSAGES = 16  # link messages per multipart to a shard (ShardLinks.flush)


class LinkHandler(Protocol):
    """What the front does with the channel messages shards send."""

    def deliver(self, message: link.Deliver) -> None: ...

    def reply(self, message: link.Reply) -> None: ...

    def joined(self, message: link.Joined) -> None: ...

    def left(self, message: link.Left) -> None: ...

    def terminate(self, message: link.Terminate) -> None: ...


class ShardLinks:
    """Requests with futures over every shard's link, and the replay protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, front: int, shards: int,
                 handler: LinkHandler, members_for_shard: Callable[[int], list[MemberState]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self.front = front
        self.incarnation = secrets.token_hex(8)
        self.identity = link.front_identity(front, self.incarnation)
        self.view: ShardsView[asyncio.Future[Any]] = ShardsView(front, shards)
        self.handler = handler
        self.members_for_shard = members_for_shard
        self.clock = clock
        self.send: Callable[[int, list[bytes]], bool] = _unconnected
        self.close_transport: Callable[[], None] = _nothing
        self.send_failures = 0  # messages the transport could not queue (/metrics)
        self.ready: asyncio.Future[None] = loop.create_future()  # every shard answered once
        self._idle_waiters: list[asyncio.Future[None]] = []
        # What this loop turn sends each shard, in order: one multipart at its end (a
        # ZeroMQ message costs the same for one request as for many)
        self._outgoing: dict[int, list[tuple[list[bytes], bytes | None]]] = {}

    # -- requests ------------------------------------------------------------------------------

    def request(self, shard: int, request: link.Request, *, timeout: float
                ) -> asyncio.Future[Any]:
        """Send `request` to `shard`; the future gets the decoded Done body, or
        LinkUnavailable (too many pending, or no answer within `timeout`)."""
        future: asyncio.Future[Any] = self.loop.create_future()
        try:
            send = self.view.request(shard, request, future, self.clock(), timeout)
        except OverflowError as exc:
            future.set_exception(LinkUnavailable(str(exc)))
            return future
        if send is not None:
            self._perform(send)
        return future

    @property
    def in_flight(self) -> int:
        return self.view.in_flight

    def down(self, now: float, stale: float) -> list[int]:
        return self.view.down(now, stale)

    def idle(self) -> asyncio.Future[None]:
        """Resolves once no request is waiting for its answer: a stopping front awaits it
        (bounded) so triggers in flight get their answer and Leaves reach the shards."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._idle_waiters.append(waiter)
        self._settled()
        return waiter

    def tick(self, now: float) -> None:
        """The front's periodic sweep: Pings, and requests past their deadline fail."""
        pings, expired = self.view.tick(now)
        for ping in pings:
            self._perform(ping)
        for future in expired:
            if not future.done():
                future.set_exception(LinkUnavailable("shard timed out"))
        if self._idle_waiters:
            self._settled()

    def close(self) -> None:
        self.flush()
        self.close_transport()

    # -- what the transport reports ------------------------------------------------------------

    def connected(self, shard: int) -> None:
        self._perform(self.view.connected(shard))

    def disconnected(self, shard: int) -> None:
        self.view.disconnected(shard)
        log.warning("front %d: link to shard %d lost", self.front, shard)
        if self._idle_waiters:
            self._settled()

    def received(self, shard: int, frames: list[bytes]) -> None:
        """One multipart message from `shard`: the front's one dispatch of link messages."""
        try:
            for message in link.decode_shard(frames):
                if type(message) is link.Deliver:
                    self.handler.deliver(message)
                elif isinstance(message, link.Done):
                    self._done(shard, message)
                elif isinstance(message, link.Reply):
                    self.handler.reply(message)
                elif isinstance(message, link.Joined):
                    self.handler.joined(message)
                elif isinstance(message, link.Left):
                    self.handler.left(message)
                elif isinstance(message, link.Terminate):
                    self.handler.terminate(message)
                elif isinstance(message, link.Pong):
                    if self.view.pong(shard, self.clock(), message.redis_down):
                        log.warning("front %d: shard %d %s", self.front, shard,
                                    "cannot reach Redis" if message.redis_down
                                    else "reaches Redis again")
                elif isinstance(message, link.Welcome):
                    self._welcomed(shard, message)
        except (LinkError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("front %d: dropped malformed message of shard %d: %s", self.front,
                        shard, exc)

    # -- internals -----------------------------------------------------------------------

    def _perform(self, send: Send) -> None:
        if send.rid is not None:
            self.view.sent(send.shard, send.rid, True)  # not to be re-sent: it is queued
        self._send(send.shard, send.frames, send.rid)

    def _send(self, shard: int, frames: list[bytes], rid: bytes | None = None) -> None:
        if not self._outgoing:
            self.loop.call_soon(self.flush)
        self._outgoing.setdefault(shard, []).append((frames, rid))

    def flush(self) -> None:
        """End of the loop turn: each shard's messages of the turn in multiparts of at most
        BATCH_MESSAGES (a shard's answer to one multipart is built whole: a bounded batch
        bounds what a burst of joins holds in memory at once)."""
        outgoing, self._outgoing = self._outgoing, {}
        for shard, queued in outgoing.items():
            for start in range(0, len(queued), BATCH_MESSAGES):
                messages = queued[start:start + BATCH_MESSAGES]
                if self.send(shard, link.batch([frames for frames, _ in messages])):
                    continue
                self.send_failures += len(messages)
                for _, rid in messages:
                    if rid is not None:
                        self.view.sent(shard, rid, False)  # re-sent after the next Welcome

    def _done(self, shard: int, done: link.Done) -> None:
        future = self.view.done(shard, done.rid)
        if future is not None and not future.done():
            future.set_result(link.load(done.result))
        if self._idle_waiters:
            self._settled()

    def _welcomed(self, shard: int, welcome: link.Welcome) -> None:
        replay, resend = self.view.welcomed(shard, welcome, self.clock())
        if replay is not None:
            self._replay(replay)
        if not self.ready.done() and self.view.all_synced:
            self.ready.set_result(None)
        for send in resend:
            self._perform(send)

    def _replay(self, replay: Replay) -> None:
        members = tuple(self.members_for_shard(replay.shard))
        resync = link.Resync(self.front, replay.incarnation, members)
        self._send(replay.shard, resync.encode())
        if replay.restarted:
            log.info("front %d: shard %d restarted, replayed %d members",
                     self.front, replay.shard, len(members))

    def _settled(self) -> None:
        """Wake `idle()` waiters once nothing is pending. Callbacks of answered futures run
        on a later loop turn and may send more (a handler's forwarded broadcast), so the
        waiting side checks `in_flight` again after a loop turn."""
        if self.in_flight:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


def _unconnected(shard: int, frames: list[bytes]) -> bool:
    return False


def _nothing() -> None:
    pass


class ZmqTransport:
    """DEALER sockets to every shard endpoint, feeding `links`; one per front process."""

    def __init__(self, links: ShardLinks, endpoints: list[str]) -> None:
        self.context = zmq.Context()
        self.channels: list[ZmqChannel] = []
        self.monitors: list[ZmqChannel] = []
        loop = links.loop
        for index, endpoint in enumerate(endpoints):
            sock = self.context.socket(zmq.DEALER)
            tune(sock)
            sock.setsockopt(zmq.IDENTITY, links.identity)
            sock.setsockopt(zmq.RECONNECT_IVL, 50)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
            monitor_sock = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
            sock.connect(endpoint)
            name = f"front {links.front} <- shard {index}"
            self.channels.append(ZmqChannel(loop, sock, _bound(links.received, index), name))
            self.monitors.append(ZmqChannel(loop, monitor_sock, self._watcher(links, index),
                                            f"monitor {index}"))
        links.send = self.send
        links.close_transport = self.close

    def send(self, shard: int, frames: list[bytes]) -> bool:
        return self.channels[shard].send(frames)

    def close(self) -> None:
        for monitor, channel in zip(self.monitors, self.channels, strict=True):
            monitor.close()
            channel.close()
        self.context.term()

    @staticmethod
    def _watcher(links: ShardLinks, shard: int) -> Callable[[list[bytes]], None]:
        def watch(frames: list[bytes]) -> None:
            event = parse_monitor_message(frames)["event"]
            if event == zmq.EVENT_CONNECTED:
                links.connected(shard)
            elif event == zmq.EVENT_DISCONNECTED:
                links.disconnected(shard)

        return watch


def _bound(received: Callable[[int, list[bytes]], None], shard: int
           ) -> Callable[[list[bytes]], None]:
    return lambda frames: received(shard, frames)
