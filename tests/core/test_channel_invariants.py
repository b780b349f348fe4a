"""Invariants of ChannelTable under random operation sequences (PROTOCOL.md 3.1-3.4, 5).

A Hypothesis state machine drives subscribe / unsubscribe / leave / trigger / restore_front on
a public, a private and a (possibly) presence channel, with six connections spread over three
fronts, including front restarts and shard restarts (ARCHITECTURE.md 6). A plain model (who is
in which channel, in join order) and a model of what each front learnt from the effects are
checked against the table after every step.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pushy_shard.core.auth import channel_token
from pushy_shard.core.channels import (
    Broadcast,
    ChannelTable,
    Effect,
    Joined,
    Left,
    MemberState,
    Reply,
)
from pushy_shard.errors import ChannelNotFound, NotSubscribed

SECRET = "secret"
FRONTS = (0, 1, 2)
SIDS = tuple(f"s{i}" for i in range(6))
FRONT_OF = {sid: i % len(FRONTS) for i, sid in enumerate(SIDS)}
SPELLINGS = {
    "hello": ("hello", "Hello", "HELLO"),
    "private-room": ("private-room", "Private-Room", "PRIVATE-ROOM"),
    "private-lobby": ("private-lobby", "PRIVATE-lobby", "Private-Lobby"),
}
ABSENT = object()
DATA = st.sampled_from([ABSENT, '{"name":"x"}', '{"n":1,"tags":["a"]}', '"plain"', "not json"])
AUTH = st.sampled_from(["good", "good", "good", "bad", "none"])  # mostly valid tokens
# Fewer ids than can ever be live in one channel would loop forever; 8 > 6 sids, and the
# cycle makes collisions with live members frequent.
ID_POOL = tuple(f"{i:08x}" for i in range(8))


def fronts_of(chan_members: dict[str, Any]) -> set[int]:
    return {m.front for m in chan_members.values()}


class ChannelTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = ChannelTable(SECRET)
        self._ids = itertools.cycle(ID_POOL)
        self.now = 1_700_000_000_000
        # the model: key -> sids in join order, plus what each channel was created as
        self.members: dict[str, list[str]] = {}
        self.display: dict[str, str] = {}
        self.presence: dict[str, bool] = {}
        # what each front knows from Joined/Left effects: what it would replay
        self.known: dict[int, dict[tuple[str, str], MemberState]] = {f: {} for f in FRONTS}

    def new_member_id(self) -> str:
        return next(self._ids)

    # -- performing effects, as the fronts would ----------------------------------------------

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if effect.message is not None:
                orjson.loads(effect.message)  # every message is valid JSON
            if isinstance(effect, Joined):
                # every Joined effect names a member that is in the table right now
                chan = self.table.get(effect.member.key)
                assert chan is not None
                member = chan.members.get(effect.sid)
                assert member is not None
                assert member.front == effect.front
                assert member.state == effect.member
                self.known[effect.front][(effect.member.key, effect.sid)] = effect.member
            elif isinstance(effect, Left):
                assert (effect.key, effect.sid) in self.known[effect.front]
                del self.known[effect.front][(effect.key, effect.sid)]
            elif isinstance(effect, Broadcast):
                assert len(set(effect.fronts)) == len(effect.fronts)

    def model_remove(self, key: str, sid: str) -> None:
        self.members[key].remove(sid)
        if not self.members[key]:
            del self.members[key], self.display[key], self.presence[key]

    def keys_of(self, sid: str) -> list[str]:
        return [key for key, sids in self.members.items() if sid in sids]

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        sid=st.sampled_from(SIDS),
        key=st.sampled_from(sorted(SPELLINGS)),
        spelling=st.integers(0, 2),
        data=DATA,
        auth=AUTH,
    )
    def subscribe(self, sid: str, key: str, spelling: int, data: object, auth: str) -> None:
        channel = SPELLINGS[key][spelling]
        front = FRONT_OF[sid]
        private = key.startswith("private-")
        request: dict[str, Any] = {"channel": channel}
        if data is not ABSENT:
            request["data"] = data
        if auth == "good":
            sent = None if data is ABSENT else data
            request["auth"] = channel_token(sid, channel, sent, SECRET)
        elif auth == "bad":
            request["auth"] = "0" * 64
        self.now += 1
        effects = self.table.subscribe(
            front=front,
            sid=sid,
            channel=channel,
            request=request,
            now_ms=self.now,
            new_member_id=self.new_member_id,
        )
        if private and auth != "good":
            assert len(effects) == 1 and isinstance(effects[0], Reply)
            event = orjson.loads(effects[0].message)["event"]
            expected = "needauth" if auth == "none" else "failed"
            assert event == f"pushy:subscription-{expected}"
        elif sid in self.members.get(key, ()):
            assert len(effects) == 1 and isinstance(effects[0], Reply)
            reason = orjson.loads(effects[0].message)["data"]["reason"]
            assert reason == "Already subscribed to this channel"
        else:
            if key not in self.members:
                self.members[key] = []
                self.display[key] = channel
                self.presence[key] = private and data is not ABSENT
            self.members[key].append(sid)
            assert isinstance(effects[0], Joined)
            success = orjson.loads(effects[0].message)["data"]
            assert success["channel"] == self.display[key]
            if self.presence[key]:
                assert [r["memberId"] for r in success["presence"]][-1] == success["memberId"]
                assert len(success["presence"]) == len(self.members[key])
            if self.presence[key] and len(self.members[key]) > 1:
                assert len(effects) == 2
                add = effects[1]
                assert isinstance(add, Broadcast)
                assert add.exclude == sid
                assert set(add.fronts) == fronts_of(self.table.channels[key].members)
            else:
                assert len(effects) == 1
        self.apply(effects)

    @rule(
        sid=st.sampled_from(SIDS),
        key=st.sampled_from(sorted(SPELLINGS)),
        spelling=st.integers(0, 2),
    )
    def unsubscribe(self, sid: str, key: str, spelling: int) -> None:
        channel = SPELLINGS[key][spelling]
        if key not in self.members:
            with pytest.raises(ChannelNotFound):
                self.table.unsubscribe(front=FRONT_OF[sid], sid=sid, channel=channel)
            return
        if sid not in self.members[key]:
            with pytest.raises(NotSubscribed):
                self.table.unsubscribe(front=FRONT_OF[sid], sid=sid, channel=channel)
            return
        presence = self.presence[key]
        self.model_remove(key, sid)
        effects = self.table.unsubscribe(front=FRONT_OF[sid], sid=sid, channel=channel)
        assert isinstance(effects[0], Left)
        assert orjson.loads(effects[0].message or b"") == {
            "event": "pushy:subscription-end",
            "data": {"channel": channel},
        }
        if presence and key in self.members:
            assert len(effects) == 2 and isinstance(effects[1], Broadcast)
            assert set(effects[1].fronts) == fronts_of(self.table.channels[key].members)
        else:
            assert len(effects) == 1
        self.apply(effects)

    @rule(sid=st.sampled_from(SIDS))
    def disconnect(self, sid: str) -> None:
        keys = self.keys_of(sid)
        for key in keys:
            self.model_remove(key, sid)
        effects = self.table.leave(sid, [*keys, "never-subscribed"])
        assert sorted(e.key for e in effects if isinstance(e, Left)) == sorted(keys)
        assert all(e.message is None for e in effects if isinstance(e, Left))
        self.apply(effects)

    @rule(key=st.sampled_from(sorted(SPELLINGS)), exclude=st.sampled_from([None, *SIDS]))
    def trigger(self, key: str, exclude: str | None) -> None:
        delivered, effects = self.table.trigger(key, "test", {"n": 1}, exclude)
        assert delivered is (key in self.members)
        if delivered:
            (broadcast,) = effects
            assert isinstance(broadcast, Broadcast)
            assert broadcast.exclude == exclude
            assert set(broadcast.fronts) == fronts_of(self.table.channels[key].members)
            assert orjson.loads(broadcast.message)["channel"] == self.display[key]
        else:
            assert effects == []

    @rule(front=st.sampled_from(FRONTS))
    def restart_front(self, front: int) -> None:
        """A restarted front knows no members: the shard removes them (ARCHITECTURE.md 6)."""
        gone = [(key, sid) for key, sids in self.members.items() for sid in sids
                if FRONT_OF[sid] == front]
        # each leaver with someone still in the channel gets a presence-quit: all of them
        # when others remain, all but the last when the whole channel was on this front
        quits_expected = 0
        for key, count in Counter(key for key, _ in gone).items():
            if self.presence[key]:
                quits_expected += count if len(self.members[key]) > count else count - 1
        for key, sid in gone:
            self.model_remove(key, sid)
        effects = self.table.restore_front(front, [])
        assert sorted((e.key, e.sid) for e in effects if isinstance(e, Left)) == sorted(gone)
        quits = [orjson.loads(e.message) for e in effects if isinstance(e, Broadcast)]
        assert len(quits) == quits_expected
        assert {q["event"] for q in quits} <= {"pushy:presence-quit"}
        self.apply(effects)
        assert self.known[front] == {}

    @rule(order=st.permutations(FRONTS))
    def restart_shard(self, order: list[int]) -> None:
        """A new, empty table; every front replays what it knows; nobody is told anything."""
        self.table = ChannelTable(SECRET)
        for front in order:
            replay = [s.to_wire() for s in self.known[front].values()]
            states = [MemberState.from_wire(item) for item in orjson.loads(orjson.dumps(replay))]
            assert self.table.restore_front(front, states) == []

    @precondition(lambda self: bool(self.members))
    @rule(front=st.sampled_from(FRONTS))
    def resync_front(self, front: int) -> None:
        """A front reconnecting to a shard that did not restart replays what it has: no-op."""
        assert self.table.restore_front(front, list(self.known[front].values())) == []

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def table_agrees_with_the_model(self) -> None:
        # no empty channel is kept, and the table's members are the model's
        assert set(self.table.channels) == set(self.members)
        assert len(self.table) == len(self.members)
        for key, chan in self.table.channels.items():
            assert chan.members, key
            assert chan.key == key
            assert chan.display == self.display[key]
            assert chan.presence is self.presence[key]
            if chan.presence:  # presence lists are in join order, across shard restarts too
                assert list(chan.members) == self.members[key]
            else:
                assert sorted(chan.members) == sorted(self.members[key])

    @invariant()
    def member_ids_are_unique_within_each_channel(self) -> None:
        for chan in self.table.channels.values():
            ids = [m.state.member_id for m in chan.members.values()]
            assert len(set(ids)) == len(ids)
            assert chan.member_ids == set(ids)

    @invariant()
    def front_counts_count_members_per_front(self) -> None:
        for chan in self.table.channels.values():
            assert chan.front_counts == Counter(m.front for m in chan.members.values())
            assert all(count > 0 for count in chan.front_counts.values())
            assert set(chan.fronts()) == fronts_of(chan.members)

    @invariant()
    def presence_list_is_the_members_records_in_order(self) -> None:
        for chan in self.table.channels.values():
            records = [m.state.record for m in chan.members.values()]
            if chan.presence:
                assert all(r is not None for r in records)
                assert chan.presence_list() == records
                for sid, member in chan.members.items():
                    record = member.state.record
                    assert record is not None
                    assert record["memberId"] == member.state.member_id
                    assert record["idle"] is False
                    assert isinstance(record["subscribed"], int)
                    assert member.front == FRONT_OF[sid]
                subscribed = [r["subscribed"] for r in chan.presence_list() if r is not None]
                assert subscribed == sorted(subscribed)
            else:
                assert records == [None] * len(records)
                assert chan.presence_list() == []

    @invariant()
    def member_states_describe_their_channel(self) -> None:
        for key, chan in self.table.channels.items():
            for sid, member in chan.members.items():
                state = member.state
                assert (state.sid, state.key, state.display) == (sid, key, chan.display)
                assert state.presence is chan.presence

    @invariant()
    def fronts_know_exactly_their_members(self) -> None:
        for front in FRONTS:
            in_table = {
                (key, sid): member.state
                for key, chan in self.table.channels.items()
                for sid, member in chan.members.items()
                if member.front == front
            }
            assert self.known[front] == in_table


ChannelTableMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestChannelTable = ChannelTableMachine.TestCase
