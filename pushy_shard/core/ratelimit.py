"""Per-connection command rate (a token bucket) and a throttle for breach log lines.

Pure: the caller passes the monotonic clock and the current limits on every call, so a
config reload takes effect at the next command and nothing here runs a timer.
"""

from __future__ import annotations

__all__ = ["BreachLog", "TokenBucket"]


class TokenBucket:
    """`burst` commands at once, then `rate` per second; refilled lazily on each `take`.

    A new bucket is full, so a client may send its first `burst` commands without waiting.
    """

    __slots__ = ("tokens", "last")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float, rate: float, burst: float) -> bool:
        """Spend one token; False (nothing spent) when the bucket is empty: refuse the command."""
        elapsed = now - self.last
        self.last = now
        tokens = self.tokens
        if elapsed > 0:
            tokens = min(float(burst), tokens + elapsed * rate)
        elif tokens > burst:  # the limit shrank (config reload)
            tokens = float(burst)
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True


class BreachLog:
    """At most one log line per limit name per `interval` seconds; the rest are counted.

    `allow` returns None to stay quiet, or how many breaches were suppressed since the last
    line (0 or more) when the caller should log now.
    """

    __slots__ = ("interval", "_next", "_suppressed")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def allow(self, name: str, now: float) -> int | None:
        if now < self._next.get(name, float("-inf")):
            self._suppressed[name] = self._suppressed.get(name, 0) + 1
            return None
        self._next[name] = now + self.interval
        return self._suppressed.pop(name, 0)

    def line(self, name: str, now: float, text: str) -> str | None:
        """`text` with how many lines were left out since the last one, or None to stay
        quiet."""
        suppressed = self.allow(name, now)
        if suppressed is None:
            return None
        return f"{text} ({suppressed} more since the last line)" if suppressed else text
