"""Trigger replay protection: signatures seen inside their timestamp window (README, Limits).

A signed trigger is valid while its timestamp is within `WINDOW_SECONDS` of the server clock
(PROTOCOL.md 4.2), so a captured request could be re-sent for up to that long. The shard that
owns the channel remembers each accepted signature until its window has passed and refuses
the same signature again. Memory is bounded: past `max_entries`, the entry closest to expiry
is forgotten (a replay of it would then be accepted for the rest of its window) rather than
refusing fresh, legitimate triggers. Pure: the caller passes the clock.
"""

from __future__ import annotations

import heapq

from pushy_shard.core.auth import WINDOW_SECONDS

__all__ = ["ReplayCache"]


class ReplayCache:
    """Signatures -> the Unix time after which a request bearing them is refused anyway."""

    __slots__ = ("_expiry", "_heap", "evicted")

    def __init__(self) -> None:
        self._expiry: dict[bytes, float] = {}
        self._heap: list[tuple[float, bytes]] = []  # (expiry, key), soonest first
        self.evicted = 0  # entries forgotten early because the cache was full

    def __len__(self) -> int:
        return len(self._expiry)

    def seen(self, signature: str, timestamp: int, now: float, max_entries: int) -> bool:
        """True when `signature` was recorded and its window has not passed (refuse it);
        otherwise record it and return False. `timestamp` is the trigger's, in Unix seconds."""
        self._expire(now)
        key = _key(signature)
        if key in self._expiry:
            return True
        while len(self._expiry) >= max_entries and self._heap:
            _, old = heapq.heappop(self._heap)
            if self._expiry.pop(old, None) is not None:
                self.evicted += 1
        # timestamp_in_window refuses |now - timestamp| >= WINDOW from here on
        expiry = float(timestamp + WINDOW_SECONDS)
        self._expiry[key] = expiry
        heapq.heappush(self._heap, (expiry, key))
        return False

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now - 1:  # a second of slack for the clock's rounding
            _, key = heapq.heappop(heap)
            self._expiry.pop(key, None)


def _key(signature: str) -> bytes:
    """Hex signatures compare case-insensitively (as bytes: 32 instead of 64+ characters)."""
    try:
        return bytes.fromhex(signature)
    except ValueError:
        return signature.lower().encode("utf-8", "surrogatepass")
