"""A front's view of its shards: pending requests, resend and replay, as pure state.

Every request waits in `pending` until its Done arrives. When a link (re)connects the front
says Hello; the shard answers Welcome with its incarnation. A new incarnation (or a shard
that gave this front up for dead) has lost this front's members: the front replays them
(Resync) and then re-sends every pending request, so nothing a client asked for is lost
(ARCHITECTURE.md 6). Requests go out only on a synced link, so a replay always precedes
them. Time is passed in; what to send is returned, and the shell (front/links.py) sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pushy_shard.core import link

MAX_PENDING = 10_000  # requests one shard link may hold unanswered; more are refused

W = TypeVar("W")  # what the shell waits on for a request's answer (an asyncio future)


@dataclass(frozen=True, slots=True)
class Send:
    """Send `frames` on shard `shard`'s link; for a request, `rid` names it so the shell
    can report whether the link took it (`ShardsView.sent`)."""

    shard: int
    frames: list[bytes]
    rid: bytes | None = None


@dataclass(frozen=True, slots=True)
class Replay:
    """Shard `shard` (incarnation `incarnation`) lost this front's members: send it a
    Resync with them, before anything else. `restarted` is False for the first Welcome."""

    shard: int
    incarnation: str
    restarted: bool


@dataclass(slots=True)
class Pending(Generic[W]):
    frames: list[bytes]
    waiter: W
    deadline: float
    sent: bool = False


@dataclass(slots=True)
class ShardState(Generic[W]):
    index: int
    incarnation: str | None = None
    synced: bool = False
    answered: float = 0.0  # when its last Welcome or Pong came
    redis_down: bool = False  # its last Pong said it cannot reach Redis (several instances)
    pending: dict[bytes, Pending[W]] = field(default_factory=dict)


class ShardsView(Generic[W]):
    """The links to `shards` shards as state; one instance per front."""

    def __init__(self, front: int, shards: int) -> None:
        self.front = front
        self.shards = [ShardState[W](index) for index in range(shards)]
        self._next_rid = 0

    # -- queries -------------------------------------------------------------------------------

    @property
    def all_synced(self) -> bool:
        return all(shard.synced for shard in self.shards)

    @property
    def in_flight(self) -> int:
        """Requests to connected shards that no Done has answered yet. A shard whose link
        dropped (it exited) answers none of them, so they do not count."""
        return sum(len(shard.pending) for shard in self.shards if shard.synced)

    def down(self, now: float, stale: float) -> list[int]:
        """Shards this front cannot use now: link not synced, or no Pong for `stale`
        seconds (a stopped or wedged shard still holds its socket open)."""
        return [s.index for s in self.shards if not s.synced or now - s.answered > stale]

    # -- requests ------------------------------------------------------------------------------

    def request(self, shard: int, request: link.Request, waiter: W, now: float,
                timeout: float) -> Send | None:
        """Queue `request` for `shard` until `now + timeout`; what to send now (None while
        the link is not synced: it goes out after the replay). Raises OverflowError when
        MAX_PENDING requests already wait."""
        target = self.shards[shard]
        if len(target.pending) >= MAX_PENDING:
            raise OverflowError(f"shard {shard}: too many pending requests")
        self._next_rid += 1
        rid = str(self._next_rid).encode()
        target.pending[rid] = Pending(request.encode(rid), waiter, now + timeout)
        return Send(shard, target.pending[rid].frames, rid) if target.synced else None

    def sent(self, shard: int, rid: bytes, ok: bool) -> None:
        """The shell's report on a request's Send: False if the link could not take it (it
        is re-sent after the next Welcome)."""
        entry = self.shards[shard].pending.get(rid)
        if entry is not None:
            entry.sent = ok

    def done(self, shard: int, rid: bytes) -> W | None:
        """Done arrived: the waiter of that request (None for one already expired)."""
        entry = self.shards[shard].pending.pop(rid, None)
        return entry.waiter if entry is not None else None

    def tick(self, now: float) -> tuple[list[Send], list[W]]:
        """The front's periodic sweep: a Ping on every synced link (shards drop fronts
        that stay silent), and the waiters of requests past their deadline."""
        pings = [Send(s.index, link.Ping().encode()) for s in self.shards if s.synced]
        expired: list[W] = []
        for shard in self.shards:
            late = [rid for rid, entry in shard.pending.items() if entry.deadline <= now]
            expired += [shard.pending.pop(rid).waiter for rid in late]
        return pings, expired

    # -- the link ----------------------------------------------------------------------------

    def connected(self, shard: int) -> Send:
        """The link (re)connected: say Hello."""
        return Send(shard, link.Hello(self.front).encode())

    def disconnected(self, shard: int) -> None:
        self.shards[shard].synced = False

    def pong(self, shard: int, now: float, redis_down: bool = False) -> bool:
        """A Pong came; True when it changed what the shard says of Redis."""
        target = self.shards[shard]
        target.answered = now
        changed = target.redis_down != redis_down
        target.redis_down = redis_down
        return changed

    def redis_down(self) -> list[int]:
        """Shards whose last Pong said they cannot reach Redis."""
        return [s.index for s in self.shards if s.synced and s.redis_down]

    def welcomed(self, shard: int, welcome: link.Welcome, now: float
                 ) -> tuple[Replay | None, list[Send]]:
        """The shard's Welcome: the replay it needs (None if it still has this front's
        members), then the pending requests to (re)send, in their order."""
        target = self.shards[shard]
        lost = welcome.incarnation != target.incarnation or welcome.replay
        replay = None
        if lost:
            replay = Replay(shard, welcome.incarnation, target.incarnation is not None)
            target.incarnation = welcome.incarnation
        target.synced = True
        target.answered = now
        resend = [Send(shard, entry.frames, rid) for rid, entry in target.pending.items()
                  if lost or not entry.sent]
        return replay, resend
