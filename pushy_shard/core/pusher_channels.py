"""The channels of one Pusher app in a shard: a ChannelState with Pusher's rules (PUSHER.md 3-5).

The front admits a subscription (name, signature, channel_data) and sends a Join; here it
becomes a membership. Presence is counted per user: member_added goes out when a user's
first connection joins, member_removed when its last leaves, whichever fronts hold them;
past `max_presence_members` a new user is refused, a present user's next connection is
not. Cache channels keep their last HTTP-triggered event for 30 minutes; subscription
counts are pushed when the app asks for them, at most one per 5 s above 100 subscribers.
Every operation returns the effects to perform, with every message encoded first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pushy_shard.core import pusher_protocol as wire
from pushy_shard.core.channels import (
    PRESENCE_UNAVAILABLE,
    Broadcast,
    Channel,
    Effect,
    Hook,
    Joined,
    Left,
    Member,
    MemberState,
    Reply,
    counts_due,
    new_count,
)
from pushy_shard.core.protocol import dumps
from pushy_shard.core.pusher_names import Kind, parse_channel
from pushy_shard.core.routing import name_of

CACHE_MS = 30 * 60 * 1000  # a cache channel keeps its last event this long


class AppRules(Protocol):
    """What the channels read of their app's settings (config.App), at use."""

    @property
    def max_presence_members(self) -> int: ...

    @property
    def subscription_count(self) -> bool: ...


@dataclass(slots=True)
class User:
    """One user present on a presence channel, over all of its connections."""

    user_id: object  # as its channel_data wrote it (Laravel: an integer)
    user_info: object
    connections: int
    first: int  # the join sequence of its first connection: presence lists keep join order


@dataclass(frozen=True, slots=True)
class Cached:
    """A cache channel's last HTTP-triggered event: the message a new subscriber gets, its
    data (the HTTP API's `cache` attribute) and until when it is kept (ms)."""

    message: bytes
    data: str
    until: int


@dataclass(slots=True)
class PusherChannel(Channel):
    users: dict[str, User] = field(default_factory=dict)  # user key (text of the id) -> user


