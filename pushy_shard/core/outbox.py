"""A shard's output to its fronts, held where it must wait for Redis (SCALEOUT.md: a join
reports success only after its SUBSCRIBE is acknowledged).

Output is queued per front identity in order. `hold(token)` makes everything queued so far
wait until `release(token)`; what is queued later waits behind it, so every front still gets
its messages in the order the shard made them. Without holds (one host) `take` returns the
queue as it was. Pure: the shell sends what `take` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Frames = list[bytes]


@dataclass(slots=True)
class _Segment:
    messages: dict[bytes, list[Frames]] = field(default_factory=dict)
    waits: set[int] = field(default_factory=set)


class Outbox:
    """Per-front queues of link messages; segments of them wait for tokens."""

    def __init__(self) -> None:
        self._open = _Segment()
        self._held: list[_Segment] = []  # closed segments, oldest first

    def __bool__(self) -> bool:
        return bool(self._open.messages) or bool(self._held)

    def queue(self, identity: bytes, frames: Frames) -> bool:
        """Queue one message; True when it is the first of the open segment (the shell
        schedules a flush then)."""
        first = not self._open.messages
        self._open.messages.setdefault(identity, []).append(frames)
        return first

    def hold(self, token: int) -> None:
        """What is queued so far waits for `release(token)`."""
        self._open.waits.add(token)

    def release(self, token: int) -> bool:
        """`token` is done (acknowledged, failed or timed out); True when held output may
        now go (the shell flushes)."""
        for segment in (*self._held, self._open):
            segment.waits.discard(token)
        return bool(self._held) and not self._held[0].waits

    @property
    def waiting(self) -> bool:
        return bool(self._held)

    def take(self) -> dict[bytes, list[Frames]]:
        """What may go now, per front identity, in order: the segments no token holds, up
        to the first that one does."""
        if not self._held and not self._open.waits:  # nothing waits (one host): all of it
            ready, self._open.messages = self._open.messages, {}
            return ready
        if self._open.messages or self._open.waits:
            self._held.append(self._open)
            self._open = _Segment()
        out: dict[bytes, list[Frames]] = {}
        while self._held and not self._held[0].waits:
            segment = self._held.pop(0)
            if not out:
                out = segment.messages
                continue
            for identity, messages in segment.messages.items():
                out.setdefault(identity, []).extend(messages)
        return out
