"""The fan-out path, top to bottom (ARCHITECTURE.md 4), and the local channel index.

1. A shard's Deliver names a channel key: `Hub.deliver` finds the channel's local members.
2. The event becomes one `Delivery` (core/frames.py): each transport kind's bytes are built
   at most once, however many members write them.
3. Members' events of one loop turn are gathered per connection; `Hub.flush`, at the end
   of the turn, hands each connection its events, in order.
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
        # Deliveries of this loop turn, per connection: written together at its end, so
        # events bound for one connection leave in one write.
        self._pending: dict[str, tuple[Connection, list[Delivery]]] = {}

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
        pending = self._pending
        if not pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (unit tests): nothing to coalesce with
                for sid, conn in members.items():
                    if sid != exclude:
                        conn.deliver(delivery)
                return
        for sid, conn in members.items():
            if sid != exclude:
                entry = pending.get(sid)
                if entry is None:
                    pending[sid] = (conn, [delivery])
                else:
                    entry[1].append(delivery)

    def flush(self) -> None:
        """End of the loop turn: each connection's events go out, in order, in one write."""
        pending, self._pending = self._pending, {}
        shared: dict[tuple[int, ...], bytes] = {}
        for conn, batch in pending.values():  # deliver never changes the index synchronously
            _write(conn, batch, shared)

    def _flush_one(self, sid: str) -> None:
        """Before a direct send to `sid`, its pending events go first (order per connection)."""
        entry = self._pending.pop(sid, None) if self._pending else None
        if entry is not None:
            _write(*entry, {})

    # -- messages to one connection ----------------------------------------------------------

    def send(self, conn: Connection, message: bytes) -> None:
        """A message to one connection (a reply), after its pending events; counted."""
        self._flush_one(conn.sid)
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
        conn.channels[state.key] = state
        self.index.setdefault(state.key, {})[state.sid] = conn
        self.send(conn, message)
        return True

    def left(self, sid: str, key: str, message: bytes | None) -> None:
        conn = self.connections.get(sid)
        if conn is None:
            return
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


def _write(conn: Connection, batch: list[Delivery], shared: dict[tuple[int, ...], bytes]) -> None:
    if len(batch) == 1:
        conn.deliver(batch[0])
    else:
        conn.deliver_batch(batch, shared)


# -- 4-5: connections that write to their socket ------------------------------------------------


class SocketConnection:
    """The end of the fan-out path for a connection that owns a socket (every WebSocket):
    pre-built bytes go straight into the socket's buffer. The subclass provides `kind`,
    `closed`, `slow`, `front`, `_socket` and `close(why)`."""

    __slots__ = ()

    kind: int
    closed: bool
    slow: bool
    front: Front
    _socket: asyncio.Transport

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
