"""A Pusher app's channels in a shard (core/pusher_channels.py): presence per user, the member
limit, cache channels, subscription counts and replays (PUSHER.md 3-5). Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pushy_shard.core.channels import COUNT_EVERY_MS, Broadcast, Joined, Left, MemberState, Reply
from pushy_shard.core.pusher_channels import CACHE_MS, PusherChannels
from pushy_shard.core.routing import app_key

NOW = 1_700_000_000_000


@dataclass
class Rules:
    max_presence_members: int = 100
    subscription_count: bool = False


def channels(**rules: Any) -> PusherChannels:
    settings = Rules(**rules)
    return PusherChannels(lambda: settings)


def key(name: str) -> str:
    return app_key("7", name)


def member(user_id: object, info: object = None) -> dict[str, Any]:
    return {"user_id": user_id, "user_key": str(user_id), "user_info": info or {}}


def join(state: PusherChannels, sid: str, name: str, user: dict[str, Any] | None = None,
         front: int = 0, now: int = NOW) -> list[Any]:
    return state.subscribe(front=front, sid=sid, channel=name,
                           request={"key": key(name), "member": user}, now_ms=now,
                           new_member_id=lambda: "unused")


def decoded(message: bytes | None) -> dict[str, Any]:
    assert message is not None
    out: dict[str, Any] = json.loads(message)
    if isinstance(out.get("data"), str) and out["data"].startswith("{"):
        out["data"] = json.loads(out["data"])  # the protocol's double encoding
    return out


def events(effects: list[Any]) -> list[tuple[str, str]]:
    return [(type(e).__name__, decoded(e.message)["event"]) for e in effects
            if getattr(e, "message", None)]


def test_a_public_subscription_succeeds_once() -> None:
    state = channels()
    effects = join(state, "a", "news")
    assert events(effects) == [("Joined", "pusher_internal:subscription_succeeded")]
    assert decoded(effects[0].message) == {
        "event": "pusher_internal:subscription_succeeded", "channel": "news", "data": {}}
    again = join(state, "a", "news")
    assert events(again) == [("Reply", "pusher_internal:subscription_succeeded")]
    assert len(state.get(key("news")).members) == 1  # type: ignore[union-attr]


def test_presence_counts_users_not_connections() -> None:
    state = channels()
    first = join(state, "a1", "presence-room", member(1, {"name": "ann"}))
    assert decoded(first[0].message)["data"] == {
        "presence": {"ids": [1], "hash": {"1": {"name": "ann"}}, "count": 1}}
    added = join(state, "b1", "presence-room", member("2"), front=1)
    assert events(added) == [("Joined", "pusher_internal:subscription_succeeded"),
                             ("Broadcast", "pusher_internal:member_added")]
    assert added[1].exclude == "b1" and decoded(added[1].message)["data"] == {
        "user_id": "2", "user_info": {}}
    second_connection = join(state, "a2", "presence-room", member("1"), front=1)  # "1" is 1
    assert events(second_connection) == [("Joined", "pusher_internal:subscription_succeeded")]
    assert decoded(second_connection[0].message)["data"]["presence"]["count"] == 2
    # the first of ann's two connections leaves: she is still there
    assert events(state.leave("a1", [key("presence-room")])) == []
    removed = state.leave("a2", [key("presence-room")])
    assert [type(e) for e in removed] == [Left, Broadcast]
    assert decoded(removed[1].message)["data"] == {"user_id": 1}  # as first written
    assert state.info(key("presence-room")) == {"subscription_count": 1, "user_count": 1}


def test_a_full_presence_channel_refuses_new_users_not_present_ones() -> None:
    state = channels(max_presence_members=1)
    breaches: list[str] = []
    state.on_breach = lambda limit, detail: breaches.append(limit)
    join(state, "a1", "presence-room", member("ann"))
    (refused,) = join(state, "b1", "presence-room", member("bob"))
    assert breaches == ["presence_members"]
    assert isinstance(refused, Reply) and decoded(refused.message) == {
        "event": "pusher:subscription_error", "channel": "presence-room",
        "data": {"type": "LimitReached", "error": "Presence channel is full", "status": 4100}}
    assert isinstance(join(state, "a2", "presence-room", member("ann"))[0], Joined)
    assert breaches == ["presence_members"]


def test_a_presence_join_without_a_member_is_refused() -> None:
    (refused,) = join(channels(), "a", "presence-room", None)
    assert decoded(refused.message)["data"]["type"] == "BadRequest"


def test_the_last_connection_removes_the_channel() -> None:
    changes: list[tuple[str, bool]] = []
    state = PusherChannels(lambda: Rules(), on_channel=lambda n, c: changes.append((n, c)))
    join(state, "a", "news")
    assert state.leave("a", [key("news")]) == [Left(0, "a", key("news"), None)]
    assert state.get(key("news")) is None and changes == [("news", True), ("news", False)]


def test_cache_channels_give_the_last_triggered_event_or_a_miss() -> None:
    state = channels()
    missed = join(state, "a", "cache-news")
    assert events(missed) == [("Joined", "pusher_internal:subscription_succeeded"),
                              ("Reply", "pusher:cache_miss")]
    assert decoded(missed[1].message) == {"event": "pusher:cache_miss", "channel": "cache-news"}
    state.trigger(key("cache-news"), "e", "first", None, now_ms=NOW)
    state.trigger(key("cache-news"), "client-x", "not cached", "a", now_ms=NOW, client=True)
    got = join(state, "b", "cache-news", now=NOW + 1)
    assert decoded(got[1].message) == {"event": "e", "channel": "cache-news", "data": "first"}
    state.leave("a", [key("cache-news")])
    state.leave("b", [key("cache-news")])  # empty now, the cache stays
    assert decoded(join(state, "c", "cache-news", now=NOW + 2)[1].message)["event"] == "e"
    late = join(state, "d", "cache-news", now=NOW + CACHE_MS)
    assert decoded(late[1].message)["event"] == "pusher:cache_miss"
    state.tick(NOW + CACHE_MS)
    assert not state.caches


def test_triggers_go_to_the_fronts_with_members() -> None:
    state = channels()
    assert state.trigger(key("news"), "e", {"n": 1}, None) == (False, [])
    join(state, "a", "news", front=0)
    join(state, "b", "news", front=2)
    members, (broadcast,) = state.trigger(key("news"), "e", {"n": 1}, "a")
    assert members and broadcast.fronts == (0, 2) and broadcast.exclude == "a"
    assert json.loads(broadcast.message) == {"event": "e", "channel": "news",
                                             "data": '{"n":1}'}


def test_client_events_on_presence_carry_the_user_id() -> None:
    state = channels()
    join(state, "a", "presence-room", member(5))
    _, (broadcast,) = state.trigger(key("presence-room"), "client-t", '{"t":1}', "a",
                                    user_id=5, client=True)
    assert json.loads(broadcast.message) == {"event": "client-t", "channel": "presence-room",
                                             "data": '{"t":1}', "user_id": 5}


def test_subscription_counts_when_the_app_wants_them() -> None:
    state = channels(subscription_count=True)
    effects = join(state, "a", "news")
    assert events(effects) == [("Joined", "pusher_internal:subscription_succeeded"),
                               ("Broadcast", "pusher_internal:subscription_count")]
    assert decoded(effects[1].message)["data"] == {"subscription_count": 1}
    join(state, "b", "news")
    left = state.leave("b", [key("news")])
    assert decoded(left[1].message)["data"] == {"subscription_count": 1}
    assert events(join(state, "p", "presence-x", member(1))) == [
        ("Joined", "pusher_internal:subscription_succeeded")]  # never on presence channels
    assert events(channels().subscribe(
        front=0, sid="z", channel="news", request={"key": key("news")}, now_ms=NOW,
        new_member_id=lambda: "")) == [("Joined", "pusher_internal:subscription_succeeded")]


def test_subscription_counts_above_100_are_throttled() -> None:
    state = channels(subscription_count=True)
    for n in range(100):
        join(state, f"s{n}", "big", now=NOW)
    quiet = join(state, "s100", "big", now=NOW + 10)  # 101 subscribers, 10 ms after a count
    assert events(quiet) == [("Joined", "pusher_internal:subscription_succeeded")]
    assert state.tick(NOW + 10 + COUNT_EVERY_MS // 2) == []
    (count,) = state.tick(NOW + COUNT_EVERY_MS)
    assert decoded(count.message)["data"] == {"subscription_count": 101}
    assert state.tick(NOW + 3 * COUNT_EVERY_MS) == []  # nothing changed since


def test_a_replay_restores_users_in_join_order_and_silently() -> None:
    state = channels()
    ann = MemberState("a", key("presence-room"), "presence-room", True, "ann",
                      {"user_id": "ann", "user_info": {}}, 1)
    bob = MemberState("b", key("presence-room"), "presence-room", True, "bob",
                      {"user_id": "bob", "user_info": {}}, 2)
    assert state.restore_front(1, [bob]) == []
    assert state.restore_front(0, [ann]) == []
    chan = state.get(key("presence-room"))
    assert chan is not None and list(chan.users) == ["ann", "bob"]
    cid = join(state, "c", "presence-room", member("cid"))
    assert decoded(cid[0].message)["data"]["presence"]["ids"] == ["ann", "bob", "cid"]


def test_a_restarted_front_takes_its_users_away_and_a_returning_one_is_announced() -> None:
    state = channels()
    join(state, "a", "presence-room", member("ann"), front=0)
    join(state, "b", "presence-room", member("bob"), front=1)
    gone = state.restore_front(1, [])
    assert [type(e) for e in gone] == [Left, Broadcast]
    assert decoded(gone[1].message)["data"] == {"user_id": "bob"}
    bob = MemberState("b", key("presence-room"), "presence-room", True, "bob",
                      {"user_id": "bob", "user_info": {}}, 9)
    back = state.restore_front(1, [bob], announce=True)
    assert events(back) == [("Broadcast", "pusher_internal:member_added")]
