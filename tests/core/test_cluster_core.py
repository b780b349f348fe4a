"""The pure cores of several instances: the held outbox, a shard's cluster view and the
pub/sub messages (SCALEOUT.md)."""

from __future__ import annotations

import pytest

from pushy_shard.core import cluster_wire as wire
from pushy_shard.core import link
from pushy_shard.core.cluster_presence import Change, Heard, Mirror
from pushy_shard.core.cluster_view import UNSUBSCRIBE_AFTER, ClusterView, RecentMarks
from pushy_shard.core.outbox import Outbox
from pushy_shard.errors import ClusterMessageError

# -- Outbox ------------------------------------------------------------------------------------


def test_outbox_without_holds_sends_everything_in_order() -> None:
    box = Outbox()
    assert box.queue(b"f0", [b"1"]) is True  # the first of the open segment: flush
    assert box.queue(b"f0", [b"2"]) is False
    box.queue(b"f1", [b"x"])
    assert box.take() == {b"f0": [[b"1"], [b"2"]], b"f1": [[b"x"]]}
    assert box.take() == {} and not box


def test_outbox_holds_what_came_before_a_token_and_everything_after_it() -> None:
    box = Outbox()
    box.queue(b"f0", [b"joined"])
    box.hold(7)
    assert box.take() == {}
    box.queue(b"f0", [b"later"])
    box.queue(b"f1", [b"other"])
    assert box.take() == {}  # behind the held segment, though itself unheld
    assert box.waiting
    assert box.release(8) is False  # not its token
    assert box.release(7) is True
    assert box.take() == {b"f0": [[b"joined"], [b"later"]], b"f1": [[b"other"]]}
    assert not box.waiting


def test_outbox_releases_segments_in_order_only() -> None:
    box = Outbox()
    box.queue(b"f0", [b"a"])
    box.hold(1)
    box.take()
    box.queue(b"f0", [b"b"])
    box.hold(2)
    box.take()
    assert box.release(2) is False  # the first segment still waits
    assert box.take() == {}
    assert box.release(1) is True
    assert box.take() == {b"f0": [[b"a"], [b"b"]]}


def test_outbox_token_released_before_take_holds_nothing() -> None:
    box = Outbox()
    box.queue(b"f0", [b"a"])
    box.hold(1)
    box.release(1)
    assert box.take() == {b"f0": [[b"a"]]}


# -- ClusterView ---------------------------------------------------------------------------------


def test_first_local_member_subscribes_and_waits_for_the_ack_and_the_write() -> None:
    view = ClusterView()
    tokens = view.changed("room", 1, now=0.0)
    assert len(tokens) == 1
    turn = view.turn()
    assert turn.subscribe == ["room"] and turn.counts == {"room": 1}
    assert turn.token is not None and turn.token not in tokens  # the write's own token
    assert view.acknowledged("room") == tokens
    assert view.acknowledged("room") == []  # once


def test_more_members_write_counts_without_holding_output() -> None:
    view = ClusterView()
    view.changed("room", 1, 0.0)
    view.turn()
    view.acknowledged("room")
    assert view.changed("room", 2, 0.1) == []
    turn = view.turn()
    assert turn.counts == {"room": 2} and turn.token is None and turn.subscribe == []
    assert not view.turn()  # nothing changed since


def test_a_second_member_during_the_subscribe_waits_too() -> None:
    view = ClusterView()
    first = view.changed("room", 1, 0.0)
    view.turn()
    second = view.changed("room", 2, 0.0)
    assert second and second != first
    assert sorted(view.acknowledged("room")) == sorted(first + second)


def test_last_member_leaving_writes_zero_with_a_token_and_unsubscribes_later() -> None:
    view = ClusterView()
    view.changed("room", 1, 0.0)
    view.turn()
    view.acknowledged("room")
    assert view.changed("room", 0, 10.0) == []
    turn = view.turn()
    assert turn.counts == {"room": 0} and turn.token is not None
    view.idle(10.0 + UNSUBSCRIBE_AFTER / 2)
    assert view.turn().unsubscribe == []
    view.idle(10.0 + UNSUBSCRIBE_AFTER)
    assert view.turn().unsubscribe == ["room"]
    assert "room" not in view.listening


