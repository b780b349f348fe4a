"""A presence channel as Redis has it, as one shard has heard it (SCALEOUT.md: Presence).

Redis orders every presence change of a channel by its sequence number (the join and
leave scripts INCR it and PUBLISH the change). A shard keeps a `Mirror` of each presence
channel it listens to: the members in join order, at the last sequence number it applied.
It starts from a snapshot read after its SUBSCRIBE was acknowledged; changes heard before
the snapshot answers wait, and those it already contains are skipped. A local join waits
until the mirror reached the join's own sequence number, and then gets the mirror's list:
every change after it reaches the new member as an event, every change before it is in its
list, so there is no gap and no duplicate. After a gap (the pub/sub link dropped) a new
snapshot replaces the mirror, and the local members are told only the difference. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Heard:
    """A presence change as published: `seq`, who (`entity`: a Pushy member id or a Pusher
    user key), its record, and the joining connection (not told of itself)."""

    seq: int
    added: bool
    entity: str
    record: dict[str, Any]
    sid: str | None = None


@dataclass(frozen=True, slots=True)
class Change:
    """What to tell the local members of the channel: `entity` with `record` came (or
    went); `exclude` is a connection not to tell (the joining one)."""

    added: bool
    entity: str
    record: dict[str, Any]
    exclude: str | None = None


@dataclass(slots=True)
class Mirror:
    seq: int | None = None  # None: waiting for a snapshot
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # join order
    _early: list[Heard] = field(default_factory=list)  # heard before the snapshot
    _waiting: list[tuple[int, object]] = field(default_factory=list)  # (seq, join waiter)
    _known: bool = False  # `members` held a snapshot once (a new one is told as a diff)
    asking: bool = False  # a snapshot was asked for and not answered yet
    generation: int = 0  # gaps so far: a snapshot asked before the last one is stale
    catch_up: bool = False  # made for replayed members: their first snapshot tells what
    #                         they missed since this shard's predecessor last applied

    @property
    def live(self) -> bool:
        return self.seq is not None

    def heard(self, change: Heard) -> list[Change]:
        """A change from the channel's pub/sub stream."""
        if self.seq is None:
            self._early.append(change)
            return []
        return self._apply(change)

    def _apply(self, change: Heard) -> list[Change]:
        assert self.seq is not None
        if change.seq <= self.seq:
            return []  # in the snapshot already
        self.seq = change.seq
        if change.added:
            self.members[change.entity] = change.record
            return [Change(True, change.entity, change.record, change.sid)]
        record = self.members.pop(change.entity, None)
        return [] if record is None else [Change(False, change.entity, record)]

    def snapshot(self, seq: int, members: list[tuple[str, dict[str, Any]]]) -> list[Change]:
        """Redis's state at `seq`. The first one is told to nobody (the local members' lists
        come from it); a later one, after a gap, is told as the difference."""
        before = self.members if self._known else None
        self.members = dict(members)
        self.seq = seq
        self._known = True
        changes: list[Change] = []
        if before is not None:
            changes += [Change(False, entity, record) for entity, record in before.items()
                        if entity not in self.members]
            changes += [Change(True, entity, record) for entity, record in self.members.items()
                        if entity not in before]
        early, self._early = self._early, []
        for change in early:
            changes += self._apply(change)
        return changes

    def reset(self) -> None:
        """A gap: what is heard waits for the next snapshot."""
        self.seq = None
        self._early = []
        self.asking = False
        self.generation += 1

    def wait(self, seq: int, waiter: object) -> bool:
        """A local join at `seq`: True when the mirror is there already (answer it now),
        else it is returned by `ready` once it is."""
        if self.seq is not None and self.seq >= seq:
            return True
        self._waiting.append((seq, waiter))
        return False

    def ready(self) -> list[object]:
        """The waiting joins the mirror has now reached, in their order."""
        if self.seq is None or not self._waiting:
            return []
        seq = self.seq
        done = [waiter for at, waiter in self._waiting if at <= seq]
        self._waiting = [(at, waiter) for at, waiter in self._waiting if at > seq]
        return done

    def abandon(self) -> list[object]:
        """Every waiting join (the channel is no longer listened to)."""
        waiting, self._waiting = self._waiting, []
        return [waiter for _, waiter in waiting]

    def records(self) -> list[dict[str, Any]]:
        return list(self.members.values())
