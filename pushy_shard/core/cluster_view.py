"""One shard's side of the cluster, as pure state: what it listens to on Redis, what it has
told Redis, and what waits for Redis's answers (SCALEOUT.md: Fan-out).

The shard subscribes to a channel's pub/sub channel while it has local members there and
unsubscribes `UNSUBSCRIBE_AFTER` seconds after the last left (churn costs no round trips);
it writes its local subscription count of each channel it changed once per loop turn, and
publishes each trigger. `turn` gathers all of that into one `Turn` for the shell to send as
one pipeline, plus the SUBSCRIBEs for the pub/sub link. Output that must wait for Redis
(a first local member's success) waits for the turn's token and its SUBSCRIBE's token.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

UNSUBSCRIBE_AFTER = 2.0  # seconds a channel without local members stays subscribed


@dataclass(slots=True)
class _Listening:
    acknowledged: bool = False
    tokens: list[int] = field(default_factory=list)  # held output waiting for the ack
    idle_since: float | None = None  # no local members since (monotonic seconds)


@dataclass(frozen=True, slots=True)
class Publish:
    """One event to PUBLISH; `waiter` is what the shard answers when Redis has it."""

    key: str
    payload: bytes
    waiter: object


@dataclass(frozen=True, slots=True)
class PresenceOp:
    """A presence script to run (shard/redis_link.py): `join` (args: entity, record JSON,
    sid, "1" when a taken Pushy member id may be drawn again), `leave` (sid), `snapshot`,
    `prune` (the sids to keep); the shard is told the answer with `waiter`."""

    kind: str
    key: str
    args: tuple[str, ...]
    waiter: object


@dataclass(frozen=True, slots=True)
class Asked:
    """An HTTP API query to answer from Redis (`request` a link.Query)."""

    request: object
    waiter: object


@dataclass(frozen=True, slots=True)
class Turn:
    """What one loop turn asks of Redis: `counts` (key -> local subscriptions, 0 removes
    the instance from the channel) and `publishes` in one pipeline, whose answer releases
    `token`; `subscribe`/`unsubscribe` for the pub/sub link."""

    token: int | None
    counts: dict[str, int]
    publishes: list[Publish]
    subscribe: list[str]
    unsubscribe: list[str]
    presence: list[PresenceOp] = field(default_factory=list)
    queries: list[Asked] = field(default_factory=list)
    applied: dict[str, int] = field(default_factory=dict)  # presence key -> seq told

    def __bool__(self) -> bool:
        return bool(self.counts or self.publishes or self.subscribe or self.unsubscribe
                    or self.presence or self.queries or self.applied)


class ClusterView:
    """Which channels a shard listens to, and what it must tell Redis next."""

    def __init__(self) -> None:
        self.listening: dict[str, _Listening] = {}
        self.counts: dict[str, int] = {}  # key -> local subscriptions last written
        self._dirty: dict[str, int] = {}  # key -> local subscriptions now, not yet written
        self._forced: set[str] = set()  # ...written even where unchanged (`rewrite`)
        self._publishes: list[Publish] = []
        self._presence: list[PresenceOp] = []
        self._queries: list[Asked] = []
        self.applied: dict[str, int] = {}  # presence key -> seq told, not yet written
        self._subscribe: list[str] = []
        self._unsubscribe: list[str] = []
        self._next_token = 0

    def _token(self) -> int:
        self._next_token += 1
        return self._next_token

    def changed(self, key: str, count: int, now: float) -> list[int]:
        """The shard's local subscriptions of `key` are now `count`: the tokens output made
        until now must wait for (a new channel's SUBSCRIBE)."""
        self._dirty[key] = count
        listening = self.listening.get(key)
        if count == 0:
            if listening is not None and listening.idle_since is None:
                listening.idle_since = now
            return []
        if listening is None:
            token = self._token()
            self.listening[key] = _Listening(tokens=[token])
            self._subscribe.append(key)
            return [token]
        listening.idle_since = None
        if not listening.acknowledged:  # a second member while the SUBSCRIBE is in flight
            token = self._token()
            listening.tokens.append(token)
            return [token]
        return []

    def listen(self, key: str) -> None:
        """Subscribe to `key` for good (a control channel: no members, no count)."""
        if key not in self.listening:
            self.listening[key] = _Listening()
            self._subscribe.append(key)

    def publish(self, key: str, payload: bytes, waiter: object) -> None:
        self._publishes.append(Publish(key, payload, waiter))

    def presence(self, op: PresenceOp) -> None:
        self._presence.append(op)

    def query(self, asked: Asked) -> None:
        self._queries.append(asked)

    def acknowledged(self, key: str) -> list[int]:
        """Redis confirmed the SUBSCRIBE of `key`: the tokens it releases."""
        listening = self.listening.get(key)
        if listening is None or listening.acknowledged:
            return []
        listening.acknowledged = True
        tokens, listening.tokens = listening.tokens, []
        return tokens

    def idle(self, now: float) -> None:
        """Channels idle past UNSUBSCRIBE_AFTER are unsubscribed at the next turn."""
        for key, listening in list(self.listening.items()):
            if (listening.idle_since is not None and listening.acknowledged
                    and now - listening.idle_since >= UNSUBSCRIBE_AFTER):
                del self.listening[key]
                self._unsubscribe.append(key)

    def lost(self) -> list[int]:
        """The pub/sub link dropped: every subscription is gone (the reconnect subscribes
        `listening` again). Returns the tokens to release: served locally meanwhile."""
        tokens: list[int] = []
        for listening in self.listening.values():
            listening.acknowledged = False
            tokens += listening.tokens
            listening.tokens = []
        self._unsubscribe = []
        return tokens

    def unheard(self, keys: Iterable[str]) -> list[int]:
        """SUBSCRIBEs not acknowledged in time: the tokens to release (served locally)."""
        tokens: list[int] = []
        for key in keys:
            listening = self.listening.get(key)
            if listening is not None and not listening.acknowledged:
                tokens += listening.tokens
                listening.tokens = []
        return tokens

    def rewrite(self, keys: Iterable[tuple[str, int]]) -> None:
        """Redis lost or may have lost what this shard wrote (a restart, a new lease):
        write every local count again."""
        self.counts = {}
        for key, count in keys:
            self._dirty[key] = count
            self._forced.add(key)

    def turn(self) -> Turn:
        """What this turn sends. `token` (released when the pipeline answers) is set when
        a channel became occupied or vacant on this instance: the output of the turn (a
        first member's success, a last member's unsubscribe reply) waits for it, so that
        a trigger sent after it, on any instance, sees the channel as it now is."""
        counts = {key: n for key, n in self._dirty.items()
                  if self.counts.get(key, 0) != n or key in self._forced}
        self._dirty, self._forced = {}, set()
        flipped = False
        for key, n in counts.items():
            if n:
                flipped = flipped or key not in self.counts
                self.counts[key] = n
            else:
                flipped = flipped or key in self.counts
                self.counts.pop(key, None)
        token = self._token() if flipped else None
        turn = Turn(token, counts, self._publishes, self._subscribe, self._unsubscribe,
                    self._presence, self._queries, self.applied)
        self._publishes, self._subscribe, self._unsubscribe = [], [], []
        self._presence, self._queries, self.applied = [], [], {}
        return turn


class RecentMarks:
    """The marks of the triggers a front wrote in the last `keep` seconds: one delivered
    again is a request its front re-sent after the publishing shard died (published twice),
    and is dropped. Memory: one entry per trigger delivered in the window."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self._marks: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()

    def seen(self, mark: str, now: float) -> bool:
        """True when `mark` was heard within the window; else it is recorded."""
        order = self._order
        while order and order[0][0] <= now - self.keep:
            self._marks.discard(order.popleft()[1])
        if mark in self._marks:
            return True
        self._marks.add(mark)
        order.append((now, mark))
        return False
