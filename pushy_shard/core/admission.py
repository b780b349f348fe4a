"""What a front lets in, as pure decisions (README, Limits): connections, and each
connection's messages and subscribes. The limits are read at every call, so a reloaded
configuration applies to the next connection or message; time is passed in. The front
counts and logs each refusal (`breach`); the client protocol answers it in its own words.
"""

from __future__ import annotations

from pushy_shard.core.config import Limits
from pushy_shard.core.ratelimit import TokenBucket
from pushy_shard.errors import STOPPING, TOO_MANY_CONNECTIONS, Close


def connection(open_now: int, limits: Limits, stopping: bool) -> Close | None:
    """May one more connection open? None: yes. Else the close to end it with: STOPPING
    while the front stops, TOO_MANY_CONNECTIONS past `max_connections_per_front` (a
    breach)."""
    if stopping:
        return STOPPING
    if open_now >= limits.max_connections_per_front:
        return TOO_MANY_CONNECTIONS
    return None


class Budget:
    """One open connection's share: its command bucket, the subscribes it has in flight
    (they count toward its channels before the shard answers) and its address."""

    __slots__ = ("bucket", "subscribing", "address")

    def __init__(self, limits: Limits, now: float, address: str | None) -> None:
        self.bucket = TokenBucket(limits.commands_burst, now)
        self.subscribing = 0
        self.address = address

    def message(self, now: float, limits: Limits) -> bool:
        """One message costs a token; False: over `commands_per_second`, drop it unread."""
        return self.bucket.take(now, limits.commands_per_second, limits.commands_burst)

    def may_subscribe(self, channels: int, limits: Limits) -> bool:
        """A subscribe to a channel the connection is not in, with `channels` joined:
        False past `max_channels_per_connection` (in-flight subscribes count)."""
        return channels + self.subscribing < limits.max_channels_per_connection
