"""What instances say to each other through Redis: key names and pub/sub messages (SCALEOUT.md).

Every key and pub/sub channel of one pushy channel carries the channel's key in braces, a
Redis Cluster hash tag, so all of them share a slot and a later Cluster mode needs no
migration. A pub/sub message is a compact JSON array whose first element says what it is;
the receiving shard decodes it once and turns it into the same effects a local request
would make. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pushy_shard.core.cluster_presence import Heard
from pushy_shard.core.protocol import dumps, loads
from pushy_shard.errors import ClusterMessageError

PREFIX = "pushy:"
CHANNEL_PREFIX = b"pushy:c:{"  # pub/sub channels: pushy:c:{<key>}
HOSTS = "pushy:hosts"  # every registered instance (node.incarnation)


def _tagged(kind: str, key: str) -> str:
    return f"{PREFIX}{kind}:{{{key}}}"


def channel(key: str) -> bytes:
    """The pub/sub channel of the pushy channel `key` (routing.app_key)."""
    return CHANNEL_PREFIX + key.encode("utf-8", "surrogatepass") + b"}"


def key_of(redis_channel: bytes) -> str:
    """The pushy channel key of a pub/sub channel (ClusterMessageError if it is not ours)."""
    if not (redis_channel.startswith(CHANNEL_PREFIX) and redis_channel.endswith(b"}")):
        raise ClusterMessageError(f"not a pushy channel: {redis_channel[:80]!r}")
    try:
        return redis_channel[len(CHANNEL_PREFIX):-1].decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ClusterMessageError("a pub/sub channel name is not UTF-8") from exc


def occupancy(key: str) -> str:
    """HASH instance -> 1 for every instance with members of `key`: the channel is
    occupied cluster-wide while it has a field (Pushy's 201/200, occupied/vacated)."""
    return _tagged("s", key)


def host_channels(instance: str) -> str:
    """SET of the channel keys `instance` has members in (what a sweep of it releases)."""
    return f"{PREFIX}hostch:{instance}"


def lease(instance: str) -> str:
    return f"{PREFIX}lease:{instance}"


def presence(key: str, instance: str) -> list[str]:
    """The keys of a presence channel, in the order the scripts take them (redis_scripts):
    HASH entity -> record; ZSET entity -> seq (join order); HASH entity -> connections
    on every instance; the channel's seq counter; HASH sid -> entity of `instance`; HASH
    entity -> 1 while its member_added is announced; LIST of the last changes; HASH
    instance -> the last seq its shard applied."""
    base = _tagged("p", key)
    return [f"{base}:m", f"{base}:o", f"{base}:n", f"{base}:seq", f"{base}:h:{instance}",
            f"{base}:w", f"{base}:log", f"{base}:at"]


def announced(key: str) -> str:
    """Set while the channel's channel_occupied is announced (webhooks)."""
    return _tagged("w", key)


# -- pub/sub messages --------------------------------------------------------------------------

TRIGGER = "t"
TERMINATE = "k"  # ["k", app, user, origin node]: on TERMINATE_KEY, heard by every shard 0
TERMINATE_KEY = "\x01terminate"  # a key no channel has: its pub/sub channel
ADDED = "a"  # ["a", seq, entity, record, sid]: published by the join script
REMOVED = "r"  # ["r", seq, entity, record]: by the leave and prune scripts


@dataclass(frozen=True, slots=True)
class Published:
    """An event for every member of the channel on every instance: a trigger, a Pusher
    client event (with its sender's user_id on presence channels) or a custom command's
    forward. `exclude` is a socket id, unique across instances. `mark` names the request
    (its front and id): a front re-sends a request its shard died before answering, and
    the fronts write a mark once (core/cluster_view.RecentMarks)."""

    event: str
    data: Any
    exclude: str | None = None
    user_id: Any = None
    client: bool = False
    mark: str = ""

    def encode(self) -> bytes:
        return dumps([TRIGGER, self.event, self.data, self.exclude, self.user_id, self.client,
                      self.mark])


@dataclass(frozen=True, slots=True)
class Terminate:
    """terminate_connections asked on instance `origin`: every other closes the user's
    connections too."""

    app: str
    user: str
    origin: str

    def encode(self) -> bytes:
        return dumps([TERMINATE, self.app, self.user, self.origin])


ClusterMessage = Published | Heard | Terminate


def decode(payload: bytes) -> ClusterMessage:
    """A pub/sub message back; ClusterMessageError for one that is not ours or is malformed."""
    try:
        item = loads(payload)
    except ValueError as exc:
        raise ClusterMessageError(f"undecodable cluster message: {exc}") from exc
    if not isinstance(item, list) or not item:
        raise ClusterMessageError("a cluster message is a non-empty JSON array")
    if item[0] == TRIGGER and len(item) == 7:
        _, event, data, exclude, user_id, client, mark = item
        if (isinstance(event, str) and (exclude is None or isinstance(exclude, str))
                and isinstance(client, bool) and isinstance(mark, str)):
            return Published(event, data, exclude, user_id, client, mark)
    elif item[0] == TERMINATE and len(item) == 4 and all(isinstance(x, str) for x in item):
        return Terminate(item[1], item[2], item[3])
    elif item[0] in (ADDED, REMOVED) and len(item) == (5 if item[0] == ADDED else 4):
        seq, entity, record = item[1], item[2], item[3]
        sid = item[4] if item[0] == ADDED else None
        if (isinstance(seq, int) and isinstance(entity, str) and isinstance(record, dict)
                and (sid is None or isinstance(sid, str))):
            return Heard(seq, item[0] == ADDED, entity, record, sid)
    raise ClusterMessageError(f"unknown or malformed cluster message {str(item[0])[:20]!r}")
