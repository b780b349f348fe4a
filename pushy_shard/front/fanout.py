"""The fan-out path, top to bottom (ARCHITECTURE.md 4), and the local channel index.

1. A shard's Deliver names a channel key: `Hub.deliver` finds the channel's local members.
2. The event becomes one `Delivery` (core/frames.py): each transport kind's bytes are built
   at most once, however many members write them.
3. The events of one loop turn wait for its end (`Hub.flush`). Where each went to a
   channel of its own (events one at a time: many small channels, a big one at a moderate
   rate), each goes to its members as it is, one write each, with nothing gathered per
   member. Where a channel got several, the turn's events are gathered per connection and
   each connection gets its events, in order, together.
4. A socket connection (`SocketConnection`: every WebSocket) writes them in one `write`,
   a batch of SockJS messages as one frame; an HTTP session hands them to its receiving
   request or queue (sessions.py).
5. `SocketConnection.write` puts the bytes in the socket's buffer and checks the buffered
   size against `limits.slow_consumer_bytes`: a consumer past it is closed, never awaited.

Nothing here awaits, and nothing here knows a client protocol: the adapters (pushy.py)
encode messages, and connections carry them.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.frames import Delivery, Kind, batch_frame
from pushy_shard.core.routing import shard_for
from pushy_shard.errors import SLOW_CONSUMER, Close

if TYPE_CHECKING:
    from pushy_shard.front.front import Front

try:  # the compiled loop (_sendall.c, built by the install where a compiler is at hand)
    from pushy_shard.front._sendall import send_each
except ImportError:  # pragma: no cover - the same loop in Python
    send_each = None
if os.environ.get("PUSHY_SHARD_PURE_PYTHON"):  # the tests run both
    send_each = None


class Connection(Protocol):
    """A client connection over some transport, as the hub sees it."""

    sid: str
    kind: int
    transport: str
    channels: dict[str, MemberState]
    closed: bool
    slow: bool  # set when it is closed as a slow consumer (counted by the front)

    def deliver(self, delivery: Delivery) -> None:
        """Write (or queue) an event's pre-built bytes now, without awaiting. It must not
        change the hub synchronously: a connection it closes leaves on a later callback."""

    def deliver_batch(self, batch: list[Delivery], shared: dict[tuple[int, ...], bytes]) -> None:
        """Several events at once, in order, ideally in one write. `shared` maps a batch's
        delivery ids to bytes already built for it, so members with the same batch share
        them."""

    def send(self, message: bytes) -> None:
        """Send one encoded message."""

    def heartbeat(self) -> None:
        """The heartbeat tick: SockJS transports write `h` to a waiting receiver."""

    def close(self, why: Close) -> None:
        """End the connection for `why` (errors.Close), the transport's way."""


def transport_name(conn: Connection) -> str:
    """The transport label of a Pushy connection in /metrics: its `protocol` name, except
    that the raw WebSocket (also `websocket` to clients) is told apart from SockJS's."""
    return "raw-websocket" if conn.kind == Kind.RAW_WS else conn.transport


def labels(conn: Connection) -> tuple[tuple[str, str], ...]:
    """A connection's labels in /metrics: its transport, protocol and app, as its client
    protocol names them."""
    adapter = getattr(conn, "adapter", None)
    if adapter is None:
        return (("transport", transport_name(conn)),)
    return adapter.labels(conn)  # type: ignore[no-any-return]


