"""The shard's channel state machine: channels, members, presence records, member ids.

Every operation changes the table and returns the effects to perform (replies to one
connection, membership notices for the front that holds it, broadcasts to the fronts with
members); the shard loop performs them. PROTOCOL.md 3 and 5, ARCHITECTURE.md 2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pushy_shard.core import protocol
from pushy_shard.core.auth import channel_token, parse_json_like_js, signatures_equal
from pushy_shard.core.config import Limits
from pushy_shard.core.routing import app_of, channel_key
from pushy_shard.errors import ChannelNotFound, NotSubscribed

MAX_PRESENCE_BYTES = Limits().max_presence_data  # the default; shards pass the configured one
PRESENCE_UNAVAILABLE = "Presence is unavailable (Redis), retry"  # several instances
COUNT_QUIET_ABOVE = 100  # subscribers past which subscription counts are throttled
COUNT_EVERY_MS = 5000  # ...to at most one per this long


# -- effects ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Send `message` to one connection."""

    front: int
    sid: str
    message: bytes


@dataclass(frozen=True, slots=True)
class Joined:
    """`sid` is now a member: the front indexes it for fan-out, then sends `message`."""

    front: int
    sid: str
    member: MemberState
    message: bytes


@dataclass(frozen=True, slots=True)
class Left:
    """`sid` is no longer a member of `key`: the front drops it, then sends `message` if any."""

    front: int
    sid: str
    key: str
    message: bytes | None


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Each front in `fronts` writes `message` to its members of `key`, except `exclude`.
    `mark` (several instances) names the trigger: a front writes one mark once."""

    key: str
    fronts: tuple[int, ...]
    message: bytes
    exclude: str | None
    mark: str = ""


@dataclass(frozen=True, slots=True)
class Hook:
    """A transition webhooks may announce (PUSHER.md 9): `event` as it is posted, of the
    app that channel `key` belongs to. Made only for the events `ChannelState.hooks` names."""

    key: str
    event: dict[str, Any]


Effect = Reply | Joined | Left | Broadcast | Hook

OCCUPANCY = frozenset({"channel_occupied", "channel_vacated"})
PRESENCE = frozenset({"member_added", "member_removed"})


def hook_events(wanted: Iterable[str]) -> frozenset[str]:
    """The events a channel state must report for webhooks that want `wanted`: both of a
    pair (a vacate is announced only after its occupied was)."""
    names = frozenset(wanted)
    if names & OCCUPANCY:
        names |= OCCUPANCY
    if names & PRESENCE:
        names |= PRESENCE
    return names


# -- state -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberState:
    """What a front remembers of one local membership, and replays to a restarted shard."""

    sid: str
    key: str
    display: str
    presence: bool
    member_id: str
    record: dict[str, Any] | None
    # the order the shard applied joins in: with the record's `subscribed` time it puts
    # members replayed from several fronts back in join order (compare=False: equality
    # is the membership, not when it happened)
    seq: int = field(default=0, compare=False)

    def to_wire(self) -> list[Any]:
        return [self.sid, self.key, self.display, self.presence, self.member_id, self.record,
                self.seq]

    @classmethod
    def from_wire(cls, item: list[Any]) -> MemberState:
        sid, key, display, presence, member_id, record, *rest = item
        seq = int(rest[0]) if rest else 0
        return cls(str(sid), str(key), str(display), bool(presence), str(member_id), record,
                   seq)


@dataclass(slots=True)
class Member:
    front: int
    state: MemberState


@dataclass(slots=True)
class Channel:
    key: str
    display: str
    presence: bool
    members: dict[str, Member] = field(default_factory=dict)  # sid -> member, join order
    member_ids: set[str] = field(default_factory=set)
    front_counts: dict[int, int] = field(default_factory=dict)
    counted: int = -1  # the subscription count last told (pushed, or a webhook)
    count_sent: int = 0  # when (ms)
    count_due: bool = False  # a change waits for the throttle

    def fronts(self) -> tuple[int, ...]:
        return tuple(self.front_counts)

    def add(self, member: Member) -> None:
        self.members[member.state.sid] = member
        self.member_ids.add(member.state.member_id)
        self.front_counts[member.front] = self.front_counts.get(member.front, 0) + 1

    def remove(self, sid: str) -> Member:
        member = self.members.pop(sid)
        self.member_ids.discard(member.state.member_id)
        count = self.front_counts[member.front] - 1
        if count:
            self.front_counts[member.front] = count
        else:
            del self.front_counts[member.front]
        return member

    def presence_list(self) -> list[dict[str, Any]]:
        return [m.state.record for m in self.members.values() if m.state.record is not None]


def new_count(chan: Channel, now_ms: int | None, force: bool = False) -> int | None:
    """The subscription count to tell now (Pusher's rule, PUSHER.md 3: every change, at
    most one per 5 s above 100 subscribers), or None; a held change waits for `tick` with
    `force` (`now_ms` None: the time is not known here, the next tick tells it)."""
    count = len(chan.members)
    if count == chan.counted:
        chan.count_due = False
        return None
    quiet = count > COUNT_QUIET_ABOVE and not force
    if quiet and (now_ms is None or now_ms - chan.count_sent < COUNT_EVERY_MS):
        chan.count_due = True
        return None
    chan.counted, chan.count_due = count, False
    if now_ms is not None:
        chan.count_sent = now_ms
    return count


_C = TypeVar("_C", bound="Channel")


def counts_due(channels: Iterable[_C], now_ms: int) -> list[_C]:
    """The channels whose held count may be told now (at `tick`)."""
    return [chan for chan in channels
            if chan.count_due and now_ms - chan.count_sent >= COUNT_EVERY_MS]


def presence_record(data: object, member_id: str, now_ms: int) -> dict[str, Any]:
    """The client's presence object plus `subscribed`, `memberId`, `idle` (PROTOCOL.md 5).

    Presence data that is not a JSON object gives an empty record, as in the original.
    """
    value: object = data
    if isinstance(data, str):
        try:
            value = parse_json_like_js(data)
        except ValueError:
            value = None
    record: dict[str, Any] = dict(value) if isinstance(value, dict) else {}
    record["subscribed"] = now_ms
    record["memberId"] = member_id
    record["idle"] = False
    return record


class ChannelState(Protocol):
    """What a shard asks of the channels it owns (ARCHITECTURE.md 6): membership changes
    and triggers, each returning the effects to perform, and the channels to read.
    `ChannelTable` (in memory) is the default; a Redis-backed state for several hosts
    stands beside it (SCALEOUT.md). Lifecycle is reported through `on_channel`."""

    on_channel: Callable[[str, bool], None] | None
    on_breach: Callable[[str, str], None] | None
    max_presence_bytes: int
    hooks: frozenset[str]  # the webhook events to report as Hook effects (hook_events)
    # several instances: presence lists, their add/quit messages and member hooks come from
    # Redis (core/cluster_presence.py), not from this table's own members
    shared_presence: bool

    def get(self, key: str) -> Channel | None: ...

    def all(self) -> Iterable[Channel]: ...

    def subscribe(self, *, front: int, sid: str, channel: str, request: dict[str, Any],
                  now_ms: int, new_member_id: Callable[[], str]) -> list[Effect]: ...

    def unsubscribe(self, *, front: int, sid: str, channel: str) -> list[Effect]: ...

    def leave(self, sid: str, keys: Iterable[str]) -> list[Effect]: ...

    def trigger(self, key: str, event: str, data: object, exclude: str | None, *,
                now_ms: int = 0, user_id: object = None,
                client: bool = False) -> tuple[bool, list[Effect]]: ...

    def restore_front(self, front: int, members: Iterable[MemberState], *,
                      announce: bool = False) -> list[Effect]: ...

    def tick(self, now_ms: int) -> list[Effect]:
        """Once a second: what is due now (throttled notices)."""
        ...

    def hook_state(self) -> dict[str, list[str] | None]:
        """Every channel by name, with the users of its presence channels (None on the
        others): what the hooks process compares its announcements to (link.HookState)."""
        ...

    def presence_entity(self, member: MemberState) -> str:
        """Who `member` is present as (a Pushy member id; a Pusher user)."""
        ...

    def presence_success(self, chan: Channel, member: MemberState,
                         records: list[dict[str, Any]]) -> bytes:
        """`member`'s subscription success with the cluster-wide presence `records`."""
        ...

    def presence_change(self, display: str, record: dict[str, Any], added: bool) -> bytes:
        """The message a presence change sends to the channel's other members."""
        ...

    def presence_refused(self, display: str) -> bytes:
        """A presence join Redis could not take: retryable."""
        ...


