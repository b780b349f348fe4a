"""The query API's pure checks and a shard's answers (core/channel_query.py, PUSHER.md 8)."""

from __future__ import annotations

import pytest

from pushy_shard.core import channel_query as query
from pushy_shard.core.channels import ChannelTable
from pushy_shard.core.pusher_channels import Cached, PusherChannels
from pushy_shard.core.routing import app_key
from pushy_shard.errors import ApiError

NOW = 1_700_000_000_000


class Rules:
    max_presence_members = 100
    subscription_count = False


def pusher_state() -> PusherChannels:
    state = PusherChannels(lambda: Rules())
    for sid, channel, user in [("a1", "presence-r", "ann"), ("a2", "presence-r", "ann"),
                               ("b1", "presence-r", 7), ("c1", "news", None),
                               ("c2", "news", None), ("c3", "news-2", None)]:
        member = {"user_id": user, "user_key": str(user), "user_info": {}} if user else None
        state.subscribe(front=0, sid=sid, channel=channel, now_ms=NOW,
                        request={"key": app_key("5", channel), "member": member},
                        new_member_id=lambda: "x")
    return state


def refusal(call: object, *args: object) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.status == 400
    return caught.value.message


def test_info_attributes_are_parsed_and_checked() -> None:
    assert query.parse_info(None, query.LIST_INFO) == ()
    assert query.parse_info("subscription_count, user_count,", query.LIST_INFO) == (
        "subscription_count", "user_count")
    assert "Unknown info attribute 'cache'" in refusal(query.parse_info, "cache",
                                                       query.LIST_INFO)


def test_the_names_say_which_attribute_applies() -> None:
    query.check_list(True, "presence-", ("user_count",))
    assert "filter_by_prefix" in refusal(query.check_list, True, "", ("user_count",))
    query.check_list(False, "", ("user_count",))  # Pushy: the shard tells presence apart
    query.check_channel(True, "presence-r", ("user_count",))
    query.check_channel(True, "cache-news", ("cache",))
    assert "presence" in refusal(query.check_channel, True, "news", ("user_count",))
    assert "cache" in refusal(query.check_channel, True, "news", ("cache",))
    assert "cache" in refusal(query.check_channel, False, "news", ("cache",))
    assert "presence" in refusal(query.check_users, True, "private-x")


def all_facts(state: ChannelTable | PusherChannels) -> list[query.Facts]:
    return [query.facts(chan) for chan in state.all()]


def test_a_shard_lists_its_channels_with_their_attributes() -> None:
    state = pusher_state()
    assert query.list_channels(all_facts(state), "news", ("subscription_count",), True) == {
        "news": {"subscription_count": 2}, "news-2": {"subscription_count": 1}}
    assert query.list_channels(all_facts(state), "presence-", ("user_count",), True) == {
        "presence-r": {"user_count": 2}}
    assert query.list_channels(all_facts(state), "NEWS", (), True) == {}  # Pusher: case counts


def test_one_channel_and_its_users() -> None:
    state = pusher_state()
    chan = state.get(app_key("5", "presence-r"))
    assert chan is not None
    assert query.channel_info(query.facts(chan), ("subscription_count", "user_count"), None,
                              NOW) == {
        "occupied": True, "subscription_count": 3, "user_count": 2}
    assert query.channel_info(None, ("user_count",), None, NOW) == {
        "occupied": False, "user_count": 0}
    assert query.users(chan) == [{"id": "ann"}, {"id": "7"}]
    assert query.users(None) == []
    cached = Cached(b"{}", '{"p":1}', NOW + 61_500)
    assert query.channel_info(None, ("cache",), cached, NOW) == {
        "occupied": False, "cache": {"data": '{"p":1}', "ttl": 61}}
    news = state.get(app_key("5", "news"))
    assert "presence" in refusal(query.users, news)


def test_the_pushy_channels_answer_case_insensitively_by_member() -> None:
    table = ChannelTable("secret")
    ids = iter(["m1", "m2"])
    for sid in ("s1", "s2"):
        table.subscribe(front=0, sid=sid, channel="Room", request={}, now_ms=NOW,
                        new_member_id=lambda: next(ids))
    assert query.list_channels(all_facts(table), "ROOM", ("subscription_count",), False) == {
        "Room": {"subscription_count": 2}}
    room = table.get("room")
    assert room is not None
    assert "presence" in refusal(query.channel_info, query.facts(room), ("user_count",), None,
                                 NOW)
    assert "presence" in refusal(query.users, room)
