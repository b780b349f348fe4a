"""Webhooks (PUSHER.md 9): what each webhook URL is told, when, in which batches and tries.

The shards report raw transitions of the channels they own; the hooks process feeds them to an
Announcer, which says each occupancy and presence once, holding vacates and removals 3 s so a
quick re-join says nothing. What it announces goes to every Target that wants it, through
Deliveries: per target, batches in order, one post in flight, retried with backoff and
dropped 5 min after the first try. `request` makes the bytes and headers of one try.
Pure: time comes in as integer milliseconds, jitter as a callable; the shell does the I/O.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pushy_shard.core.config import WEBHOOK_EVENTS, App
from pushy_shard.core.protocol import dumps
from pushy_shard.core.pusher_auth import webhook_signature
from pushy_shard.errors import PushyError

__all__ = [
    "EVENTS",
    "HOLD_MS",
    "POST_TIMEOUT_MS",
    "Announcer",
    "BadTransition",
    "Deliveries",
    "DeliverySettings",
    "Post",
    "Target",
    "request",
    "retry_delay_ms",
    "signature",
    "targets",
]

EVENTS = WEBHOOK_EVENTS  # the names a webhook may ask for (config validates them)
HOLD_MS = 3000  # a vacate or a member removal waits this long for a re-join
POST_TIMEOUT_MS = 4000  # the shell fails a post with no answer by then
RETRY_DELAYS_MS = (1000, 2000, 4000, 8000, 16_000, 32_000)  # after the 1st, 2nd... failed try
RETRY_EVERY_MS = 60_000  # ...and after every later one

_ARRIVALS = frozenset({"channel_occupied", "member_added"})
_DEPARTURES = frozenset({"channel_vacated", "member_removed"})
_MEMBERS = frozenset({"member_added", "member_removed"})  # these name a user_id
_OWN_HEADERS = frozenset({"content-type", "x-pusher-key", "x-pusher-signature"})

Event = dict[str, Any]
Announced = list[tuple[str, Event]]  # (app id, event as it will be posted)


class BadTransition(PushyError, ValueError):
    """A transition the announcer cannot read (unknown name, no channel, a bad user id).
    Nothing changed: the shell counts it, logs it and goes on."""


# -- targets ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One webhook of one app: where, for which events, signed how."""

    app: str  # app id
    key: str  # app key, sent as X-Pusher-Key
    secret: str = field(repr=False)  # signs the body
    url: str
    events: frozenset[str]
    channel_prefix: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    def wants(self, event: Mapping[str, Any]) -> bool:
        """Whether `event` (as announced) goes to this webhook: its name is listed and, with a
        prefix, its channel starts with it."""
        if event.get("name") not in self.events:
            return False
        channel = event.get("channel")
        return self.channel_prefix is None or (
            isinstance(channel, str) and channel.startswith(self.channel_prefix))


def targets(apps: Iterable[App]) -> tuple[Target, ...]:
    """Every webhook of the configured apps, for `Deliveries.retarget` after a (re)load."""
    return tuple(
        Target(app=app.id, key=app.key, secret=app.secret, url=hook.url,
               events=frozenset(hook.events), channel_prefix=hook.channel_prefix,
               headers=hook.headers)
        for app in apps for hook in app.webhooks)


# -- the announcer: once per transition, with the holds ------------------------------------------
#
# Each channel, and each user on it, is announced or not, and may have a departure on hold.
# Every transition, as a table (PUSHER.md 9):
#
#   announced  hold     | arrival (occupied, added)      | departure (vacated, removed)
#   no         -        | announce now, mark announced   | nothing (duplicate or unknown)
#   yes        none     | nothing (duplicate)            | start the hold (announce at its end)
#   yes        pending  | cancel the hold, say nothing   | nothing (the hold runs on)
#
# A hold that ends announces the departure. A channel's vacate announces the removal of every
# user still present on it first: a vacated channel has no members.

Hold = tuple[int, int]  # (end ms, sequence): holds end in this order


@dataclass(slots=True)
class _Channel:
    occupied: bool = False  # channel_occupied announced (and not yet its vacate)
    vacate: Hold | None = None  # the vacate on hold
    users: dict[str, Hold | None] = field(default_factory=dict)  # announced -> removal on hold


