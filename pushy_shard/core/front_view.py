"""A shard's view of its fronts: incarnations, liveness, replay admission, as pure state.

Fronts greet a shard (Hello), learn its incarnation (Welcome) and replay their local members
of its channels (Resync) before anything else of theirs is applied; a restarted shard
therefore comes back whole, and a restarted front's former members leave. Until every
configured front has replayed (or the recovery grace ends), requests are held back, so
presence lists are complete before anyone joins. A front silent for longer than its
timeout is given up: its members leave; if it was only stalled, its next message gets a
Welcome asking for a replay, and its members come back. Time is passed in; each event
returns what the shard must do (ARCHITECTURE.md 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState


@dataclass(frozen=True, slots=True)
class Answer:
    """Send `message` to the front with this routing identity."""

    identity: bytes
    message: link.Welcome | link.Pong


@dataclass(frozen=True, slots=True)
class Restore:
    """Make front `front`'s memberships exactly `members`; `announce` them (presence-add)
    when the front comes back after it was given up. `reason` says why, for the log:
    "replay", "restarted" (a new incarnation of the front), "silent"."""

    front: int
    members: tuple[MemberState, ...]
    announce: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Apply:
    """Apply this request of front `front` now (and answer it)."""

    front: int
    identity: bytes
    frames: list[bytes]


Action = Answer | Restore | Apply


class FrontsView:
    """Which fronts a shard incarnation serves; one instance per shard process."""

    def __init__(self, shard: int, incarnation: str, fronts: int) -> None:
        self.shard = shard
        self.incarnation = incarnation
        self.fronts = fronts  # configured: recovery ends once every one has replayed
        self.peers: dict[bytes, int] = {}  # identity of a replayed front -> its index
        self.identities: dict[int, bytes] = {}  # front index -> its current identity
        self.last_seen: dict[bytes, float] = {}  # identity -> its last message
        self.forgotten: set[bytes] = set()  # given up for dead: they must replay
        self.recovering = True
        self.backlog: list[Apply] = []
        self.dropped_unsynced = 0  # requests sent before a replay (their front re-sends)

    def identity(self, front: int) -> bytes | None:
        """The routing identity to reach front `front`, if it is served."""
        return self.identities.get(front)

    def welcome(self, replay: bool = False) -> link.Welcome:
        return link.Welcome(self.shard, self.incarnation, replay)

    def hello(self, identity: bytes) -> list[Action]:
        return [Answer(identity, self.welcome())]

    def resync(self, identity: bytes, resync: link.Resync, now: float) -> list[Action]:
        """A front's replay; one meant for a previous incarnation of this shard is stale."""
        if resync.incarnation != self.incarnation:
            return []
        front = resync.front
        actions: list[Action] = []
        previous = self.identities.get(front)
        if previous is not None and previous != identity:
            self.peers.pop(previous, None)  # its former members leave with the Restore
            reason = "restarted"
        else:
            reason = "replay"
        self.peers[identity] = front
        self.identities[front] = identity
        self.last_seen[identity] = now
        rejoining = identity in self.forgotten
        self.forgotten.discard(identity)
        actions.append(Restore(front, resync.members, rejoining, reason))
        if self.recovering and len(self.identities) >= self.fronts:
            actions += self.end_recovery()
        return actions

    def message(self, identity: bytes, frames: list[bytes], now: float) -> list[Action]:
        """Any other message of a front: a Ping is answered, a request applied (or held
        back while recovering); one from a front that has not replayed is dropped, and a
        forgotten front is asked for its replay."""
        front = self.peers.get(identity)
        if front is None:
            self.dropped_unsynced += 1
            if identity in self.forgotten:
                return [Answer(identity, self.welcome(replay=True))]
            return []
        self.last_seen[identity] = now
        if frames[0] == link.Ping.OP:
            return [Answer(identity, link.Pong())]
        apply = Apply(front, identity, frames)
        if self.recovering:
            self.backlog.append(apply)
            return []
        return [apply]

    def expire(self, now: float, silence: float) -> list[Action]:
        """Give up fronts silent for longer than `silence`: their members leave."""
        actions: list[Action] = []
        for identity, front in list(self.peers.items()):
            if now - self.last_seen.get(identity, now) > silence:
                del self.peers[identity]
                self.identities.pop(front, None)
                self.last_seen.pop(identity, None)
                self.forgotten.add(identity)
                actions.append(Restore(front, (), False, "silent"))
        return actions

    def end_recovery(self) -> list[Action]:
        """Every front replayed, or the grace ended: the held requests, in arrival order,
        of the fronts still served by the identity that sent them."""
        if not self.recovering:
            return []
        self.recovering = False
        backlog, self.backlog = self.backlog, []
        return [apply for apply in backlog if self.peers.get(apply.identity) == apply.front]