class ChannelStore:
    """Channel state per app (namespace): the Pushy channels, and each other app, have a
    ChannelState of their own, made by `factory(app)` on first use. An operation goes to
    the app its channel key names (routing.app_key)."""

    def __init__(self, factory: Callable[[str], ChannelState]) -> None:
        self._factory = factory
        self.apps: dict[str, ChannelState] = {}

    def app(self, app: str) -> ChannelState:
        state = self.apps.get(app)
        if state is None:
            state = self.apps[app] = self._factory(app)
        return state

    def for_key(self, key: str) -> ChannelState:
        return self.app(app_of(key))

    def get(self, key: str) -> Channel | None:
        state = self.apps.get(app_of(key))
        return state.get(key) if state is not None else None

    def all(self) -> Iterator[Channel]:
        for state in self.apps.values():
            yield from state.all()

    def leave(self, sid: str, keys: Iterable[str]) -> list[Effect]:
        effects: list[Effect] = []
        for key in keys:
            effects += self.for_key(key).leave(sid, (key,))
        return effects

    def trigger(self, key: str, event: str, data: object, exclude: str | None, *,
                now_ms: int = 0, user_id: object = None,
                client: bool = False) -> tuple[bool, list[Effect]]:
        return self.for_key(key).trigger(key, event, data, exclude, now_ms=now_ms,
                                         user_id=user_id, client=client)

    def tick(self, now_ms: int) -> list[Effect]:
        effects: list[Effect] = []
        for state in self.apps.values():
            effects += state.tick(now_ms)
        return effects

    def restore_front(self, front: int, members: Iterable[MemberState], *,
                      announce: bool = False) -> list[Effect]:
        """Every app's memberships of `front` become exactly `members` (ARCHITECTURE.md 6)."""
        by_app: dict[str, list[MemberState]] = {app: [] for app in self.apps}
        for member in members:
            by_app.setdefault(app_of(member.key), []).append(member)
        effects: list[Effect] = []
        for app, wanted in by_app.items():
            effects += self.app(app).restore_front(front, wanted, announce=announce)
        return effects