def test_a_member_returning_before_the_delay_keeps_the_subscription() -> None:
    view = ClusterView()
    view.changed("room", 1, 0.0)
    view.turn()
    view.acknowledged("room")
    view.changed("room", 0, 1.0)
    assert view.changed("room", 1, 1.5) == []  # still subscribed: nothing waits
    view.idle(1.0 + UNSUBSCRIBE_AFTER * 2)
    assert view.turn().unsubscribe == []


def test_created_and_emptied_in_one_turn_writes_nothing() -> None:
    view = ClusterView()
    view.changed("blip", 1, 0.0)
    view.changed("blip", 0, 0.0)
    turn = view.turn()
    assert turn.counts == {} and turn.token is None and turn.subscribe == ["blip"]


def test_lost_link_releases_waiting_tokens_and_keeps_channels_to_resubscribe() -> None:
    view = ClusterView()
    tokens = view.changed("room", 1, 0.0)
    view.turn()
    assert view.lost() == tokens
    assert list(view.listening) == ["room"]
    assert view.acknowledged("room") == []  # released already; now acknowledged again
    assert view.listening["room"].acknowledged


def test_unheard_subscribes_release_their_tokens_only() -> None:
    view = ClusterView()
    waiting = view.changed("slow", 1, 0.0)
    view.changed("fast", 1, 0.0)
    view.turn()
    view.acknowledged("fast")
    assert view.unheard(["slow", "fast"]) == waiting
    assert not view.listening["slow"].acknowledged


def test_rewrite_writes_every_count_again_even_unchanged_and_zeros() -> None:
    view = ClusterView()
    view.changed("a", 2, 0.0)
    view.turn()
    view.rewrite([("a", 2), ("gone", 0)])
    assert view.turn().counts == {"a": 2, "gone": 0}
    assert view.turn().counts == {}


def test_publishes_go_in_order_with_their_waiters() -> None:
    view = ClusterView()
    view.publish("room", b"1", "w1")
    view.publish("room", b"2", "w2")
    turn = view.turn()
    assert [(p.payload, p.waiter) for p in turn.publishes] == [(b"1", "w1"), (b"2", "w2")]
    assert turn.token is None
    assert not view.turn()


# -- cluster_wire --------------------------------------------------------------------------------


def test_keys_share_the_channel_hash_tag() -> None:
    key = "10\x00presence-room"
    assert wire.channel(key) == b"pushy:c:{10\x00presence-room}"
    assert wire.occupancy(key) == "pushy:s:{10\x00presence-room}"
    assert wire.key_of(wire.channel(key)) == key
    assert wire.key_of(wire.channel("caf\u00e9")) == "caf\u00e9"


@pytest.mark.parametrize("raw", [b"pushy:x:{a}", b"pushy:c:{a", b"other", b"pushy:c:{\xff}"])
def test_key_of_refuses_what_is_not_ours(raw: bytes) -> None:
    with pytest.raises(ClusterMessageError):
        wire.key_of(raw)


def test_published_round_trips() -> None:
    message = wire.Published("client-typing", '{"a":1}', "123.456", 7, True, "f0.1/02")
    assert wire.decode(message.encode()) == message
    plain = wire.Published("e", {"nested": [1, "x"]})
    assert wire.decode(plain.encode()) == plain


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"{}", b"[]", b'["t"]', b'["t",1,null,null,null,false,""]',
    b'["t","e",null,5,null,false,""]', b'["t","e",null,null,null,"yes",""]', b'["z",1]',
    b'["t","e",null,null,null,false]', b'["t","e",null,null,null,false,7]',
])
def test_decode_refuses_malformed_messages(payload: bytes) -> None:
    with pytest.raises(ClusterMessageError):
        wire.decode(payload)