class Announcer:
    """What the shards' raw transitions announce, for the webhooks of every app.

    Feed it with `apply` and `restore`, call `due` at `next_due`; each returns the (app,
    event) pairs to hand to the targets that want them, in order.
    """

    __slots__ = ("hold_ms", "_channels", "_holds", "_seq")

    def __init__(self, hold_ms: int = HOLD_MS) -> None:
        self.hold_ms = hold_ms
        self._channels: dict[tuple[str, str], _Channel] = {}
        # (end, seq, app, channel, user id or None for the vacate); cancelled holds stay
        # until they would have ended, and are skipped (they last hold_ms at most)
        self._holds: list[tuple[int, int, str, str, str | None]] = []
        self._seq = 0

    def __len__(self) -> int:
        """How many (app, channel) pairs are held in memory."""
        return len(self._channels)

    def occupied(self, app: str, channel: str) -> bool:
        """Whether the channel is announced occupied (its vacate may be on hold)."""
        chan = self._channels.get((app, channel))
        return chan is not None and chan.occupied

    def present(self, app: str, channel: str) -> set[str]:
        """The users announced present (their removal may be on hold)."""
        chan = self._channels.get((app, channel))
        return set(chan.users) if chan is not None else set()

    def apply(self, app: str, event: Mapping[str, Any], now_ms: int) -> Announced:
        """One raw transition; returns what to announce now. Raises BadTransition (nothing
        changed) for an event it cannot read."""
        name, channel, user = _read(event)
        if name in _ARRIVALS:
            return self._arrive(app, channel, user)
        if name in _DEPARTURES:
            self._depart(app, channel, user, now_ms)
            return []
        return [(app, dict(event))]  # client_event, cache_miss, subscription_count

    def due(self, now_ms: int) -> Announced:
        """The departures whose hold ended by `now_ms`, in the order of their ends."""
        out: Announced = []
        holds = self._holds
        while holds and holds[0][0] <= now_ms:
            end, seq, app, channel, user = heapq.heappop(holds)
            chan = self._channels.get((app, channel))
            if chan is None:
                continue
            if user is None:
                if chan.vacate != (end, seq):
                    continue
                # removals in the order their holds end; users without one as of this end
                leaving = sorted(chan.users.items(), key=lambda item: item[1] or (end, seq))
                out += [(app, _removed(channel, uid)) for uid, _ in leaving]
                chan.users.clear()
                chan.vacate, chan.occupied = None, False
                out.append((app, {"name": "channel_vacated", "channel": channel}))
            else:
                if chan.users.get(user) != (end, seq):
                    continue
                del chan.users[user]
                out.append((app, _removed(channel, user)))
            self._forget(app, channel, chan)
        return out

    def next_due(self) -> int | None:
        """When the earliest pending hold ends (ms), or None: when to call `due` next."""
        holds = self._holds
        while holds and not self._pending(holds[0]):
            heapq.heappop(holds)
        return holds[0][0] if holds else None

    def restore(self, owned: Callable[[str, str], bool],
                state: Mapping[str, Mapping[str, Sequence[str | int] | None]], now_ms: int,
                announce: bool) -> Announced:
        """A shard's report of every channel it owns: state[app][channel] = the user ids
        present, or None for a channel that tracks no users. A channel `owned` says is not
        that shard's is another's: left alone, even when reported.

        What the announcer has announced and the report lacks departs (on hold), as a raw
        transition would. What the report has and the announcer has not announced arrives:
        announced with announce=True (the shard restarted and replayed: its report is the
        truth), silently with announce=False (this process restarted, and what it never
        heard of was there before it started). Transitions the shard sent before its report
        came first on the same link, so they are already applied. Returns what to announce
        now; raises BadTransition (nothing changed) for a report it cannot read.
        """
        reported = _read_state(owned, state)
        for app, channel in [key for key in self._channels if owned(*key)]:
            chan = self._channels[app, channel]
            users = reported.get((app, channel), ())
            for uid in [uid for uid in chan.users if uid not in users]:
                self._depart(app, channel, uid, now_ms)
            if (app, channel) not in reported:
                self._depart(app, channel, None, now_ms)
        out: Announced = []
        for (app, channel), users in reported.items():
            arrived = self._arrive(app, channel, None)
            for uid in users:
                arrived += self._arrive(app, channel, uid)
            if announce:
                out += arrived
        return out

    # -- internals ------------------------------------------------------------------------------

    def _arrive(self, app: str, channel: str, user: str | None) -> Announced:
        chan = self._channels.get((app, channel))
        if user is None:
            if chan is not None and chan.occupied:
                chan.vacate = None  # re-occupied within the hold, or a duplicate
                return []
            self._channels.setdefault((app, channel), _Channel()).occupied = True
            return [(app, {"name": "channel_occupied", "channel": channel})]
        if chan is not None and user in chan.users:
            chan.users[user] = None  # re-joined within the hold, or a duplicate
            return []
        self._channels.setdefault((app, channel), _Channel()).users[user] = None
        return [(app, {"name": "member_added", "channel": channel, "user_id": user})]

    def _depart(self, app: str, channel: str, user: str | None, now_ms: int) -> None:
        chan = self._channels.get((app, channel))
        if chan is None:
            return
        if user is None:
            if chan.occupied and chan.vacate is None:
                chan.vacate = self._hold(app, channel, None, now_ms)
        elif user in chan.users and chan.users[user] is None:
            chan.users[user] = self._hold(app, channel, user, now_ms)

    def _hold(self, app: str, channel: str, user: str | None, now_ms: int) -> Hold:
        self._seq += 1
        hold = (now_ms + self.hold_ms, self._seq)
        heapq.heappush(self._holds, (*hold, app, channel, user))
        return hold

    def _pending(self, entry: tuple[int, int, str, str, str | None]) -> bool:
        end, seq, app, channel, user = entry
        chan = self._channels.get((app, channel))
        if chan is None:
            return False
        return (chan.vacate if user is None else chan.users.get(user)) == (end, seq)

    def _forget(self, app: str, channel: str, chan: _Channel) -> None:
        """Drop a channel nothing is announced of any more (no vacate is held unoccupied)."""
        if not chan.occupied and not chan.users:
            del self._channels[app, channel]