class ChannelTable:
    """All channels of one app a shard owns, in memory (the default ChannelState). Not
    thread-safe: one owner applies operations in order."""

    def __init__(self, secret: str, *, max_presence_bytes: int = MAX_PRESENCE_BYTES,
                 on_channel: Callable[[str, bool], None] | None = None) -> None:
        self.secret = secret
        self.max_presence_bytes = max_presence_bytes  # config.limits.max_presence_data
        self.channels: dict[str, Channel] = {}
        self._joins = 0  # joins applied (MemberState.seq); above every replayed one
        # called with (display name, True) when a channel is created, False when removed:
        # the shard counts and logs channel lifecycle without diffing the table
        self.on_channel = on_channel
        # told (limit name, detail) when a request breaks a limit: the shell counts and logs
        self.on_breach: Callable[[str, str], None] | None = None
        self.hooks: frozenset[str] = frozenset()
        self.shared_presence = False

    def __len__(self) -> int:
        return len(self.channels)

    def get(self, key: str) -> Channel | None:
        return self.channels.get(key)

    def all(self) -> Iterable[Channel]:
        return self.channels.values()

    def subscribe(
        self,
        *,
        front: int,
        sid: str,
        channel: str,
        request: dict[str, Any],
        now_ms: int,
        new_member_id: Callable[[], str],
    ) -> list[Effect]:
        """PROTOCOL.md 3.1, checks 2-5 in order (the caller has checked that `channel` is set).

        `request` is the command's data: `auth` and `data` are read from it, and `data`
        counts as sent whenever the key is present.
        """
        key = channel_key(channel)
        has_data = "data" in request
        data = request.get("data")
        if key.startswith("private-"):
            auth = request.get("auth")
            if not isinstance(auth, str) or not auth.strip():
                return [Reply(front, sid, protocol.event(protocol.NEEDAUTH, {"channel": channel}))]
            expected = channel_token(sid, channel, data if has_data else None, self.secret)
            if not signatures_equal(auth, expected):
                return [_failed(front, sid, channel, "Invalid credentials")]
        existing = self.channels.get(key)
        if existing is not None and sid in existing.members:
            return [_failed(front, sid, channel, "Already subscribed to this channel")]
        presence = existing.presence if existing else key.startswith("private-") and has_data
        if presence and len(protocol.dumps(data)) > self.max_presence_bytes:
            reason = f"Presence data too large (limit {self.max_presence_bytes} bytes)"
            if self.on_breach is not None:
                self.on_breach("presence_data", f"refused presence data of {sid} on {key!r}")
            return [_failed(front, sid, channel, reason)]
        chan = existing or Channel(key=key, display=channel, presence=presence)
        member_id = new_member_id()
        while member_id in chan.member_ids:
            member_id = new_member_id()
        record = presence_record(data, member_id, now_ms) if chan.presence else None
        self._joins += 1
        state = MemberState(sid, key, chan.display, chan.presence, member_id, record,
                            self._joins)
        # every message is encoded before the table changes: one that cannot be (NotEncodable)
        # leaves the table as it was, and the caller answers the sender with an error
        success: dict[str, Any] = {"channel": chan.display, "memberId": member_id}
        if record is not None:
            success["presence"] = [*chan.presence_list(), record]
        joined = protocol.event(protocol.SUBSCRIPTION_SUCCESS, success)
        add = None
        if record is not None and chan.members and not self.shared_presence:
            add = protocol.event(protocol.PRESENCE_ADD, {"member": record}, chan.display)
        chan.add(Member(front, state))
        self.channels[key] = chan
        effects: list[Effect] = [Joined(front, sid, state, joined)]
        if existing is None:
            if self.on_channel is not None:
                self.on_channel(chan.display, True)
            effects += self._hook(chan, "channel_occupied")
        if add is not None:
            effects.append(Broadcast(key, chan.fronts(), add, sid))
        if record is not None and not self.shared_presence:
            effects += self._hook(chan, "member_added", member_id)
        return effects + self._count(chan, now_ms)

    def unsubscribe(self, *, front: int, sid: str, channel: str) -> list[Effect]:
        """PROTOCOL.md 3.2, checks 2-4. Raises ChannelNotFound or NotSubscribed."""
        key = channel_key(channel)
        chan = self.channels.get(key)
        if chan is None:
            raise ChannelNotFound()
        if sid not in chan.members:
            raise NotSubscribed()
        end = protocol.event(protocol.SUBSCRIPTION_END, {"channel": channel})
        return self._remove(chan, sid, end)

    def leave(self, sid: str, keys: Iterable[str]) -> list[Effect]:
        """A connection closed: it leaves every channel it was in, like unsubscribe (3.4)."""
        effects: list[Effect] = []
        for key in keys:
            chan = self.channels.get(key)
            if chan is not None and sid in chan.members:
                effects.extend(self._remove(chan, sid, None))
        return effects

    def trigger(
        self, key: str, event: str, data: object, exclude: str | None, *,
        now_ms: int = 0, user_id: object = None, client: bool = False,
    ) -> tuple[bool, list[Effect]]:
        """PROTOCOL.md 4.2: (whether the channel has members, the broadcast to perform)."""
        chan = self.channels.get(key)
        if chan is None:
            return False, []
        message = protocol.event(event, data, chan.display)
        return True, [Broadcast(key, chan.fronts(), message, exclude)]

    def restore_front(
        self, front: int, members: Iterable[MemberState], *, announce: bool = False
    ) -> list[Effect]:
        """Make `front`'s memberships exactly `members` (ARCHITECTURE.md 6).

        Used when a front (re)connects: after a shard restart the front replays what it
        knows, silently; a restarted front replays nothing, so its former members leave
        with presence-quit to those who remain. With `announce` (a front that had been given
        up for dead comes back) the others get presence-add for each member it brings.
        """
        wanted = {(m.key, m.sid): m for m in members}
        effects: list[Effect] = []
        for chan in list(self.channels.values()):
            for sid, member in list(chan.members.items()):
                if member.front == front and (chan.key, sid) not in wanted:
                    effects.extend(self._remove(chan, sid, None))
        touched: set[str] = set()
        for state in wanted.values():
            restored = self.channels.get(state.key)
            if restored is None:
                restored = Channel(state.key, state.display, state.presence)
                self.channels[state.key] = restored
                if self.on_channel is not None:
                    self.on_channel(restored.display, True)
                effects += self._hook(restored, "channel_occupied")
            self._joins = max(self._joins, state.seq)
            if state.sid not in restored.members:
                restored.add(Member(front, state))
                touched.add(state.key)
                if state.record is not None and not self.shared_presence:
                    effects += self._hook(restored, "member_added", state.member_id)
                if (announce and restored.presence and state.record is not None
                        and not self.shared_presence):
                    add = protocol.event(
                        protocol.PRESENCE_ADD, {"member": state.record}, restored.display
                    )
                    effects.append(Broadcast(state.key, restored.fronts(), add, state.sid))
        for key in touched:  # presence lists stay in join order across fronts' replays
            chan = self.channels[key]
            if chan.presence:
                ordered = sorted(chan.members.values(), key=_joined_at)
                chan.members = {m.state.sid: m for m in ordered}
        return effects

    def tick(self, now_ms: int) -> list[Effect]:
        """Subscription counts for webhooks the throttle held back (the Pushy protocol
        itself has nothing that waits)."""
        effects: list[Effect] = []
        for chan in counts_due(self.channels.values(), now_ms):
            effects += self._count(chan, now_ms, force=True)
        return effects

    def _remove(self, chan: Channel, sid: str, reply: bytes | None) -> list[Effect]:
        record = chan.members[sid].state.record
        quit_ = None  # encoded before the member leaves, like subscribe's messages
        if (chan.presence and len(chan.members) > 1 and record is not None
                and not self.shared_presence):
            quit_ = protocol.event(protocol.PRESENCE_QUIT, {"member": record}, chan.display)
        member = chan.remove(sid)
        effects: list[Effect] = [Left(member.front, sid, chan.key, reply)]
        if quit_ is not None:
            effects.append(Broadcast(chan.key, chan.fronts(), quit_, None))
        if record is not None and not self.shared_presence:
            effects += self._hook(chan, "member_removed", member.state.member_id)
        if not chan.members:
            del self.channels[chan.key]
            if self.on_channel is not None:
                self.on_channel(chan.display, False)
            return effects + self._hook(chan, "channel_vacated")
        return effects + self._count(chan, None)

    def _count(self, chan: Channel, now_ms: int | None, force: bool = False) -> list[Effect]:
        """A subscription_count webhook of a channel that is not a presence one, when a
        webhook wants it (the Pushy protocol pushes no counts to its clients)."""
        if "subscription_count" not in self.hooks or chan.presence:
            return []
        count = new_count(chan, now_ms, force)
        if count is None:
            return []
        return [Hook(chan.key, {"name": "subscription_count", "channel": chan.display,
                                "subscription_count": count})]

    def _hook(self, chan: Channel, name: str, user_id: str | None = None) -> list[Effect]:
        """A webhook transition, when a webhook wants it (a Pushy member's user is its
        member id: a Pushy connection is its own user)."""
        if name not in self.hooks:
            return []
        event: dict[str, Any] = {"name": name, "channel": chan.display}
        if user_id is not None:
            event["user_id"] = user_id
        return [Hook(chan.key, event)]

    def presence_entity(self, member: MemberState) -> str:
        return member.member_id

    def presence_success(self, chan: Channel, member: MemberState,
                         records: list[dict[str, Any]]) -> bytes:
        return protocol.event(protocol.SUBSCRIPTION_SUCCESS, {
            "channel": chan.display, "memberId": member.member_id, "presence": records})

    def presence_change(self, display: str, record: dict[str, Any], added: bool) -> bytes:
        kind = protocol.PRESENCE_ADD if added else protocol.PRESENCE_QUIT
        return protocol.event(kind, {"member": record}, display)

    def presence_refused(self, display: str) -> bytes:
        return protocol.event(protocol.SUBSCRIPTION_FAILED, {
            "channel": display, "reason": PRESENCE_UNAVAILABLE})

    def rename(self, key: str, sid: str, member_id: str) -> MemberState:
        """Redis found `sid`'s member id taken on another instance and drew another
        (several instances): the member takes it. Returns its new state."""
        chan = self.channels[key]
        member = chan.members[sid]
        record = dict(member.state.record or {}, memberId=member_id)
        state = MemberState(sid, key, chan.display, chan.presence, member_id, record,
                            member.state.seq)
        chan.member_ids.discard(member.state.member_id)
        chan.member_ids.add(member_id)
        member.state = state
        return state

    def hook_state(self) -> dict[str, list[str] | None]:
        """Every channel, with the members of its presence channels (HookState)."""
        return {chan.display: ([m.state.member_id for m in chan.members.values()]
                               if chan.presence else None) for chan in self.channels.values()}


def _failed(front: int, sid: str, channel: str, reason: str) -> Reply:
    payload = {"channel": channel, "reason": reason}
    return Reply(front, sid, protocol.event(protocol.SUBSCRIPTION_FAILED, payload))


def _joined_at(member: Member) -> tuple[int, int]:
    record = member.state.record or {}
    subscribed = record.get("subscribed")
    return (subscribed if isinstance(subscribed, int) else 0), member.state.seq
