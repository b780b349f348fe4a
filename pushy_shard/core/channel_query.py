"""The HTTP API's questions about an app's channels (PUSHER.md 8), as pure functions.

The front checks a question against the channel's name (`check_*`: Pusher's rules say which
attribute applies to which kind of channel) and asks the shards that hold the answer; each
shard answers from its own state (`list_channels`, `channel_info`, `users`), and the front
puts the answers together. The Pushy channels answer too: their presence channels are
private channels with member data, which only the shard can tell, so there it is the
shard that refuses an attribute that does not apply. Every refusal is ApiError 400.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pushy_shard.core.channels import Channel
from pushy_shard.core.pusher_channels import Cached, PusherChannel
from pushy_shard.core.pusher_names import Kind, parse_channel
from pushy_shard.errors import ApiError

LIST_INFO = frozenset({"user_count", "subscription_count"})
CHANNEL_INFO = frozenset({"user_count", "subscription_count", "cache"})


def parse_info(raw: str | None, allowed: frozenset[str]) -> tuple[str, ...]:
    """`info=a,b`: the attributes asked for, in a stable order, each one known here."""
    if not raw:
        return ()
    asked = {part.strip() for part in raw.split(",") if part.strip()}
    unknown = sorted(asked - allowed)
    if unknown:
        raise ApiError(400, f"Unknown info attribute {unknown[0][:50]!r}; expected "
                       + ", ".join(sorted(allowed)))
    return tuple(sorted(asked))


# -- what the front checks by the name (Pusher apps) -------------------------------------------


def check_list(pusher: bool, prefix: str, info: tuple[str, ...]) -> None:
    """Listing user_count needs the list limited to presence channels (a Pusher app's
    `filter_by_prefix=presence-...`)."""
    if pusher and "user_count" in info and not prefix.startswith("presence-"):
        raise ApiError(400, "user_count needs filter_by_prefix=presence-")


def check_channel(pusher: bool, name: str, info: tuple[str, ...]) -> None:
    """user_count applies to presence channels, cache to cache channels."""
    if not pusher:
        if "cache" in info:
            raise ApiError(400, "cache is only for cache channels (Pusher apps)")
        return
    parsed = parse_channel(name)
    if "user_count" in info and parsed.kind is not Kind.PRESENCE:
        raise ApiError(400, "user_count is only for presence channels")
    if "cache" in info and not parsed.cache:
        raise ApiError(400, "cache is only for cache channels")


def check_users(pusher: bool, name: str) -> None:
    if pusher and parse_channel(name).kind is not Kind.PRESENCE:
        raise ApiError(400, "users are only listed for presence channels")


# -- what a shard answers from its state -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Facts:
    """What a query reads of one occupied channel: from a shard's table (`facts`), or with
    several instances from Redis's cluster-wide counts."""

    key: str
    display: str
    presence: bool
    subscriptions: int
    users: int


def facts(chan: Channel) -> Facts:
    return Facts(chan.key, chan.display, chan.presence, len(chan.members), _user_count(chan))


def list_channels(channels: Iterable[Facts], prefix: str, info: tuple[str, ...],
                  pusher: bool) -> dict[str, dict[str, int]]:
    """The occupied channels whose name starts with `prefix`, with the attributes asked
    for that apply (a Pushy channel's name is case-insensitive, so is its prefix)."""
    out: dict[str, dict[str, int]] = {}
    folded = prefix if pusher else prefix.lower()
    for chan in channels:
        name = chan.display if pusher else chan.key
        if not name.startswith(folded):
            continue
        attributes: dict[str, int] = {}
        if "user_count" in info and chan.presence:
            attributes["user_count"] = chan.users
        if "subscription_count" in info:
            attributes["subscription_count"] = chan.subscriptions
        out[chan.display] = attributes
    return out


def channel_info(chan: Facts | None, info: tuple[str, ...], cached: Cached | None,
                 now_ms: int) -> dict[str, Any]:
    """`{"occupied": bool, attributes...}` of one channel."""
    out: dict[str, Any] = {"occupied": chan is not None}
    if "user_count" in info:
        if chan is not None and not chan.presence:
            raise ApiError(400, "user_count is only for presence channels")
        out["user_count"] = chan.users if chan is not None else 0
    if "subscription_count" in info:
        out["subscription_count"] = chan.subscriptions if chan is not None else 0
    if "cache" in info:
        out["cache"] = None if cached is None else {
            "data": cached.data, "ttl": max(0, (cached.until - now_ms) // 1000)}
    return out


def users(chan: Channel | None) -> list[dict[str, str]]:
    """The users present on a presence channel, in join order: a Pusher channel's user
    ids, a Pushy channel's member ids."""
    if chan is None:
        return []
    if not chan.presence:
        raise ApiError(400, "users are only listed for presence channels")
    if isinstance(chan, PusherChannel):
        return [{"id": _text(user.user_id)} for user in chan.users.values()]
    return [{"id": member.state.member_id} for member in chan.members.values()]


def _user_count(chan: Channel) -> int:
    return len(chan.users) if isinstance(chan, PusherChannel) else len(chan.members)


def _text(user_id: object) -> str:
    return user_id if isinstance(user_id, str) else str(user_id)