def _read(event: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(name, channel, user id as text or None) of a raw transition, or BadTransition."""
    if not isinstance(event, Mapping):
        raise BadTransition(f"expected an event object, found {type(event).__name__}")
    name = event.get("name")
    if name not in EVENTS:
        raise BadTransition(f"unknown event name {name!r:.100}")
    channel = event.get("channel")
    if not isinstance(channel, str) or not channel:
        raise BadTransition(f"{name}: expected a channel name, found {channel!r:.100}")
    return name, channel, _user_id(event.get("user_id")) if name in _MEMBERS else None


def _user_id(value: object) -> str:
    """A user id as the webhooks say it: text (Laravel sends integers)."""
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise BadTransition(f"expected a user id, found {value!r:.100}")
    return str(value)


def _read_state(owned: Callable[[str, str], bool],
                state: Mapping[str, Mapping[str, Sequence[str | int] | None]],
                ) -> dict[tuple[str, str], tuple[str, ...]]:
    """The owned channels of a shard's report, with their user ids as text, in order, once."""
    out: dict[tuple[str, str], tuple[str, ...]] = {}
    if not isinstance(state, Mapping):
        raise BadTransition("expected a state object of apps")
    for app, channels in state.items():
        if not isinstance(app, str) or not isinstance(channels, Mapping):
            raise BadTransition(f"expected app -> channels, found {app!r:.100}")
        for channel, users in channels.items():
            if not isinstance(channel, str) or not channel:
                raise BadTransition(f"expected a channel name, found {channel!r:.100}")
            if users is not None and (isinstance(users, str | bytes)
                                      or not isinstance(users, Sequence)):
                raise BadTransition(f"{channel}: expected a list of user ids or null")
            ids = tuple(dict.fromkeys(_user_id(uid) for uid in users or ()))
            if owned(app, channel):
                out[app, channel] = ids
    return out


def _removed(channel: str, user: str) -> Event:
    return {"name": "member_removed", "channel": channel, "user_id": user}


# -- deliveries: per-target batches, one in flight, retries, a bounded queue ---------------------


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How events are batched and retried (PUSHER.md 9), and the queue's bound."""

    batch_events: int = 20  # at most this many events per post
    batch_delay_ms: int = 250  # a batch waits at most this long after its first event for more
    retry_for_ms: int = 300_000  # no try starts later than this after the batch's first try
    max_bytes: int = 8 * 1024 * 1024  # the queue's bound, all targets together (compact JSON)


@dataclass(frozen=True, slots=True)
class Post:
    """One try to start: `request(target, events, now_ms)` it, then `Deliveries.finished`."""

    id: int
    target: Target
    events: tuple[Event, ...]
    attempt: int  # 1 for the first try of these events
    first_try_ms: int


@dataclass(slots=True)
class _Queue:
    target: Target
    events: deque[tuple[Event, int, int]] = field(default_factory=deque)  # event, bytes, added
    batch: int = 0  # the first `batch` events are being tried (0: no batch started)
    attempt: int = 0  # tries started of that batch
    first_try_ms: int = 0
    retry_at: int = 0  # when the next try of a failed batch may start
    post: int | None = None  # the post in flight


def retry_delay_ms(attempt: int, jitter: float) -> int:
    """How long after the `attempt`-th failed try the next starts: 1, 2, 4... 32 s then
    every 60 s, times 0.8-1.2 by `jitter` in [0, 1) so retries to one URL spread out."""
    base = RETRY_DELAYS_MS[attempt - 1] if attempt <= len(RETRY_DELAYS_MS) else RETRY_EVERY_MS
    return round(base * (0.8 + 0.4 * jitter))


class Deliveries:
    """The events waiting for each target, and the posts that carry them.

    `add` what the announcer said to each target that wants it; call `due` at `next_due`
    (and after each `add` or `finished`), start a post for each Post it returns and report
    its end with `finished`.
    """

    __slots__ = ("settings", "_jitter", "_queues", "_posts", "_next_id", "queued_events",
                 "queued_bytes", "delivered", "posts_ok", "posts_failed", "retries", "dropped")

    def __init__(self, settings: DeliverySettings, jitter: Callable[[], float]) -> None:
        self.settings = settings
        self._jitter = jitter
        self._queues: dict[Target, _Queue] = {}  # only targets with events queued
        self._posts: dict[int, Target] = {}  # in flight
        self._next_id = 0
        self.queued_events = 0
        self.queued_bytes = 0
        self.delivered = 0  # events
        self.posts_ok = 0
        self.posts_failed = 0
        self.retries = 0
        self.dropped = {"queue_full": 0, "expired": 0, "removed": 0}  # events

    def add(self, target: Target, event: Event, now_ms: int) -> bool:
        """Queue `event` for `target`, after the ones before; False (dropped, counted) when
        the queue has no room for it."""
        size = len(dumps(event))
        if self.queued_bytes + size > self.settings.max_bytes:
            self.dropped["queue_full"] += 1
            return False
        queue = self._queues.get(target)
        if queue is None:
            queue = self._queues[target] = _Queue(target)
        queue.events.append((event, size, now_ms))
        self.queued_events += 1
        self.queued_bytes += size
        return True

    def due(self, now_ms: int) -> list[Post]:
        """The posts to start now: per target without one in flight, its retry whose time
        came, or a new batch that is full or whose first event waited batch_delay_ms."""
        posts: list[Post] = []
        for queue in self._queues.values():
            if queue.post is not None:
                continue
            if queue.batch:
                if queue.retry_at > now_ms:
                    continue
                queue.attempt += 1
            elif self._ready(queue, now_ms):
                queue.batch = min(len(queue.events), self.settings.batch_events)
                queue.attempt, queue.first_try_ms = 1, now_ms
            else:
                continue
            self._next_id += 1
            queue.post = self._next_id
            self._posts[queue.post] = queue.target
            events = tuple(event for event, _, _ in islice(queue.events, queue.batch))
            posts.append(Post(queue.post, queue.target, events, queue.attempt,
                              queue.first_try_ms))
        return posts

    def finished(self, post_id: int, ok: bool, now_ms: int) -> None:
        """A post ended: ok (a 2xx) frees its events; otherwise the same batch is retried
        later, or dropped when that would start past retry_for_ms after its first try. A
        post of a target since removed (or unknown) is ignored."""
        target = self._posts.pop(post_id, None)
        if target is None:
            return
        queue = self._queues[target]
        queue.post = None
        if ok:
            self.posts_ok += 1
            self.delivered += queue.batch
            self._pop_batch(queue)
            return
        self.posts_failed += 1
        retry_at = now_ms + retry_delay_ms(queue.attempt, self._jitter())
        if retry_at > queue.first_try_ms + self.settings.retry_for_ms:
            self.dropped["expired"] += queue.batch
            self._pop_batch(queue)
        else:
            self.retries += 1
            queue.retry_at = retry_at

    def next_due(self, now_ms: int) -> int | None:
        """When `due` has a post next (ms, `now_ms` at the earliest), or None when nothing
        waits but posts in flight."""
        soonest: int | None = None
        for queue in self._queues.values():
            if queue.post is not None:
                continue
            if queue.batch:
                at = queue.retry_at
            elif len(queue.events) >= self.settings.batch_events:
                at = now_ms
            else:
                at = queue.events[0][2] + self.settings.batch_delay_ms
            soonest = at if soonest is None else min(soonest, at)
        return None if soonest is None else max(soonest, now_ms)

    def retarget(self, configured: Iterable[Target]) -> None:
        """After a config reload: the queues of targets no longer configured are dropped
        (counted), and their posts in flight will be ignored when they finish."""
        keep = set(configured)
        for target in [target for target in self._queues if target not in keep]:
            queue = self._queues.pop(target)
            self.dropped["removed"] += len(queue.events)
            self.queued_events -= len(queue.events)
            self.queued_bytes -= sum(size for _, size, _ in queue.events)
            if queue.post is not None:
                del self._posts[queue.post]

    def stats(self) -> dict[str, int]:
        """The counters and gauges, for the metrics."""
        return {
            "queued_events": self.queued_events,
            "queued_bytes": self.queued_bytes,
            "in_flight": len(self._posts),
            "delivered": self.delivered,
            "posts_ok": self.posts_ok,
            "posts_failed": self.posts_failed,
            "retries": self.retries,
            "dropped_queue_full": self.dropped["queue_full"],
            "dropped_expired": self.dropped["expired"],
            "dropped_removed": self.dropped["removed"],
        }

    def _ready(self, queue: _Queue, now_ms: int) -> bool:
        events = queue.events
        return bool(events) and (len(events) >= self.settings.batch_events
                                 or events[0][2] + self.settings.batch_delay_ms <= now_ms)

    def _pop_batch(self, queue: _Queue) -> None:
        for _ in range(queue.batch):
            _, size, _ = queue.events.popleft()
            self.queued_events -= 1
            self.queued_bytes -= size
        queue.batch = queue.attempt = 0
        if not queue.events:
            del self._queues[queue.target]


# -- the request of one try ----------------------------------------------------------------------


def signature(secret: str, body: bytes) -> str:
    """`X-Pusher-Signature`: hex HMAC-SHA256 of the exact body bytes sent."""
    return webhook_signature(secret, body)


def request(target: Target, events: Sequence[Event],
            now_ms: int) -> tuple[bytes, list[tuple[str, str]]]:
    """The body and headers of one try, stamped `now_ms`: call it again for each retry, since
    receivers (the Python SDK) refuse a `time_ms` over 5 minutes old. The target's extra
    headers come first and cannot replace the three this sets."""
    body = dumps({"time_ms": now_ms, "events": list(events)})
    headers = [(name, value) for name, value in target.headers
               if name.lower() not in _OWN_HEADERS]
    headers += [("Content-Type", "application/json"), ("X-Pusher-Key", target.key),
                ("X-Pusher-Signature", signature(target.secret, body))]
    return body, headers
