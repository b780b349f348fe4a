"""The front's connections, their memberships, and the fan-out path (ARCHITECTURE.md 4).

A `Delivery` is one event from a shard; it builds each transport kind's wire bytes at most
once, and the fan-out loop writes those same bytes to every local member without awaiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Protocol

from pushy_shard.core.channels import MemberState
from pushy_shard.core.routing import shard_for
from pushy_shard.core.sockjs import (
    eventsource_frame,
    htmlfile_frame,
    http_chunk,
    message_frame,
    quote_bytes,
    ws_text_frame,
    xhr_frame,
)

log = logging.getLogger(__name__)

# Transport kinds: which wire bytes of an event a connection writes.
SOCKJS_WS = 0  # WebSocket frame carrying a SockJS `a[...]` frame
RAW_WS = 1  # WebSocket frame carrying the message itself
XHR = 2  # `a[...]\n`: xhr-streaming and xhr-polling
EVENTSOURCE = 3  # `data: a[...]\r\n\r\n`
HTMLFILE = 4  # `<script>\np("a[...]");\n</script>\r\n`
FRAME = 5  # the bare `a[...]`: jsonp wraps it in each request's own callback
KINDS = 6


class Delivery:
    """One encoded event. Its JSON-string form, each kind's bytes and each kind's HTTP/1.1
    chunk are built on first use and then shared by every member (ARCHITECTURE.md 4)."""

    __slots__ = ("message", "_quoted", "_frames", "_chunks")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self._quoted: bytes | None = None
        self._frames: list[bytes | None] = [None] * KINDS
        self._chunks: list[bytes | None] = [None] * KINDS

    @property
    def quoted(self) -> bytes:
        """The message as a JSON string: what a polling session queues between polls."""
        quoted = self._quoted
        if quoted is None:
            quoted = self._quoted = quote_bytes(self.message)
        return quoted

    def frame(self, kind: int) -> bytes:
        frame = self._frames[kind]
        if frame is None:
            frame = self._frames[kind] = self._build(kind)
        return frame

    def chunk(self, kind: int) -> bytes:
        """`frame(kind)` as one HTTP/1.1 chunk, for chunked streaming responses."""
        chunk = self._chunks[kind]
        if chunk is None:
            chunk = self._chunks[kind] = http_chunk(self.frame(kind))
        return chunk

    def _build(self, kind: int) -> bytes:
        if kind == RAW_WS:
            return ws_text_frame(self.message)
        if kind == FRAME:
            return message_frame((self.quoted,))
        return wrap_frame(kind, self.frame(FRAME))


def wrap_frame(kind: int, frame: bytes) -> bytes:
    """A SockJS frame (`o`, `h`, `a[...]`, `c[...]`) in the wire form of `kind`."""
    if kind == XHR:
        return xhr_frame(frame)
    if kind == EVENTSOURCE:
        return eventsource_frame(frame)
    if kind == HTMLFILE:
        return htmlfile_frame(frame)
    if kind == SOCKJS_WS or kind == RAW_WS:
        return ws_text_frame(frame)
    return frame


class Connection(Protocol):
    """A Pushy connection over some transport, as the hub sees it."""

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
        """Send one Pushy message (an encoded event)."""

    def heartbeat(self) -> None:
        """The heartbeat tick: SockJS transports write `h` to a waiting receiver."""


def transport_name(conn: Connection) -> str:
    """The transport label of a connection in /metrics: its Pushy `protocol`, except that
    the raw WebSocket (also `websocket` to clients) is told apart from SockJS's."""
    return "raw-websocket" if conn.kind == RAW_WS else conn.transport


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
        # Memberships of closed connections whose LEAVE the shard has not confirmed yet:
        # still replayed to a restarted shard, so the re-sent LEAVE finds them and the
        # others get their presence-quit (they saw them join).
        self.leaving: dict[tuple[str, str], MemberState] = {}  # (key, sid) -> state
        # Deliveries of this loop turn, per connection: written together at its end, so
        # events bound for one connection leave in one write (ARCHITECTURE.md 4).
        self._pending: dict[str, tuple[Connection, list[Delivery]]] = {}

    def __len__(self) -> int:
        return len(self.connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self.connections.values()))

    def by_transport(self) -> dict[str, int]:
        """Open connections per transport name (the raw WebSocket as `raw-websocket`), for
        /metrics: counted on demand, never maintained on the connection paths."""
        counts: dict[str, int] = {}
        for conn in self.connections.values():
            name = transport_name(conn)
            counts[name] = counts.get(name, 0) + 1
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
        self._flush_one(conn.sid)
        self.count_reply(message)
        conn.send(message)
        return True

    def left(self, sid: str, key: str, message: bytes | None) -> None:
        conn = self.connections.get(sid)
        if conn is None:
            return
        if conn.channels.pop(key, None) is not None:
            self._unindex(key, sid)
        if message:
            self._flush_one(sid)
            self.count_reply(message)
            conn.send(message)

    def reply(self, sid: str, message: bytes) -> None:
        conn = self.connections.get(sid)
        if conn is not None:
            self._flush_one(sid)
            self.count_reply(message)
            conn.send(message)

    def deliver(self, key: str, exclude: str | None, message: bytes) -> None:
        """The fan-out loop: same bytes to every local member, never awaiting."""
        members = self.index.get(key)
        if not members:
            return
        delivery = Delivery(message)
        count = len(members) - (exclude in members)
        self.delivered += count
        self.delivered_bytes += count * len(message)
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

    def count_reply(self, message: bytes) -> None:
        self.replies += 1
        self.reply_bytes += len(message)

    def members_for_shard(self, shard: int) -> list[MemberState]:
        """What this front replays to a restarted shard (ARCHITECTURE.md 6): its members,
        and those still leaving (their LEAVE is re-sent after the replay)."""
        return [
            state
            for key, members in self.index.items()
            if shard_for(key, self.shards) == shard
            for conn in members.values()
            if (state := conn.channels.get(key)) is not None
        ] + [state for (key, _), state in self.leaving.items()
             if shard_for(key, self.shards) == shard]

    def leave_confirmed(self, sid: str, keys: list[str]) -> None:
        """The shard answered a LEAVE (or it timed out): stop replaying those memberships."""
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
