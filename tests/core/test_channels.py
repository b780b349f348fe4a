"""ChannelTable, the shard's channel state machine, against PROTOCOL.md 3 and 5.

Every test drives the table directly (no event loop) and checks the effects it returns;
effect messages are decoded with orjson so the exact payloads are compared.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import pytest

from pushy_shard.commands import new_member_id as random_member_id
from pushy_shard.core import protocol
from pushy_shard.core.auth import channel_token, sha256_hex
from pushy_shard.core.channels import (
    COUNT_EVERY_MS,
    COUNT_QUIET_ABOVE,
    MAX_PRESENCE_BYTES,
    Broadcast,
    ChannelTable,
    Effect,
    Hook,
    Joined,
    Left,
    MemberState,
    Reply,
    hook_events,
)
from pushy_shard.errors import ChannelNotFound, NotSubscribed

SECRET = "secret"
NOW = 1_700_000_000_000
ALICE = '{"name":"alice"}'
BOB = '{"name":"bob"}'
CAROL = '{"name":"carol"}'
MEMBER_ID = re.compile(r"[0-9a-f]{8}")


# -- helpers ---------------------------------------------------------------------------------


def ids(*values: str) -> Callable[[], str]:
    """A deterministic `new_member_id`: hands out `values` in order, then fails loudly."""
    it = iter(values)
    return lambda: next(it)


def counter_ids() -> Callable[[], str]:
    """Distinct ids 00000001, 00000002, ... for tests that do not care which."""
    state = {"n": 0}

    def new_id() -> str:
        state["n"] += 1
        return f"{state['n']:08x}"

    return new_id


def token(sid: str, channel: str, data: object | None = None) -> str:
    return channel_token(sid, channel, data, SECRET)


def private_request(sid: str, channel: str, data: str | None = None) -> dict[str, Any]:
    """A correctly signed subscribe request, with presence `data` when given (PROTOCOL 4.1)."""
    request: dict[str, Any] = {"channel": channel, "auth": token(sid, channel, data)}
    if data is not None:
        request["data"] = data
    return request


def sub(
    table: ChannelTable,
    sid: str,
    channel: str,
    request: dict[str, Any] | None = None,
    *,
    front: int = 0,
    now: int = NOW,
    new_id: Callable[[], str] | None = None,
) -> list[Effect]:
    if request is None:
        request = {"channel": channel}
    return table.subscribe(
        front=front,
        sid=sid,
        channel=channel,
        request=request,
        now_ms=now,
        new_member_id=new_id or counter_ids(),
    )


def sub_private(
    table: ChannelTable,
    sid: str,
    channel: str,
    data: str | None = None,
    **kwargs: Any,
) -> list[Effect]:
    return sub(table, sid, channel, private_request(sid, channel, data), **kwargs)


def decode(effect: Effect) -> Any:
    assert effect.message is not None
    return orjson.loads(effect.message)


def keys_of(effect: Effect) -> list[str]:
    return list(decode(effect))


def only_reply(effects: list[Effect]) -> dict[str, Any]:
    assert len(effects) == 1
    assert isinstance(effects[0], Reply)
    return decode(effects[0])


def joined(effects: list[Effect]) -> Joined:
    assert isinstance(effects[0], Joined)
    return effects[0]


def member_ids(table: ChannelTable, key: str) -> list[str]:
    chan = table.get(key)
    assert chan is not None
    return [m.state.member_id for m in chan.members.values()]


def record(name: str, member_id: str, now: int = NOW) -> dict[str, Any]:
    return {"name": name, "subscribed": now, "memberId": member_id, "idle": False}


def bare_record(member_id: str, now: int = NOW) -> dict[str, Any]:
    return {"subscribed": now, "memberId": member_id, "idle": False}


def snapshot(table: ChannelTable) -> dict[str, Any]:
    """Everything observable about the table, to check that a refused operation changed nothing."""
    return {
        key: (
            chan.display,
            chan.presence,
            [(m.front, m.state) for m in chan.members.values()],
            set(chan.member_ids),
            dict(chan.front_counts),
        )
        for key, chan in table.channels.items()
    }


@pytest.fixture
def table() -> ChannelTable:
    return ChannelTable(SECRET)


# -- PROTOCOL.md 3.1 subscribe ---------------------------------------------------------------


class TestSubscribe_3_1_Success:
    def test_public_channel_gets_subscription_success(self, table: ChannelTable) -> None:
        effects = sub(table, "s1", "Hello", front=3, new_id=ids("0000000a"))
        assert len(effects) == 1
        effect = joined(effects)
        assert (effect.front, effect.sid) == (3, "s1")
        assert effect.member == MemberState("s1", "hello", "Hello", False, "0000000a", None)
        assert decode(effect) == {
            "event": "pushy:subscription-success",
            "data": {"channel": "Hello", "memberId": "0000000a"},
        }
        assert keys_of(effect) == ["event", "data"]  # connection-level event (PROTOCOL 2)
        assert len(table) == 1

    def test_member_id_is_8_lowercase_hex_with_the_real_generator(
        self, table: ChannelTable
    ) -> None:
        for i in range(50):
            effects = sub(table, f"s{i}", "hello", new_id=random_member_id)
            member_id = decode(joined(effects))["data"]["memberId"]
            assert MEMBER_ID.fullmatch(member_id)
        assert len(set(member_ids(table, "hello"))) == 50

    def test_colliding_member_id_is_drawn_again(self, table: ChannelTable) -> None:
        new_id = ids("aaaaaaaa", "aaaaaaaa", "aaaaaaaa", "bbbbbbbb")
        sub(table, "s1", "hello", new_id=new_id)
        effects = sub(table, "s2", "hello", new_id=new_id)
        assert decode(joined(effects))["data"]["memberId"] == "bbbbbbbb"
        assert member_ids(table, "hello") == ["aaaaaaaa", "bbbbbbbb"]

    def test_member_ids_are_unique_per_channel_not_globally(self, table: ChannelTable) -> None:
        new_id = ids("aaaaaaaa", "aaaaaaaa")
        sub(table, "s1", "one", new_id=new_id)
        sub(table, "s2", "two", new_id=new_id)
        assert member_ids(table, "one") == member_ids(table, "two") == ["aaaaaaaa"]

    def test_data_on_a_public_channel_does_not_make_it_presence(
        self, table: ChannelTable
    ) -> None:
        effects = sub(table, "s1", "hello", {"channel": "hello", "data": ALICE})
        assert "presence" not in decode(joined(effects))["data"]
        chan = table.get("hello")
        assert chan is not None and chan.presence is False

    @pytest.mark.parametrize("channel", ["privateroom", "private_room", "xprivate-room", "priv"])
    def test_names_without_the_private_prefix_are_public(
        self, table: ChannelTable, channel: str
    ) -> None:
        effects = sub(table, "s1", channel)
        assert isinstance(effects[0], Joined)


class TestSubscribe_3_1_NeedAuth:
    @pytest.mark.parametrize(
        "extra",
        [
            {},
            {"auth": None},
            {"auth": ""},
            {"auth": "   "},
            {"auth": "\t\n"},
            {"auth": 123},
            {"auth": True},
            {"auth": ["token"]},
            {"auth": {"token": "x"}},
        ],
        ids=repr,
    )
    def test_missing_blank_or_non_string_auth(
        self, table: ChannelTable, extra: dict[str, Any]
    ) -> None:
        effects = sub(table, "s1", "private-Room", {"channel": "private-Room", **extra})
        assert only_reply(effects) == {
            "event": "pushy:subscription-needauth",
            "data": {"channel": "private-Room"},
        }
        assert isinstance(effects[0], Reply)
        assert (effects[0].front, effects[0].sid) == (0, "s1")
        assert len(table) == 0

    @pytest.mark.parametrize("channel", ["PRIVATE-room", "Private-Room", "pRiVaTe-x", "private-"])
    def test_private_prefix_is_case_insensitive(self, table: ChannelTable, channel: str) -> None:
        effects = sub(table, "s1", channel)
        assert only_reply(effects) == {
            "event": "pushy:subscription-needauth",
            "data": {"channel": channel},
        }

    def test_needauth_even_when_data_is_sent(self, table: ChannelTable) -> None:
        effects = sub(table, "s1", "private-room", {"channel": "private-room", "data": ALICE})
        assert only_reply(effects)["event"] == "pushy:subscription-needauth"


class TestSubscribe_3_1_Token:
    """Check 3 of 3.1, with the token of PROTOCOL.md 4.1."""

    SID = "1a2b3c4d-0000-4000-8000-000000000001"

    def failed(self, channel: str, reason: str) -> dict[str, Any]:
        data = {"channel": channel, "reason": reason}
        return {"event": "pushy:subscription-failed", "data": data}

    def test_4_1_worked_example_with_data_is_accepted(self, table: ChannelTable) -> None:
        # The presence string is JSON-encoded a second time inside the signature.
        signed = f'{self.SID}:private-room:"{{\\"name\\":\\"alice\\"}}":secret'
        auth = "5c77cf464d0ef513291ccb78fca6184e6f291953a4d43069e17c77cb7750feb2"
        assert sha256_hex(signed) == auth == token(self.SID, "private-Room", ALICE)
        request = {"channel": "private-Room", "auth": auth, "data": ALICE}
        effects = sub(table, self.SID, "private-Room", request, new_id=ids("0000abcd"))
        assert decode(joined(effects))["data"] == {
            "channel": "private-Room",
            "memberId": "0000abcd",
            "presence": [record("alice", "0000abcd")],
        }

    def test_4_1_worked_example_without_data_is_accepted(self, table: ChannelTable) -> None:
        auth = "e2fe0d53a1015bc3d1cf140e1a677340b1ebcb9dd681b813b5fa430fc6e581b5"
        assert token(self.SID, "private-Room") == auth
        request = {"channel": "private-Room", "auth": auth}
        effects = sub(table, self.SID, "private-Room", request, new_id=ids("0000abcd"))
        success = decode(joined(effects))["data"]
        assert success == {"channel": "private-Room", "memberId": "0000abcd"}

    @pytest.mark.parametrize(
        "auth",
        [
            "0" * 64,
            "not a token",
            token("other-sid", "private-Room", ALICE),  # another connection's token
            token(SID, "private-Other", ALICE),  # another channel
            token(SID, "private-Room"),  # signed without the data that was sent
            token(SID, "private-Room", '{"name":"mallory"}'),  # other data
            token(SID, "private-Room", ALICE).upper(),  # the hex is compared exactly
            channel_token(SID, "private-Room", ALICE, "wrong secret"),
            token(SID, "private-Room", ALICE) + "\u00e9",  # non-ASCII: unequal, no crash
        ],
    )
    def test_invalid_credentials(self, table: ChannelTable, auth: str) -> None:
        request = {"channel": "private-Room", "auth": auth, "data": ALICE}
        effects = sub(table, self.SID, "private-Room", request)
        assert only_reply(effects) == self.failed("private-Room", "Invalid credentials")
        assert len(table) == 0

    def test_token_with_data_refused_when_data_is_not_sent(self, table: ChannelTable) -> None:
        request = {"channel": "private-Room", "auth": token(self.SID, "private-Room", ALICE)}
        effects = sub(table, self.SID, "private-Room", request)
        assert only_reply(effects) == self.failed("private-Room", "Invalid credentials")

    def test_token_uses_the_lower_cased_channel(self, table: ChannelTable) -> None:
        request = {"channel": "PRIVATE-ROOM", "auth": token(self.SID, "private-room")}
        effects = sub(table, self.SID, "PRIVATE-ROOM", request)
        assert isinstance(effects[0], Joined)

    def test_invalid_credentials_checked_before_already_subscribed(
        self, table: ChannelTable
    ) -> None:
        sub_private(table, self.SID, "private-Room")
        before = snapshot(table)
        effects = sub(table, self.SID, "private-Room", {"auth": "0" * 64})
        assert only_reply(effects) == self.failed("private-Room", "Invalid credentials")
        assert snapshot(table) == before


class TestSubscribe_3_1_AlreadySubscribed:
    def test_second_subscribe_fails_and_changes_nothing(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello")
        before = snapshot(table)
        calls: list[str] = []

        def new_id() -> str:
            calls.append("called")
            return "ffffffff"

        effects = sub(table, "s1", "HELLO", front=0, new_id=new_id)
        assert only_reply(effects) == {
            "event": "pushy:subscription-failed",
            "data": {"channel": "HELLO", "reason": "Already subscribed to this channel"},
        }
        assert snapshot(table) == before
        assert calls == []  # no member id is drawn for a refused subscription

    def test_already_subscribed_to_a_private_channel(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-room", ALICE)
        effects = sub_private(table, "s1", "private-room", ALICE)
        assert only_reply(effects)["data"] == {
            "channel": "private-room",
            "reason": "Already subscribed to this channel",
        }


class TestSubscribe_3_1_Presence:
    """Presence channels: PROTOCOL.md 3.1 check 5, 3.4 and 5."""

    def test_presence_list_in_join_order_with_the_new_member_last(
        self, table: ChannelTable
    ) -> None:
        sub_private(table, "s1", "private-Room", ALICE, now=NOW, new_id=ids("00000001"))
        sub_private(table, "s2", "private-room", BOB, now=NOW + 1, new_id=ids("00000002"))
        effects = sub_private(
            table, "s3", "PRIVATE-ROOM", CAROL, now=NOW + 2, new_id=ids("00000003")
        )
        success = decode(joined(effects))
        assert success == {
            "event": "pushy:subscription-success",
            "data": {
                "channel": "private-Room",
                "memberId": "00000003",
                "presence": [
                    record("alice", "00000001", NOW),
                    record("bob", "00000002", NOW + 1),
                    record("carol", "00000003", NOW + 2),
                ],
            },
        }
        assert list(success["data"]) == ["channel", "memberId", "presence"]

    def test_first_member_gets_a_presence_list_of_itself_and_no_broadcast(
        self, table: ChannelTable
    ) -> None:
        effects = sub_private(table, "s1", "private-room", ALICE, new_id=ids("00000001"))
        assert len(effects) == 1
        assert decode(joined(effects))["data"]["presence"] == [record("alice", "00000001")]

    def test_presence_add_goes_to_the_others_excluding_the_joiner(
        self, table: ChannelTable
    ) -> None:
        sub_private(table, "s1", "private-Room", ALICE, front=0, new_id=ids("00000001"))
        effects = sub_private(
            table, "s2", "private-room", BOB, front=1, now=NOW + 5, new_id=ids("00000002")
        )
        assert len(effects) == 2
        assert isinstance(effects[0], Joined)  # the front indexes the joiner first
        add = effects[1]
        assert isinstance(add, Broadcast)
        assert add.key == "private-room"
        assert add.exclude == "s2"
        assert sorted(add.fronts) == [0, 1]
        assert decode(add) == {
            "event": "pushy:presence-add",
            "channel": "private-Room",
            "data": {"member": record("bob", "00000002", NOW + 5)},
        }
        assert keys_of(add) == ["event", "channel", "data"]

    def test_record_adds_subscribed_member_id_and_idle_last(self, table: ChannelTable) -> None:
        data = '{"name":"alice","avatar":"a.png","age":7}'
        effects = sub_private(table, "s1", "private-room", data, new_id=ids("0badf00d"))
        rec = decode(joined(effects))["data"]["presence"][0]
        assert rec == {
            "name": "alice",
            "avatar": "a.png",
            "age": 7,
            "subscribed": NOW,
            "memberId": "0badf00d",
            "idle": False,
        }
        assert list(rec) == ["name", "avatar", "age", "subscribed", "memberId", "idle"]

    def test_client_cannot_spoof_the_added_fields(self, table: ChannelTable) -> None:
        data = '{"memberId":"evil","idle":true,"subscribed":1,"name":"x"}'
        effects = sub_private(table, "s1", "private-room", data, new_id=ids("00000001"))
        rec = decode(joined(effects))["data"]["presence"][0]
        assert rec["memberId"] == "00000001"
        assert rec["idle"] is False
        assert rec["subscribed"] == NOW
        assert rec["name"] == "x"

    @pytest.mark.parametrize(
        "data", ['"alice"', "42", "[1,2]", "null", "true", "not json", "", "{broken"]
    )
    def test_non_object_presence_data_gives_a_record_of_the_three_fields(
        self, table: ChannelTable, data: str
    ) -> None:
        effects = sub_private(table, "s1", "private-room", data, new_id=ids("00000001"))
        assert decode(joined(effects))["data"]["presence"] == [bare_record("00000001")]
        chan = table.get("private-room")
        assert chan is not None and chan.presence is True

    def test_presence_data_sent_as_an_object_is_used_as_is(self, table: ChannelTable) -> None:
        # Not what the browser client sends (it sends a JSON string), but accepted: the token
        # then signs JSON.stringify(data) once.
        request = {
            "channel": "private-room",
            "auth": token("s1", "private-room", {"name": "bob"}),
            "data": {"name": "bob"},
        }
        effects = sub(table, "s1", "private-room", request, new_id=ids("00000001"))
        assert decode(joined(effects))["data"]["presence"] == [record("bob", "00000001")]

    def test_data_null_counts_as_sent(self, table: ChannelTable) -> None:
        # subscribe's docstring: `data` counts as sent whenever the key is present, so a
        # creator sending "data": null makes a presence channel with a bare record.
        request = {"channel": "private-room", "auth": token("s1", "private-room"), "data": None}
        effects = sub(table, "s1", "private-room", request, new_id=ids("00000001"))
        assert decode(joined(effects))["data"]["presence"] == [bare_record("00000001")]

    def test_presence_is_decided_at_creation_later_data_does_not_enable_it(
        self, table: ChannelTable
    ) -> None:
        sub_private(table, "s1", "private-room")  # no data: not a presence channel
        effects = sub_private(table, "s2", "private-room", ALICE, front=1)
        assert len(effects) == 1  # no presence-add
        success = decode(joined(effects))
        assert "presence" not in success["data"]
        assert joined(effects).member.presence is False
        assert joined(effects).member.record is None
        chan = table.get("private-room")
        assert chan is not None and chan.presence is False
        assert chan.presence_list() == []

    def test_later_data_on_a_non_presence_channel_is_not_size_checked(self) -> None:
        table = ChannelTable(SECRET, max_presence_bytes=16)
        sub_private(table, "s1", "private-room")
        effects = sub_private(table, "s2", "private-room", '{"name":"' + "x" * 100 + '"}')
        assert isinstance(effects[0], Joined)

    def test_subscriber_without_data_on_a_presence_channel_gets_a_bare_record(
        self, table: ChannelTable
    ) -> None:
        # PROTOCOL 3.4: presence never changes after creation; PROTOCOL 5: a record is the
        # presence object (here none, so {}) plus the three fields. The code agrees.
        sub_private(table, "s1", "private-room", ALICE, new_id=ids("00000001"))
        effects = sub_private(table, "s2", "private-room", None, now=NOW + 1, new_id=ids("2"))
        assert decode(joined(effects))["data"]["presence"] == [
            record("alice", "00000001"),
            bare_record("2", NOW + 1),
        ]
        assert decode(effects[1]) == {
            "event": "pushy:presence-add",
            "channel": "private-room",
            "data": {"member": bare_record("2", NOW + 1)},
        }

    def test_member_state_carries_the_record(self, table: ChannelTable) -> None:
        effects = sub_private(table, "s1", "Private-Room", ALICE, front=2, new_id=ids("00000001"))
        assert joined(effects).member == MemberState(
            "s1", "private-room", "Private-Room", True, "00000001", record("alice", "00000001")
        )


class TestSubscribe_3_1_PresenceSize:
    """PROTOCOL.md 5: the server bounds presence data (its JSON encoding, in bytes)."""

    LIMIT = 64

    def data_of_size(self, size: int) -> str:
        """A presence string whose JSON encoding (what is bounded) is exactly `size` bytes."""
        data = '{"n":"' + "x" * (size - 14) + '"}'
        assert len(orjson.dumps(data)) == size
        return data

    def test_at_the_limit_is_accepted(self) -> None:
        table = ChannelTable(SECRET, max_presence_bytes=self.LIMIT)
        effects = sub_private(table, "s1", "private-room", self.data_of_size(self.LIMIT))
        assert isinstance(effects[0], Joined)

    def test_over_the_limit_fails_and_creates_nothing(self) -> None:
        table = ChannelTable(SECRET, max_presence_bytes=self.LIMIT)
        effects = sub_private(table, "s1", "private-Room", self.data_of_size(self.LIMIT + 1))
        assert only_reply(effects) == {
            "event": "pushy:subscription-failed",
            "data": {
                "channel": "private-Room",
                "reason": f"Presence data too large (limit {self.LIMIT} bytes)",
            },
        }
        assert len(table) == 0

    def test_over_the_limit_when_joining_an_existing_presence_channel(self) -> None:
        table = ChannelTable(SECRET, max_presence_bytes=self.LIMIT)
        sub_private(table, "s1", "private-room", ALICE)
        before = snapshot(table)
        effects = sub_private(table, "s2", "private-room", self.data_of_size(self.LIMIT + 1))
        assert only_reply(effects)["event"] == "pushy:subscription-failed"
        assert snapshot(table) == before

    def test_default_limit(self, table: ChannelTable) -> None:
        assert table.max_presence_bytes == MAX_PRESENCE_BYTES
        big = self.data_of_size(MAX_PRESENCE_BYTES + 1)
        effects = sub_private(table, "s1", "private-room", big)
        assert only_reply(effects)["data"]["reason"] == (
            f"Presence data too large (limit {MAX_PRESENCE_BYTES} bytes)"
        )


# -- PROTOCOL.md 3.2 unsubscribe -------------------------------------------------------------


class TestUnsubscribe_3_2:
    def test_channel_without_members_is_404(self, table: ChannelTable) -> None:
        with pytest.raises(ChannelNotFound) as info:
            table.unsubscribe(front=0, sid="s1", channel="hello")
        assert info.value.payload() == {"message": "Channel not found", "code": "404"}

    def test_not_a_member_is_403(self, table: ChannelTable) -> None:
        sub(table, "s1", "hello")
        before = snapshot(table)
        with pytest.raises(NotSubscribed) as info:
            table.unsubscribe(front=0, sid="s2", channel="hello")
        assert info.value.payload() == {"message": "Not subscribed to this channel", "code": "403"}
        assert snapshot(table) == before

    def test_success_echoes_the_channel_exactly_as_sent(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello", front=2)
        sub(table, "s2", "hello", front=0)
        effects = table.unsubscribe(front=2, sid="s1", channel="HELLO")
        assert len(effects) == 1
        left = effects[0]
        assert isinstance(left, Left)
        assert (left.front, left.sid, left.key) == (2, "s1", "hello")
        assert decode(left) == {"event": "pushy:subscription-end", "data": {"channel": "HELLO"}}
        assert keys_of(left) == ["event", "data"]
        assert member_ids(table, "hello") and "s1" not in table.channels["hello"].members

    def test_presence_quit_goes_to_the_rest(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-Room", ALICE, front=0, new_id=ids("00000001"))
        sub_private(table, "s2", "private-room", BOB, front=1, new_id=ids("00000002"))
        sub_private(table, "s3", "private-room", CAROL, front=2, new_id=ids("00000003"))
        effects = table.unsubscribe(front=1, sid="s2", channel="PRIVATE-room")
        assert len(effects) == 2
        left, quit_ = effects
        assert isinstance(left, Left)
        assert decode(left)["data"] == {"channel": "PRIVATE-room"}
        assert isinstance(quit_, Broadcast)
        assert quit_.key == "private-room"
        assert quit_.exclude is None
        assert sorted(quit_.fronts) == [0, 2]  # front 1 has no member left
        assert decode(quit_) == {
            "event": "pushy:presence-quit",
            "channel": "private-Room",
            "data": {"member": record("bob", "00000002")},
        }
        assert keys_of(quit_) == ["event", "channel", "data"]
        chan = table.get("private-room")
        assert chan is not None
        assert chan.presence_list() == [record("alice", "00000001"), record("carol", "00000003")]

    def test_no_presence_quit_on_a_non_presence_channel(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-room")
        sub_private(table, "s2", "private-room")
        effects = table.unsubscribe(front=0, sid="s1", channel="private-room")
        assert [type(e) for e in effects] == [Left]

    def test_last_member_leaving_removes_the_channel(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-room", ALICE)
        effects = table.unsubscribe(front=0, sid="s1", channel="private-room")
        assert [type(e) for e in effects] == [Left]  # nobody left to tell
        assert table.get("private-room") is None
        assert len(table) == 0
        with pytest.raises(ChannelNotFound):
            table.unsubscribe(front=0, sid="s1", channel="private-room")

    def test_a_removed_channel_is_created_afresh(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-Room", ALICE, new_id=ids("00000001"))
        table.unsubscribe(front=0, sid="s1", channel="private-room")
        effects = sub_private(table, "s2", "PRIVATE-ROOM", None, new_id=ids("00000001"))
        success = decode(joined(effects))["data"]
        assert success == {"channel": "PRIVATE-ROOM", "memberId": "00000001"}
        chan = table.get("private-room")
        assert chan is not None
        assert (chan.display, chan.presence) == ("PRIVATE-ROOM", False)
        assert list(chan.members) == ["s2"]

    def test_unsubscribe_then_subscribe_again(self, table: ChannelTable) -> None:
        sub(table, "s1", "hello")
        sub(table, "s2", "hello")
        table.unsubscribe(front=0, sid="s1", channel="hello")
        effects = sub(table, "s1", "hello")
        assert isinstance(effects[0], Joined)
        chan = table.get("hello")
        assert chan is not None and list(chan.members) == ["s2", "s1"]


# -- PROTOCOL.md 3.4 channels ----------------------------------------------------------------


class TestChannelIdentity_3_4:
    def test_spellings_are_one_channel_named_by_its_first_subscriber(
        self, table: ChannelTable
    ) -> None:
        replies = [
            decode(joined(sub(table, sid, name)))
            for sid, name in [("s1", "Hello"), ("s2", "hello"), ("s3", "HELLO")]
        ]
        assert len(table) == 1
        chan = table.get("hello")
        assert chan is not None
        assert chan.display == "Hello"
        assert list(chan.members) == ["s1", "s2", "s3"]
        assert [r["data"]["channel"] for r in replies] == ["Hello"] * 3
        assert {m.state.display for m in chan.members.values()} == {"Hello"}
        assert {m.state.key for m in chan.members.values()} == {"hello"}

    def test_non_ascii_names_fold_too(self, table: ChannelTable) -> None:
        sub(table, "s1", "École")
        effects = sub(table, "s2", "ÉCOLE")
        assert decode(joined(effects))["data"]["channel"] == "École"
        assert len(table) == 1

    def test_already_subscribed_under_another_spelling(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello")
        effects = sub(table, "s1", "hELLO")
        assert only_reply(effects)["data"] == {
            "channel": "hELLO",
            "reason": "Already subscribed to this channel",
        }

    def test_display_name_survives_the_creator_leaving(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello")
        sub(table, "s2", "HELLO")
        table.unsubscribe(front=0, sid="s1", channel="hello")
        effects = sub(table, "s3", "hello")
        assert decode(joined(effects))["data"]["channel"] == "Hello"


class TestLeave_3_4:
    """On disconnect a connection leaves every channel it was in, like unsubscribe."""

    def test_leave_every_channel(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello", front=1)
        sub(table, "s2", "hello", front=0)
        sub_private(table, "s1", "private-room", ALICE, front=1, new_id=ids("00000001"))
        sub_private(table, "s3", "private-room", BOB, front=0, new_id=ids("00000002"))
        sub(table, "s1", "alone", front=1)
        effects = table.leave("s1", ["hello", "private-room", "alone"])
        assert [type(e) for e in effects] == [Left, Left, Broadcast, Left]
        lefts = [e for e in effects if isinstance(e, Left)]
        assert [(e.front, e.sid, e.key, e.message) for e in lefts] == [
            (1, "s1", "hello", None),
            (1, "s1", "private-room", None),
            (1, "s1", "alone", None),
        ]
        quit_ = effects[2]
        assert isinstance(quit_, Broadcast)
        assert quit_.fronts == (0,)
        assert decode(quit_) == {
            "event": "pushy:presence-quit",
            "channel": "private-room",
            "data": {"member": record("alice", "00000001")},
        }
        assert table.get("alone") is None
        assert sorted(table.channels) == ["hello", "private-room"]
        assert all("s1" not in chan.members for chan in table.channels.values())

    def test_unknown_keys_and_foreign_channels_are_ignored(self, table: ChannelTable) -> None:
        sub(table, "s2", "hello")
        before = snapshot(table)
        assert table.leave("s1", ["hello", "nowhere"]) == []
        assert table.leave("s1", []) == []
        assert snapshot(table) == before


# -- PROTOCOL.md 4.2 / 4.3 trigger -----------------------------------------------------------


class TestTrigger_4:
    def test_no_members(self, table: ChannelTable) -> None:
        assert table.trigger("hello", "test", {"a": 1}, None) == (False, [])

    def test_members_get_the_event_under_the_display_name(self, table: ChannelTable) -> None:
        sub(table, "s1", "Hello", front=0)
        sub(table, "s2", "HELLO", front=3)
        delivered, effects = table.trigger("hello", "news", {"msg": "hi", "n": 2}, None)
        assert delivered is True
        assert len(effects) == 1
        broadcast = effects[0]
        assert isinstance(broadcast, Broadcast)
        assert broadcast.key == "hello"
        assert sorted(broadcast.fronts) == [0, 3]
        assert broadcast.exclude is None
        assert broadcast.message == b'{"event":"news","channel":"Hello","data":{"msg":"hi","n":2}}'

    def test_exclude_is_passed_through(self, table: ChannelTable) -> None:
        sub(table, "s1", "hello")
        _, effects = table.trigger("hello", "news", {}, "s1")
        assert isinstance(effects[0], Broadcast) and effects[0].exclude == "s1"

    def test_trigger_changes_nothing(self, table: ChannelTable) -> None:
        sub_private(table, "s1", "private-room", ALICE)
        before = snapshot(table)
        table.trigger("private-room", "x", [1, 2], None)
        assert snapshot(table) == before


# -- Broadcast.fronts (ARCHITECTURE.md 4: only fronts with members get the bytes) ------------


class TestBroadcastFronts:
    def fronts(self, table: ChannelTable, key: str) -> list[int]:
        _, effects = table.trigger(key, "e", None, None)
        if not effects:
            return []
        assert isinstance(effects[0], Broadcast)
        return sorted(effects[0].fronts)

    def test_fronts_follow_membership(self, table: ChannelTable) -> None:
        sub(table, "a", "hello", front=4)
        sub(table, "b", "hello", front=1)
        sub(table, "c", "hello", front=4)
        assert self.fronts(table, "hello") == [1, 4]
        table.unsubscribe(front=4, sid="a", channel="hello")
        assert self.fronts(table, "hello") == [1, 4]  # c is still on front 4
        table.leave("c", ["hello"])
        assert self.fronts(table, "hello") == [1]
        chan = table.get("hello")
        assert chan is not None and chan.front_counts == {1: 1}

    def test_fronts_are_listed_once(self, table: ChannelTable) -> None:
        for i in range(6):
            sub_private(table, f"s{i}", "private-room", ALICE, front=i % 2)
        _, effects = table.trigger("private-room", "e", None, None)
        assert isinstance(effects[0], Broadcast)
        assert sorted(effects[0].fronts) == [0, 1]
        chan = table.get("private-room")
        assert chan is not None and chan.front_counts == {0: 3, 1: 3}

    def test_presence_add_fronts_include_the_joiners_front(self, table: ChannelTable) -> None:
        # The joiner is excluded by sid, not by front: other members may share its front.
        sub_private(table, "s1", "private-room", ALICE, front=0)
        effects = sub_private(table, "s2", "private-room", BOB, front=7)
        assert isinstance(effects[1], Broadcast)
        assert sorted(effects[1].fronts) == [0, 7]


# -- restore_front (ARCHITECTURE.md 6: faults) -----------------------------------------------


def states_by_front(effects: Iterable[Effect]) -> dict[int, list[MemberState]]:
    """What each front learns from Joined effects: what it would replay to a new shard."""
    out: dict[int, list[MemberState]] = {}
    for effect in effects:
        if isinstance(effect, Joined):
            out.setdefault(effect.front, []).append(effect.member)
    return out


def over_the_wire(states: list[MemberState]) -> list[MemberState]:
    """A replay travels as JSON (link RESYNC); decode it as the shard does."""
    wire = orjson.loads(orjson.dumps([s.to_wire() for s in states]))
    return [MemberState.from_wire(item) for item in wire]


class TestRestoreFront_Faults:
    def test_restarted_front_members_leave_with_presence_quit(self, table: ChannelTable) -> None:
        sub_private(table, "a", "private-Room", ALICE, front=0, new_id=ids("00000001"))
        sub_private(table, "b", "private-room", BOB, front=1, new_id=ids("00000002"))
        sub_private(table, "c", "private-room", CAROL, front=1, new_id=ids("00000003"))
        sub(table, "b", "only-front-1", front=1)
        sub(table, "a", "hello", front=0)
        sub(table, "c", "hello", front=1)
        effects = table.restore_front(1, [])  # a restarted front knows no members
        lefts = [e for e in effects if isinstance(e, Left)]
        assert sorted((e.front, e.sid, e.key) for e in lefts) == [
            (1, "b", "only-front-1"),
            (1, "b", "private-room"),
            (1, "c", "hello"),
            (1, "c", "private-room"),
        ]
        assert all(e.message is None for e in lefts)
        quits = [decode(e) for e in effects if isinstance(e, Broadcast)]
        assert quits == [
            {
                "event": "pushy:presence-quit",
                "channel": "private-Room",
                "data": {"member": record(name, mid)},
            }
            for name, mid in [("bob", "00000002"), ("carol", "00000003")]
        ]
        fronts = [e.fronts for e in effects if isinstance(e, Broadcast)]
        assert sorted(fronts[0]) == [0, 1]  # c, on front 1, has not been removed yet
        assert fronts[1] == (0,)
        assert table.get("only-front-1") is None
        assert sorted(table.channels) == ["hello", "private-room"]
        for chan in table.channels.values():
            assert list(chan.members) == ["a"]
            assert chan.front_counts == {0: 1}

    def test_restarted_shard_restores_replayed_members_silently(self) -> None:
        old = ChannelTable(SECRET)
        log: list[Effect] = []
        # Two fronts, interleaved joins on a presence channel, plus public channels.
        log += sub_private(old, "a", "private-Room", ALICE, front=0, now=NOW + 1, new_id=ids("1"))
        log += sub_private(old, "b", "private-room", BOB, front=1, now=NOW + 2, new_id=ids("2"))
        log += sub_private(old, "c", "private-room", CAROL, front=0, now=NOW + 3, new_id=ids("3"))
        log += sub_private(old, "d", "private-room", None, front=1, now=NOW + 4, new_id=ids("4"))
        log += sub(old, "b", "Hello", front=1, new_id=ids("5"))
        log += sub(old, "a", "hello", front=0, new_id=ids("6"))
        known = states_by_front(log)

        new = ChannelTable(SECRET)
        # Front 1 happens to replay first: the presence list must still follow join order.
        assert new.restore_front(1, over_the_wire(known[1])) == []
        assert new.restore_front(0, over_the_wire(known[0])) == []
        assert snapshot(new) == snapshot(old)
        chan = new.get("private-room")
        assert chan is not None
        assert (chan.display, chan.presence) == ("private-Room", True)
        assert [r["memberId"] for r in chan.presence_list()] == ["1", "2", "3", "4"]
        assert new.channels["hello"].display == "Hello"

        # The restored table behaves like the old one.
        effects = sub_private(new, "e", "private-room", ALICE, front=0, new_id=ids("3", "5"))
        presence = decode(joined(effects))["data"]["presence"]
        assert [r["memberId"] for r in presence] == ["1", "2", "3", "4", "5"]
        effects = new.unsubscribe(front=1, sid="b", channel="private-room")
        assert decode(effects[1])["data"] == {"member": record("bob", "2", NOW + 2)}

    def test_replaying_the_same_members_is_a_no_op(self, table: ChannelTable) -> None:
        log = sub_private(table, "a", "private-room", ALICE, front=0)
        log += sub(table, "a", "hello", front=0)
        log += sub(table, "b", "hello", front=1)
        before = snapshot(table)
        assert table.restore_front(0, states_by_front(log)[0]) == []
        assert snapshot(table) == before

    def test_replay_drops_members_the_front_no_longer_knows(self, table: ChannelTable) -> None:
        log = sub_private(table, "a", "private-room", ALICE, front=0)
        log += sub_private(table, "b", "private-room", BOB, front=0)
        log += sub_private(table, "c", "private-room", CAROL, front=1)
        keep = [s for s in states_by_front(log)[0] if s.sid == "a"]
        effects = table.restore_front(0, keep)
        assert [type(e) for e in effects] == [Left, Broadcast]
        quit_ = effects[1]
        assert isinstance(quit_, Broadcast)
        assert decode(quit_)["data"]["member"]["name"] == "bob"
        assert sorted(quit_.fronts) == [0, 1]  # a (front 0) and c (front 1) remain
        assert list(table.channels["private-room"].members) == ["a", "c"]

    def test_member_state_wire_round_trip(self) -> None:
        rec = record("x", "0000abcd")
        state = MemberState("s1", "private-room", "Private-Room", True, "0000abcd", rec)
        assert over_the_wire([state]) == [state]
        plain = MemberState("s2", "hello", "Hello", False, "0000abce", None)
        assert over_the_wire([plain]) == [plain]


def test_effect_messages_are_built_by_protocol_event(table: ChannelTable) -> None:
    """The table encodes with protocol.event, once per effect (ARCHITECTURE.md 4)."""
    effects = sub(table, "s1", "Hello", new_id=ids("00000001"))
    assert effects[0].message == protocol.event(
        protocol.SUBSCRIPTION_SUCCESS, {"channel": "Hello", "memberId": "00000001"}
    )


def test_a_subscribe_whose_answer_cannot_be_encoded_changes_nothing() -> None:
    """Messages are encoded before the table changes (issue: no request half-applied)."""
    from pushy_shard.core.channels import MemberState as _State
    from pushy_shard.errors import NotEncodable

    table = ChannelTable("secret")
    bad = _State("s1", "presence-x", "presence-x", True, "m1", {"odd": {1, 2}})  # not JSON
    table.restore_front(0, [bad])
    with pytest.raises(NotEncodable):
        table.subscribe(front=1, sid="s2", channel="presence-x", request={},
                        now_ms=1, new_member_id=lambda: "m2")
    chan = table.get("presence-x")
    assert chan is not None and list(chan.members) == ["s1"] and chan.front_counts == {0: 1}
    assert chan.member_ids == {"m1"}


# -- webhook transitions (Hook effects) ---------------------------------------------------------


def hooks_of(effects: list[Effect]) -> list[dict[str, Any]]:
    return [effect.event for effect in effects if isinstance(effect, Hook)]


def test_transitions_are_reported_only_when_a_webhook_wants_them() -> None:
    table = ChannelTable(SECRET)
    assert hooks_of(sub(table, "a", "news")) == []
    table.hooks = hook_events(["channel_vacated", "member_added"])
    assert hooks_of(sub(table, "b", "sport")) == [{"name": "channel_occupied",
                                                   "channel": "sport"}]
    joined = sub_private(table, "c", "private-room", ALICE, new_id=ids("m1"))
    assert hooks_of(joined) == [{"name": "channel_occupied", "channel": "private-room"},
                                {"name": "member_added", "channel": "private-room",
                                 "user_id": "m1"}]
    assert hooks_of(table.leave("c", ["private-room"])) == [
        {"name": "member_removed", "channel": "private-room", "user_id": "m1"},
        {"name": "channel_vacated", "channel": "private-room"}]
    # a replay creates what it brings back: the hooks process knows what it announced
    restored = table.restore_front(1, [MemberState("d", "replayed", "Replayed", False, "m9",
                                                   None)])
    assert hooks_of(restored) == [{"name": "channel_occupied", "channel": "Replayed"}]


def test_pushy_subscription_counts_for_webhooks_are_throttled_like_pushers() -> None:
    table = ChannelTable(SECRET)
    table.hooks = hook_events(["subscription_count"])
    assert hooks_of(sub(table, "a", "news")) == [
        {"name": "subscription_count", "channel": "news", "subscription_count": 1}]
    for n in range(2, COUNT_QUIET_ABOVE + 2):
        sub(table, f"s{n}", "news", now=NOW + n)
    assert table.get("news").counted == COUNT_QUIET_ABOVE  # type: ignore[union-attr]
    assert table.tick(NOW + 100) == []  # held: 101 subscribers, the last told just now
    (held,) = table.tick(NOW + COUNT_QUIET_ABOVE + COUNT_EVERY_MS)
    assert hooks_of([held]) == [{"name": "subscription_count", "channel": "news",
                                 "subscription_count": COUNT_QUIET_ABOVE + 1}]
    assert hooks_of(sub_private(table, "p", "private-p", ALICE)) == []  # not presence ones
