"""The SockJS session state machine of the HTTP transports, as one table (SockJS 0.3.3).

A session outlives the HTTP requests that carry it: a *receiver* (xhr, xhr_streaming,
eventsource, htmlfile or jsonp request) takes the frames meant for the client, and between
receivers the session waits, holding messages, for at most `disconnect_delay` seconds. Every
transition is in `TABLE` below (state -> event -> next state, what to do), so no transport
decides on its own what, say, a closed session answers. The shell (front/sessions.py) feeds
events in, with the time, and performs the returned `Do` flags; nothing here does I/O.

The queue of a waiting session is bounded (config.limits.session_queue_messages and
session_queue_bytes, passed on each `enqueue`): a client that stops polling is closed rather
than growing the front's memory.
"""

from __future__ import annotations

import enum
import zlib
from collections import deque
from collections.abc import Mapping

from pushy_shard.core.config import Limits
from pushy_shard.errors import SessionStateError

# messages held for a session between two receivers, and their total size (quoted); past
# either it is closed. config.limits' defaults; the shell passes the configured ones.
MAX_QUEUED_MESSAGES = Limits().session_queue_messages
MAX_QUEUED_BYTES = Limits().session_queue_bytes


class State(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's own hash is slow Python

    NEW = "new"  # created by a receiver, open frame not written yet
    RECEIVING = "receiving"  # open, a receiver attached: frames go out now
    WAITING = "waiting"  # open, no receiver: messages queue, the disconnect clock runs
    CLOSING = "closing"  # closed: every receiver gets the close frame until the clock runs out
    GONE = "gone"  # forgotten; a request naming it again starts a new session


class Event(enum.Enum):
    __hash__ = object.__hash__

    ATTACH = "attach"  # a receiving request arrives
    DETACH = "detach"  # the receiver's response ended normally (poll answered, response_limit)
    ABORT = "abort"  # the receiver's connection dropped (the client went away)
    SEND = "send"  # a message for the client
    CLIENT = "client"  # messages from the client (xhr_send, jsonp_send)
    HEARTBEAT = "heartbeat"  # the front's heartbeat tick
    CLOSE = "close"  # the server ends the session (queue over its bound, slow reader, shutdown)
    EXPIRE = "expire"  # the disconnect clock ran out


class Do(enum.Flag):
    """What the shell does after a transition, in this order."""

    NOTHING = 0
    OPEN = enum.auto()  # write the open frame `o` to the receiver
    FLUSH = enum.auto()  # write the queued messages (if any) to the receiver as one `a` frame
    WRITE = enum.auto()  # write this message to the receiver
    QUEUE = enum.auto()  # keep this message for the next receiver (bounded)
    HEARTBEAT = enum.auto()  # write `h` to the receiver
    REJECT = enum.auto()  # answer this request `c[2010,...]` and end it; the receiver stays
    CLOSE_FRAME = enum.auto()  # write the close frame to the receiver / request and end it
    DISPATCH = enum.auto()  # hand the client's messages to Pushy, in order
    LEAVE = enum.auto()  # the Pushy connection is over: leave its channels
    FORGET = enum.auto()  # drop the session from the front's registry
    CLOCK = enum.auto()  # (re)start the disconnect clock: deadline = now + disconnect_delay


S, E = State, Event

# The whole protocol of an HTTP session. A pair that is missing cannot happen (the shell
# only detaches or aborts a receiver it attached) and raises SessionStateError.
TABLE: Mapping[State, Mapping[Event, tuple[State, Do]]] = {
    S.NEW: {
        E.ATTACH: (S.RECEIVING, Do.OPEN),  # the request that creates a session attaches at once
    },
    S.RECEIVING: {
        E.ATTACH: (S.RECEIVING, Do.REJECT),  # one receiver at a time: 2010
        E.DETACH: (S.WAITING, Do.CLOCK),
        # a network error leaves us not knowing what arrived: close and forget (the protocol
        # allows this or a 1002 close frame; HandlingClose.test_abort_*)
        E.ABORT: (S.GONE, Do.LEAVE | Do.FORGET),
        E.SEND: (S.RECEIVING, Do.WRITE),
        E.CLIENT: (S.RECEIVING, Do.DISPATCH),
        E.HEARTBEAT: (S.RECEIVING, Do.HEARTBEAT),
        E.CLOSE: (S.CLOSING, Do.CLOSE_FRAME | Do.LEAVE | Do.CLOCK),
        E.EXPIRE: (S.RECEIVING, Do.NOTHING),  # no clock runs while a receiver is attached
    },
    S.WAITING: {
        E.ATTACH: (S.RECEIVING, Do.FLUSH),
        E.SEND: (S.WAITING, Do.QUEUE),
        E.CLIENT: (S.WAITING, Do.DISPATCH),
        E.HEARTBEAT: (S.WAITING, Do.NOTHING),
        E.CLOSE: (S.CLOSING, Do.LEAVE | Do.CLOCK),
        E.EXPIRE: (S.GONE, Do.LEAVE | Do.FORGET),  # vanished: leaves like a closed WebSocket
    },
    S.CLOSING: {
        # the close frame again, to every receiver, until the clock runs out (Protocol.
        # test_closeSession); each one restarts the clock, as sockjs-node does
        E.ATTACH: (S.CLOSING, Do.CLOSE_FRAME | Do.CLOCK),
        E.SEND: (S.CLOSING, Do.NOTHING),
        E.CLIENT: (S.CLOSING, Do.NOTHING),  # accepted (204) and dropped
        E.HEARTBEAT: (S.CLOSING, Do.NOTHING),
        E.CLOSE: (S.CLOSING, Do.NOTHING),
        E.EXPIRE: (S.GONE, Do.FORGET),
    },
    S.GONE: {event: (S.GONE, Do.NOTHING) for event in Event if event is not E.ATTACH},
}

OPEN_STATES = frozenset({S.NEW, S.RECEIVING, S.WAITING})

# The table again, with each entry's effects on the clock and the queue worked out once:
# `handle` runs for every message to every member (the fan-out path), and Flag arithmetic
# costs more than the rest of a transition.
_Step = tuple[State, Do, bool, bool, bool]  # next, do, start clock, stop clock, drop queue
_STEPS: dict[State, dict[Event, _Step]] = {
    state: {
        event: (next_state, do, bool(do & Do.CLOCK),
                not do & Do.CLOCK and next_state in (S.RECEIVING, S.GONE),
                next_state in (S.CLOSING, S.GONE))
        for event, (next_state, do) in row.items()
    }
    for state, row in TABLE.items()
}


def owner_front(session_id: str, fronts: int) -> int:
    """The front that holds SockJS session `session_id`; every front computes the same one.

    The kernel spreads a client's TCP connections over the fronts (SO_REUSEPORT), so an
    xhr_send may land on a front other than the one holding its session's receiver.
    """
    if fronts <= 1:
        return 0
    return zlib.crc32(session_id.encode("utf-8", "surrogatepass")) % fronts


class Session:
    """One session's state, disconnect clock and message queue; the shell owns the I/O.

    `handle` applies the table; the queue holds quoted messages (JSON strings) in order.
    """

    __slots__ = ("state", "deadline", "disconnect_delay", "queue", "queued_bytes",
                 "max_messages", "max_bytes")

    def __init__(self, disconnect_delay: float, *, max_messages: int = MAX_QUEUED_MESSAGES,
                 max_bytes: int = MAX_QUEUED_BYTES) -> None:
        self.state = S.NEW
        self.deadline: float | None = None
        self.disconnect_delay = disconnect_delay
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes

    @property
    def open(self) -> bool:
        return self.state in OPEN_STATES

    def handle(self, event: Event, now: float) -> Do:
        """Apply `event` at monotonic time `now`; returns what the shell must do."""
        try:
            next_state, do, start_clock, stop_clock, drop_queue = _STEPS[self.state][event]
        except KeyError:
            raise SessionStateError(f"{event.value} in state {self.state.value}") from None
        self.state = next_state
        if start_clock:
            self.deadline = now + self.disconnect_delay
        elif stop_clock:
            self.deadline = None
        if drop_queue:
            self.queue.clear()  # undelivered messages of a closed session are dropped
            self.queued_bytes = 0
        return do

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def enqueue(self, quoted: bytes, max_messages: int | None = None,
                max_bytes: int | None = None) -> bool:
        """Hold one quoted message; False when that would pass a bound (close the session).

        The bounds default to the session's own; the shell passes the configured ones."""
        size = self.queued_bytes + len(quoted)
        if max_messages is None:
            max_messages = self.max_messages
        if max_bytes is None:
            max_bytes = self.max_bytes
        if len(self.queue) >= max_messages or size > max_bytes:
            return False
        self.queue.append(quoted)
        self.queued_bytes = size
        return True

    def take(self) -> list[bytes]:
        """Every queued message, oldest first, leaving the queue empty (for a FLUSH)."""
        messages = list(self.queue)
        self.queue.clear()
        self.queued_bytes = 0
        return messages
