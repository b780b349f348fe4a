"""The front's links to every shard: requests with replies, and shard restarts.

Every request waits in `pending` until its DONE arrives. When a link (re)connects the
front says HELLO; the shard answers with its incarnation. A new incarnation means the shard
restarted with empty state: the front replays its local members of that shard's channels
(RESYNC) and then re-sends every pending request, so nothing a client asked for is lost
(ARCHITECTURE.md 6). Requests are only sent on a synced link, so a replay always precedes
them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from pushy_shard import link
from pushy_shard.core.channels import MemberState
from pushy_shard.zmqio import ZmqChannel, tune

log = logging.getLogger(__name__)

MAX_PENDING = 10_000


class LinkUnavailable(Exception):
    """A request could not be queued, or got no answer before its deadline."""


@dataclass(slots=True)
class Pending:
    frames: list[bytes]
    future: asyncio.Future[Any]
    deadline: float
    sent: bool = False


@dataclass(slots=True)
class ShardLink:
    index: int
    channel: ZmqChannel
    monitor: ZmqChannel
    incarnation: str | None = None
    synced: bool = False
    answered: float = 0.0  # monotonic time of its last WELCOME or PONG
    pending: dict[bytes, Pending] = field(default_factory=dict)


class ShardLinks:
    """DEALER links to every shard, with the replay protocol above."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        front: int,
        endpoints: list[str],
        on_message: Callable[[list[bytes]], None],
        members_for_shard: Callable[[int], list[MemberState]],
    ) -> None:
        self.loop = loop
        self.front = front
        self.incarnation = secrets.token_hex(8)
        self.on_message = on_message
        self.members_for_shard = members_for_shard
        self.context = zmq.Context()
        self._next_rid = 0
        self.ready: asyncio.Future[None] = loop.create_future()  # every shard answered once
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.links: list[ShardLink] = []
        identity = link.front_identity(front, self.incarnation)
        for index, endpoint in enumerate(endpoints):
            sock = self.context.socket(zmq.DEALER)
            tune(sock)
            sock.setsockopt(zmq.IDENTITY, identity)
            sock.setsockopt(zmq.RECONNECT_IVL, 50)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
            events = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
            monitor_sock = sock.get_monitor_socket(events)
            sock.connect(endpoint)
            channel = ZmqChannel(loop, sock, self._reader(index), f"front {front} <- shard {index}")
            monitor = ZmqChannel(loop, monitor_sock, self._watcher(index), f"monitor {index}")
            self.links.append(ShardLink(index, channel, monitor))

    @property
    def all_synced(self) -> bool:
        return all(link_.synced for link_ in self.links)

    def down(self, now: float, stale: float) -> list[int]:
        """Shards this front cannot use now: link not synced, or no PONG for `stale`
        seconds (a stopped or wedged shard still holds its socket open)."""
        return [t.index for t in self.links if not t.synced or now - t.answered > stale]

    def request(self, shard: int, op: bytes, *frames: bytes, timeout: float) -> asyncio.Future[Any]:
        """Send a request to `shard`; the future gets the DONE body, or LinkUnavailable."""
        future: asyncio.Future[Any] = self.loop.create_future()
        target = self.links[shard]
        if len(target.pending) >= MAX_PENDING:
            future.set_exception(LinkUnavailable(f"shard {shard}: too many pending requests"))
            return future
        self._next_rid += 1
        rid = str(self._next_rid).encode()
        entry = Pending([op, rid, *frames], future, time.monotonic() + timeout)
        target.pending[rid] = entry
        if target.synced:
            entry.sent = target.channel.send(entry.frames)
        return future

    @property
    def in_flight(self) -> int:
        """Requests to connected shards that no DONE has answered yet. A shard whose link
        dropped (it exited: a group-wide SIGTERM reaches shards too) answers none of them,
        so they do not count."""
        return sum(len(target.pending) for target in self.links if target.synced)

    def idle(self) -> asyncio.Future[None]:
        """Resolves once no request is waiting for its answer: a stopping front awaits it
        (bounded) so triggers in flight get their answer and LEAVEs reach the shards."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        self._idle_waiters.append(waiter)
        self._settled()
        return waiter

    def tick(self, now: float) -> None:
        """The front's periodic sweep: a PING on every synced link (shards drop fronts that
        stay silent, ARCHITECTURE.md 6), and requests past their deadline fail."""
        for target in self.links:
            if target.synced:
                target.channel.send([link.PING])
        for target in self.links:
            expired = [rid for rid, p in target.pending.items() if p.deadline <= now]
            for rid in expired:
                entry = target.pending.pop(rid)
                if not entry.future.done():
                    entry.future.set_exception(LinkUnavailable(f"shard {target.index} timed out"))
        if self._idle_waiters:
            self._settled()

    def close(self) -> None:
        for target in self.links:
            target.monitor.close()
            target.channel.close()
        self.context.term()

    # -- internals -----------------------------------------------------------------------

    def _reader(self, shard: int) -> Callable[[list[bytes]], None]:
        def read(frames: list[bytes]) -> None:
            op = frames[0]
            if op == link.BATCH:
                start = 2
                for size in link.load(frames[1]):
                    read(frames[start:start + size])
                    start += size
            elif op == link.DONE:
                entry = self.links[shard].pending.pop(frames[1], None)
                if entry is not None and not entry.future.done():
                    entry.future.set_result(link.load(frames[2]))
                if self._idle_waiters:
                    self._settled()
            elif op == link.PONG:
                self.links[shard].answered = time.monotonic()
            elif op == link.WELCOME:
                self._welcomed(shard, link.load(frames[1]))
            else:
                self.on_message(frames)

        return read

    def _watcher(self, shard: int) -> Callable[[list[bytes]], None]:
        def watch(frames: list[bytes]) -> None:
            event = parse_monitor_message(frames)["event"]
            target = self.links[shard]
            if event == zmq.EVENT_CONNECTED:
                target.channel.send([link.HELLO, link.body({"front": self.front})])
            elif event == zmq.EVENT_DISCONNECTED:
                target.synced = False
                log.warning("front %d: link to shard %d lost", self.front, shard)
                if self._idle_waiters:
                    self._settled()

        return watch

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

    def _welcomed(self, shard: int, body: dict[str, Any]) -> None:
        target = self.links[shard]
        incarnation = body["incarnation"]
        # a new incarnation has empty state; the same one asks for a replay when it had
        # given this front up for dead (silent too long) and forgotten its members
        restarted = incarnation != target.incarnation or bool(body.get("replay"))
        if restarted:
            members = [m.to_wire() for m in self.members_for_shard(shard)]
            replay = {"front": self.front, "incarnation": incarnation, "members": members}
            target.channel.send([link.RESYNC, link.body(replay)])
            if target.incarnation is not None:
                log.info("front %d: shard %d restarted, replayed %d members",
                         self.front, shard, len(members))
            target.incarnation = incarnation
        target.synced = True
        target.answered = time.monotonic()
        if not self.ready.done() and self.all_synced:
            self.ready.set_result(None)
        for entry in target.pending.values():
            if restarted or not entry.sent:
                entry.sent = target.channel.send(entry.frames)