class Hub:
    """Local connections by socketId and the channel -> local members index."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.connections: dict[str, Connection] = {}
        self.index: dict[str, dict[str, Connection]] = {}
        # What /metrics reports as messages and bytes out: counted once per event or reply,
        # never per member (the fan-out loop stays one dict lookup per member).
        self.delivered = 0
        self.delivered_bytes = 0
        self.replies = 0
        self.reply_bytes = 0
        # Memberships of closed connections whose Leave the shard has not confirmed yet:
        # still replayed to a restarted shard, so the re-sent Leave finds them and the
        # others get their presence-quit (they saw them join).
        self.leaving: dict[tuple[str, str], MemberState] = {}  # (key, sid) -> state
        # This loop turn's events, in order, written together at its end; the index does
        # not change before they are (every change of it flushes them first).
        self._turn: list[tuple[dict[str, Connection], Delivery, str | None]] = []
        self._turn_keys: set[str] = set()
        self._coalesce = False  # a channel got several events this turn

    def __len__(self) -> int:
        return len(self.connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    # -- 1-3: the fan-out loop ----------------------------------------------------------------

    def deliver(self, message: link.Deliver) -> None:
        """Same bytes to every local member of the channel but `exclude`; never awaits."""
        members = self.index.get(message.key)
        if not members:
            return
        exclude = message.exclude
        delivery = Delivery(message.message)
        count = len(members) - (exclude in members)
        self.delivered += count
        self.delivered_bytes += count * len(message.message)
        if not self._turn:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (unit tests): nothing to coalesce with
                _each(members, delivery, exclude)
                return
        if message.key in self._turn_keys:
            self._coalesce = True
        else:
            self._turn_keys.add(message.key)
        self._turn.append((members, delivery, exclude))

    def flush(self) -> None:
        """End of the loop turn (or a change of the index): the turn's events go out, each
        connection's in order."""
        turn, coalesce = self._turn, self._coalesce
        if not turn:
            return
        self._turn, self._coalesce = [], False
        self._turn_keys.clear()
        if not coalesce:  # one event per channel: each to its members, one write each
            for members, delivery, exclude in turn:
                _each(members, delivery, exclude)
            return
        pending: dict[str, tuple[Connection, list[Delivery]]] = {}
        for members, delivery, exclude in turn:
            for sid, conn in members.items():
                if sid != exclude:
                    entry = pending.get(sid)
                    if entry is None:
                        pending[sid] = (conn, [delivery])
                    else:
                        entry[1].append(delivery)
        shared: dict[tuple[int, ...], bytes] = {}
        for conn, batch in pending.values():  # deliver never changes the index synchronously
            if len(batch) == 1:
                conn.deliver(batch[0])
            else:
                conn.deliver_batch(batch, shared)

    # -- messages to one connection ----------------------------------------------------------

    def send(self, conn: Connection, message: bytes) -> None:
        """A message to one connection (a reply), after the turn's events; counted."""
        self.flush()
        self.count_reply(message)
        conn.send(message)

    def reply(self, sid: str, message: bytes) -> None:
        conn = self.connections.get(sid)
        if conn is not None:
            self.send(conn, message)

    def count_reply(self, message: bytes) -> None:
        self.replies += 1
        self.reply_bytes += len(message)

    # -- connections and memberships --------------------------------------------------------

    def by_labels(self) -> dict[tuple[tuple[str, str], ...], int]:
        """Open connections per label set (`labels`), for /metrics: counted on demand,
        never maintained on the connection paths."""
        counts: dict[tuple[tuple[str, str], ...], int] = {}
        for conn in self.connections.values():
            key = labels(conn)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def add(self, conn: Connection) -> None:
        self.connections[conn.sid] = conn

    def remove(self, conn: Connection) -> dict[int, list[str]]:
        """Forget `conn`; returns the channel keys it must leave, grouped by shard."""
        if self.connections.pop(conn.sid, None) is None:
            return {}
        self.flush()  # the turn's events were for the index as it was
        by_shard: dict[int, list[str]] = defaultdict(list)
        for key, state in conn.channels.items():
            self._unindex(key, conn.sid)
            by_shard[shard_for(key, self.shards)].append(key)
            self.leaving[(key, conn.sid)] = state
        conn.channels = {}
        return dict(by_shard)

    def joined(self, state: MemberState, message: bytes) -> bool:
        """Index a new membership and send its success reply; False if the sid is gone."""
        conn = self.connections.get(state.sid)
        if conn is None or conn.closed:
            return False
        self.flush()  # the turn's events were for the index as it was
        conn.channels[state.key] = state
        self.index.setdefault(state.key, {})[state.sid] = conn
        self.send(conn, message)
        return True

    def left(self, sid: str, key: str, message: bytes | None) -> None:
        conn = self.connections.get(sid)
        if conn is None:
            return
        self.flush()  # the turn's events were for the index as it was
        if conn.channels.pop(key, None) is not None:
            self._unindex(key, sid)
        if message:
            self.send(conn, message)

    def members_for_shard(self, shard: int) -> list[MemberState]:
        """What this front replays to a restarted shard (ARCHITECTURE.md 6): its members,
        and those still leaving (their Leave is re-sent after the replay)."""
        return [
            state
            for key, members in self.index.items()
            if shard_for(key, self.shards) == shard
            for conn in members.values()
            if (state := conn.channels.get(key)) is not None
        ] + [state for (key, _), state in self.leaving.items()
             if shard_for(key, self.shards) == shard]

    def leave_confirmed(self, sid: str, keys: list[str]) -> None:
        """The shard answered a Leave (or it timed out): stop replaying those memberships."""
        for key in keys:
            self.leaving.pop((key, sid), None)

    def _unindex(self, key: str, sid: str) -> None:
        members = self.index.get(key)
        if members is not None:
            members.pop(sid, None)
            if not members:
                del self.index[key]