class PusherChannels:
    """All channels of one Pusher app a shard owns (a ChannelState)."""

    def __init__(self, rules: Callable[[], AppRules | None],
                 on_channel: Callable[[str, bool], None] | None = None) -> None:
        self.rules = rules  # the app's settings now (None: the app was removed)
        self.channels: dict[str, PusherChannel] = {}
        # cache channels' last HTTP-triggered event and until when (ms), occupied or not
        self.caches: dict[str, Cached] = {}
        self.on_channel = on_channel
        self.on_breach: Callable[[str, str], None] | None = None
        self.max_presence_bytes = 0  # Pushy's limit; presence data is checked by the front
        self.hooks: frozenset[str] = frozenset()  # webhook events to report (hook_events)
        self.shared_presence = False  # several instances: presence comes from Redis
        self._joins = 0

    def get(self, key: str) -> PusherChannel | None:
        return self.channels.get(key)

    def all(self) -> Iterable[PusherChannel]:
        return self.channels.values()

    # -- joining and leaving -----------------------------------------------------------------

    def subscribe(self, *, front: int, sid: str, channel: str, request: dict[str, Any],
                  now_ms: int, new_member_id: Callable[[], str]) -> list[Effect]:
        """A subscription the front admitted: `request["key"]`, and on presence channels
        `request["member"]` = {user_id, user_key, user_info}."""
        key = request["key"]
        chan = self.channels.get(key)
        presence = parse_channel(channel).kind is Kind.PRESENCE
        member = request.get("member") if presence else None
        if presence and member is None:
            return [Reply(front, sid, wire.subscription_error(
                channel, "BadRequest", "Presence channels need channel_data", 400))]
        if chan is not None and sid in chan.members:  # again: the same answer, no change
            return [Reply(front, sid, self._succeeded(chan))]
        user_key = member["user_key"] if member is not None else ""
        new_user = chan is None or user_key not in chan.users
        rules = self.rules()
        limit = rules.max_presence_members if rules is not None else 0
        if presence and new_user and chan is not None and len(chan.users) >= limit:
            if self.on_breach is not None:
                self.on_breach("presence_members", f"refused a new user of {sid} on full "
                               f"{key!r} ({limit} users)")
            return [Reply(front, sid, wire.subscription_error(
                channel, "LimitReached", "Presence channel is full", 4100))]
        chan = chan or PusherChannel(key=key, display=channel, presence=presence)
        self._joins += 1
        record = ({"user_id": member["user_id"], "user_info": member.get("user_info", {})}
                  if member is not None else None)
        state = MemberState(sid, key, channel, presence, user_key, record, self._joins)
        added = None
        if record is not None and new_user and chan.members and not self.shared_presence:
            added = wire.member_added(channel, record["user_id"], record["user_info"])
        chan.add(Member(front, state))
        if presence:
            self._count_user(chan, state, +1)
        success = self._succeeded(chan)
        effects: list[Effect] = [Joined(front, sid, state, success)]
        if key not in self.channels:
            self.channels[key] = chan
            if self.on_channel is not None:
                self.on_channel(channel, True)
            effects += self._hook(chan, "channel_occupied")
        if added is not None:
            effects.append(Broadcast(key, chan.fronts(), added, sid))
        if presence and new_user and record is not None and not self.shared_presence:
            effects += self._hook(chan, "member_added", user_id=record["user_id"])
        if parse_channel(channel).cache:  # the last event, or cache_miss (PUSHER.md 3)
            last = self.cached(key, now_ms)
            effects.append(Reply(front, sid, last.message if last is not None
                                 else wire.cache_miss(channel)))
            if last is None:
                effects += self._hook(chan, "cache_miss")
        effects += self._count(chan, now_ms)
        return effects

    def unsubscribe(self, *, front: int, sid: str, channel: str) -> list[Effect]:
        """`pusher:unsubscribe`: no reply (PUSHER.md 3); the front sends a Leave."""
        return []

    def leave(self, sid: str, keys: Iterable[str]) -> list[Effect]:
        effects: list[Effect] = []
        for key in keys:
            chan = self.channels.get(key)
            if chan is not None and sid in chan.members:
                effects += self._remove(chan, sid)
        return effects

    def restore_front(self, front: int, members: Iterable[MemberState], *,
                      announce: bool = False) -> list[Effect]:
        """`front`'s memberships become exactly `members` (ARCHITECTURE.md 6): those it
        no longer has leave (member_removed for users gone with them); replayed ones join
        silently, or announced (member_added) when the front comes back after it was
        given up."""
        wanted = {(m.key, m.sid): m for m in members}
        effects: list[Effect] = []
        for chan in list(self.channels.values()):
            for sid, member in list(chan.members.items()):
                if member.front == front and (chan.key, sid) not in wanted:
                    effects += self._remove(chan, sid)
        touched: set[str] = set()
        for state in wanted.values():
            self._joins = max(self._joins, state.seq)
            restored = self.channels.get(state.key)
            if restored is None:
                restored = self.channels[state.key] = PusherChannel(
                    key=state.key, display=state.display, presence=state.presence)
                if self.on_channel is not None:
                    self.on_channel(restored.display, True)
                effects += self._hook(restored, "channel_occupied")
            if state.sid in restored.members:
                continue
            new_user = state.presence and state.member_id not in restored.users
            restored.add(Member(front, state))
            touched.add(state.key)
            if state.presence:
                self._count_user(restored, state, +1)
                if new_user and state.record is not None and not self.shared_presence:
                    if announce:
                        added = wire.member_added(restored.display, state.record["user_id"],
                                                  state.record.get("user_info", {}))
                        effects.append(Broadcast(state.key, restored.fronts(), added,
                                                 state.sid))
                    effects += self._hook(restored, "member_added",
                                          user_id=state.record["user_id"])
        for key in touched:  # join order across fronts' replays
            chan = self.channels[key]
            ordered = sorted(chan.members.values(), key=lambda m: m.state.seq)
            chan.members = {m.state.sid: m for m in ordered}
            chan.users = dict(sorted(chan.users.items(), key=lambda item: item[1].first))
        return effects

    # -- events ------------------------------------------------------------------------------

    def trigger(self, key: str, event: str, data: object, exclude: str | None, *,
                now_ms: int = 0, user_id: object = None,
                client: bool = False) -> tuple[bool, list[Effect]]:
        """An event (`data` a string) to every member but `exclude`; a client event on a
        presence channel carries its sender's `user_id`. A cache channel keeps the last
        event triggered over HTTP (not client events)."""
        chan = self.channels.get(key)
        display = chan.display if chan is not None else name_of(key)
        text = data if isinstance(data, str) else dumps(data).decode()
        message = wire.event(event, display, text, user_id if client else None)
        if not client and parse_channel(display).cache:
            self.caches[key] = Cached(message, text, now_ms + CACHE_MS)
        if chan is None:
            return False, []
        effects: list[Effect] = [Broadcast(key, chan.fronts(), message, exclude)]
        if client:
            effects += self.client_hook(key, event, text, exclude, user_id)
        return True, effects

    def client_hook(self, key: str, event: str, text: str, socket_id: str | None,
                    user_id: object) -> list[Effect]:
        """The client_event webhook of a client event on `key`, when a webhook wants it
        (made where the event was sent: with several instances, once)."""
        chan = self.channels.get(key)
        if "client_event" not in self.hooks or chan is None:
            return []
        hook: dict[str, Any] = {"name": "client_event", "channel": chan.display, "event": event,
                                "data": text, "socket_id": socket_id}
        if chan.presence and user_id is not None:
            hook["user_id"] = _text(user_id)
        return [Hook(key, hook)]

    def tick(self, now_ms: int) -> list[Effect]:
        """Subscription counts the throttle held back, now that they may go."""
        effects: list[Effect] = []
        for chan in counts_due(self.channels.values(), now_ms):
            effects += self._count(chan, now_ms, force=True)
        for key in [key for key, cached in self.caches.items() if cached.until <= now_ms]:
            del self.caches[key]
        return effects

    def info(self, key: str) -> dict[str, int]:
        """What the HTTP API's `info` can say of a channel: its subscription count, and
        its user count on presence channels."""
        chan = self.channels.get(key)
        if chan is None:
            return {"subscription_count": 0}
        out = {"subscription_count": len(chan.members)}
        if chan.presence:
            out["user_count"] = len(chan.users)
        return out

    # -- internals ---------------------------------------------------------------------------

    def _succeeded(self, chan: PusherChannel) -> bytes:
        if not chan.presence:
            return wire.subscription_succeeded(chan.display)
        ids = [user.user_id for user in chan.users.values()]
        users = {user_key: user.user_info for user_key, user in chan.users.items()}
        return wire.presence_succeeded(chan.display, ids, users)

    def cached(self, key: str, now_ms: int) -> Cached | None:
        """The cache channel's last event, while it is kept."""
        cached = self.caches.get(key)
        return cached if cached is not None and now_ms < cached.until else None

    @staticmethod
    def _count_user(chan: PusherChannel, state: MemberState, delta: int) -> bool:
        """Count a connection of `state`'s user; True when the user came or went."""
        user = chan.users.get(state.member_id)
        if user is None:
            record = state.record or {}
            chan.users[state.member_id] = User(record.get("user_id"), record.get("user_info", {}),
                                               1, state.seq)
            return True
        user.connections += delta
        if user.connections <= 0:
            del chan.users[state.member_id]
            return True
        return False

    def _remove(self, chan: PusherChannel, sid: str) -> list[Effect]:
        state = chan.members[sid].state
        removed = None
        if chan.presence:
            user = chan.users.get(state.member_id)
            if (user is not None and user.connections == 1 and len(chan.members) > 1
                    and not self.shared_presence):
                removed = wire.member_removed(chan.display, user.user_id)
        member = chan.remove(sid)
        gone = chan.presence and self._count_user(chan, state, -1)
        effects: list[Effect] = [Left(member.front, sid, chan.key, None)]
        if gone and state.record is not None and not self.shared_presence:
            effects += self._hook(chan, "member_removed", user_id=state.record["user_id"])
        if not chan.members:
            del self.channels[chan.key]
            if self.on_channel is not None:
                self.on_channel(chan.display, False)
            return effects + self._hook(chan, "channel_vacated")
        if removed is not None:
            effects.append(Broadcast(chan.key, chan.fronts(), removed, None))
        effects += self._count(chan, None)
        return effects

    def _count(self, chan: PusherChannel, now_ms: int | None,
               force: bool = False) -> list[Effect]:
        """`pusher_internal:subscription_count` to every subscriber, when the app wants it
        (not on presence or user channels); above 100 subscribers at most one per 5 s
        (`now_ms` None: the time is not known here, the next tick sends it)."""
        rules = self.rules()
        push = rules is not None and rules.subscription_count
        hook = "subscription_count" in self.hooks
        if not (push or hook) or chan.presence:
            return []
        if parse_channel(chan.display).kind is Kind.USER:
            return []
        count = new_count(chan, now_ms, force)
        if count is None:
            return []
        effects: list[Effect] = []
        if push:
            effects.append(Broadcast(chan.key, chan.fronts(),
                                     wire.subscription_count(chan.display, count), None))
        if hook:
            effects.append(Hook(chan.key, {"name": "subscription_count", "channel": chan.display,
                                           "subscription_count": count}))
        return effects

    def _hook(self, chan: PusherChannel, name: str, *, user_id: object = None) -> list[Effect]:
        """A webhook transition, when a webhook wants it (user ids as text, PUSHER.md 9)."""
        if name not in self.hooks:
            return []
        event: dict[str, Any] = {"name": name, "channel": chan.display}
        if user_id is not None:
            event["user_id"] = _text(user_id)
        return [Hook(chan.key, event)]

    def presence_entity(self, member: MemberState) -> str:
        return member.member_id  # the user's key: its user_id as text

    def presence_success(self, chan: Channel, member: MemberState,
                         records: list[dict[str, Any]]) -> bytes:
        """Pusher's list is per user: ids and {user key: user_info}, in join order."""
        ids = [record.get("user_id") for record in records]
        users = {_text(record.get("user_id")): record.get("user_info", {}) for record in records}
        return wire.presence_succeeded(chan.display, ids, users)

    def presence_change(self, display: str, record: dict[str, Any], added: bool) -> bytes:
        if added:
            return wire.member_added(display, record.get("user_id"), record.get("user_info", {}))
        return wire.member_removed(display, record.get("user_id"))

    def presence_refused(self, display: str) -> bytes:
        return wire.subscription_error(display, "ServiceUnavailable", PRESENCE_UNAVAILABLE, 503)

    def hook_state(self) -> dict[str, list[str] | None]:
        return {chan.display: ([_text(user.user_id) for user in chan.users.values()]
                               if chan.presence else None) for chan in self.channels.values()}


def _text(user_id: object) -> str:
    return user_id if isinstance(user_id, str) else dumps(user_id).decode()