# -- Mirror ----------------------------------------------------------------------------------------


def added(seq: int, who: str, sid: str | None = None) -> Heard:
    return Heard(seq, True, who, {"name": who}, sid)


def removed(seq: int, who: str) -> Heard:
    return Heard(seq, False, who, {"name": who})


def test_mirror_holds_what_it_hears_until_the_snapshot_and_skips_what_it_contains() -> None:
    mirror = Mirror()
    assert mirror.heard(added(4, "cid", "s3")) == []  # before the snapshot: waits
    assert mirror.heard(added(3, "bob")) == []
    changes = mirror.snapshot(3, [("ann", {"name": "ann"}), ("bob", {"name": "bob"})])
    assert changes == [Change(True, "cid", {"name": "cid"}, "s3")]  # bob (3) was in it
    assert list(mirror.members) == ["ann", "bob", "cid"] and mirror.seq == 4
    assert mirror.heard(added(4, "cid")) == []  # a duplicate
    assert mirror.heard(removed(5, "ann")) == [Change(False, "ann", {"name": "ann"})]
    assert mirror.heard(removed(6, "nobody")) == []


def test_a_join_is_answered_once_the_mirror_reached_its_seq() -> None:
    mirror = Mirror()
    assert mirror.wait(2, "join-a") is False  # no snapshot yet
    mirror.snapshot(1, [("x", {})])
    assert mirror.ready() == []
    mirror.heard(added(2, "a"))
    assert mirror.ready() == ["join-a"]
    assert mirror.wait(2, "join-b") is True  # reached already: answer now
    assert mirror.abandon() == []


def test_a_new_snapshot_after_a_gap_is_told_as_the_difference() -> None:
    mirror = Mirror()
    mirror.snapshot(2, [("ann", {"name": "ann"}), ("bob", {"name": "bob"})])
    generation = mirror.generation
    mirror.reset()
    assert not mirror.live and mirror.generation == generation + 1
    changes = mirror.snapshot(9, [("bob", {"name": "bob"}), ("eve", {"name": "eve"})])
    assert changes == [Change(False, "ann", {"name": "ann"}),
                       Change(True, "eve", {"name": "eve"})]


def test_abandon_returns_the_waiting_joins() -> None:
    mirror = Mirror()
    mirror.wait(5, "j1")
    mirror.wait(6, "j2")
    assert mirror.abandon() == ["j1", "j2"] and mirror.ready() == []


def test_presence_messages_decode() -> None:
    assert wire.decode(b'["a",3,"ann",{"name":"ann"},"s1"]') == added(3, "ann", "s1")
    assert wire.decode(b'["r",4,"ann",{"name":"ann"}]') == removed(4, "ann")
    for bad in (b'["a",3,"ann",{}]', b'["r","4","ann",{}]', b'["a",3,"ann",[],"s"]'):
        with pytest.raises(ClusterMessageError):
            wire.decode(bad)


def test_terminate_round_trips_on_redis_and_on_the_link() -> None:
    order = wire.Terminate("10", "doomed", "host-a")
    assert wire.decode(order.encode()) == order
    with pytest.raises(ClusterMessageError):
        wire.decode(b'["k","10",7,"host-a"]')
    message = link.Terminate("10", "doomed")
    assert list(link.decode_shard(message.encode())) == [message]
    pong = link.Pong(redis_down=True)
    assert list(link.decode_shard(pong.encode())) == [pong]
    assert list(link.decode_shard(link.Pong().encode())) == [link.Pong()]


def test_recent_marks_drop_a_mark_heard_again_within_the_window() -> None:
    marks = RecentMarks(keep=10.0)
    assert marks.seen("a", 0.0) is False
    assert marks.seen("b", 1.0) is False
    assert marks.seen("a", 5.0) is True  # heard again: dropped
    assert marks.seen("a", 10.5) is False  # past the window: forgotten, heard anew
    assert marks.seen("b", 10.5) is True  # heard at 1.0: within the window still
    assert marks.seen("b", 11.5) is False