def _each(members: dict[str, Connection], delivery: Delivery, exclude: str | None) -> None:
    """One event to a channel's members. The compiled loop sends it itself to every idle
    plain WebSocket and leaves the others, and any send the kernel took only part of, to
    their own writes; byte order on each connection is the same either way."""
    if send_each is None:
        for sid, conn in members.items():
            if sid != exclude:
                conn.deliver(delivery)
        return
    for conn, sent in send_each(members, exclude, delivery):
        if sent:
            conn.write(delivery.frame(conn.kind)[sent:])  # type: ignore[attr-defined]
        else:
            conn.deliver(delivery)


# -- 4-5: connections that write to their socket ------------------------------------------------


class SocketConnection:
    """The end of the fan-out path for a connection that owns a socket (every WebSocket):
    pre-built bytes go straight into the socket's buffer. The subclass provides `kind`,
    `closed`, `slow`, `front`, `_socket`, `_fd` and `close(why)`; being the socket's
    protocol, it hears when the socket's buffer fills (from its first unsent byte) and
    empties, and keeps `_fd` -1 meanwhile."""

    __slots__ = ()

    kind: int
    closed: bool
    slow: bool
    front: Front
    _socket: asyncio.Transport
    _fd: int  # the descriptor the compiled loop may send() on now; -1: only `write` writes
    _plain_fd: int  # the socket's descriptor when plain TCP with the compiled loop, else -1

    def deliver(self, delivery: Delivery) -> None:
        self.write(delivery.frame(self.kind))

    def deliver_batch(self, batch: list[Delivery], shared: dict[tuple[int, ...], bytes]) -> None:
        key = (self.kind, *map(id, batch))
        data = shared.get(key)
        if data is None:
            data = shared[key] = batch_frame(self.kind, batch)
        self.write(data)

    def send(self, message: bytes) -> None:
        self.write(Delivery(message).frame(self.kind))

    def write(self, data: bytes) -> None:
        """Into the socket's buffer now; past `limits.slow_consumer_bytes` of unsent output
        (read live: SIGHUP) the connection is closed as a slow consumer."""
        socket = self._socket
        if self.closed or socket.is_closing():
            return
        socket.write(data)
        buffered = socket.get_write_buffer_size()
        if buffered > self.front.config.limits.slow_consumer_bytes:
            self.front.slow_consumer(self, buffered)  # type: ignore[arg-type]  # marks it
            self.close(SLOW_CONSUMER)  # queued behind what is buffered

    def close(self, why: Close) -> None:
        raise NotImplementedError


def plain_descriptor(socket: asyncio.Transport) -> int:
    """What the compiled loop may send() on: a plain TCP socket's descriptor, whose
    transport now tells its protocol of every unsent byte (pause_writing); -1 for TLS (its
    bytes are the transport's to encrypt), or without the compiled loop."""
    raw = socket.get_extra_info("socket")
    if send_each is None or raw is None or socket.get_extra_info("sslcontext") is not None:
        return -1
    socket.set_write_buffer_limits(high=0)  # pause at the first unsent byte, resume at none
    return int(raw.fileno())
