"""The typed link (core/link.py) and the two views of it: a front's of its shards
(core/shard_view.py) and a shard's of its fronts (core/front_view.py). Pure: no loop, no
sockets; time is passed in."""

from __future__ import annotations

import pytest

from pushy_shard.core import link
from pushy_shard.core.channels import MemberState
from pushy_shard.core.front_view import Answer, Apply, FrontsView, Restore
from pushy_shard.core.shard_view import MAX_PENDING, Replay, Send, ShardsView

ANN = MemberState("ann", "room", "Room", True, "0000000a", {"name": "ann"}, 3)


# -- messages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("message", [
    link.Welcome(1, "inc"), link.Welcome(0, "inc", replay=True), link.Pong(),
    link.Done(b"7", b'{"members":true}'), link.Reply("sid", b'{"e":1}'),
    link.Joined(ANN, b'{"s":1}'), link.Left("sid", "room", b'{"x":1}'),
    link.Left("sid", "room", None), link.Deliver("room", "sid", b"{}"),
    link.Deliver("room", None, b"{}"), link.Deliver("room", None, b"{}", "66302e31"),
])
def test_shard_messages_round_trip(message: link.ShardMessage) -> None:
    assert list(link.decode_shard(message.encode())) == [message]


def test_a_batch_carries_several_messages_whole() -> None:
    messages = [link.Reply("a", b"1"), link.Deliver("k", None, b"2"), link.Done(b"1", b"{}")]
    frames = link.batch([m.encode() for m in messages])
    assert frames[0] == link.BATCH
    assert list(link.decode_shard(frames)) == messages
    assert link.batch([messages[0].encode()]) == messages[0].encode()  # one: no envelope


def test_a_fronts_batch_splits_into_its_messages_and_bad_sizes_are_refused() -> None:
    requests = [link.Ping().encode(), link.Hello(2).encode()]
    assert list(link.unbatch(link.batch(requests))) == requests
    frames = link.batch(requests)
    for sizes in (b"[1,5]", b"[0,2]", b'"x"', b"[1]"):
        with pytest.raises(link.LinkError):
            list(link.unbatch([frames[0], sizes, *frames[2:]]))


def test_member_state_keeps_its_join_order_on_the_wire() -> None:
    decoded = MemberState.from_wire(link.load(link.body(ANN.to_wire())))
    assert decoded == ANN and decoded.seq == 3


@pytest.mark.parametrize("request_", [
    link.Command("sid", "subscribe", {"channel": "c"}, "c", "10.0.0.1"),
    link.Command("sid", "x", {}, "c", None), link.Leave("sid", ["a", "b"]),
    link.Trigger("k", "e", {"n": [1]}, None), link.Trigger("k", "e", 1, "sid", "ab", 5),
    link.Query("7", "channels", prefix="presence-", info=("user_count",)),
    link.Query("", "users", "room"),
])
def test_requests_round_trip_with_their_id(request_: link.Request) -> None:
    assert link.decode_request(request_.encode(b"42")) == (b"42", request_)


@pytest.mark.parametrize(("frames", "says"), [
    ([b"C", b"1", b"not json"], "undecodable"),
    ([b"C", b"1", b"[1]"], "not an object"),
    ([b"C", b"1", b'{"sid":"a"}'], "'name' is missing"),
    ([b"L", b"1", b'{"sid":"a","keys":["k",3]}'], "'keys' holds int"),
    ([b"T", b"1", b'{"key":"k","event":1,"data":{},"exclude":null}'], "'event' is int"),
    ([b"T", b"1", b'{"key":"k","event":"e","data":{},"exclude":null,"sig":"s"}'],
     "'ts' must come with 'sig'"),
    ([b"C", b"1", b'{"sid":"a","name":"n","data":{},"channel":"\\ud800"}'], "not UTF-8"),
    ([b"C", b"1"], "without a body"),
    ([b"?", b"1", b"{}"], "unknown operation"),
    ([b"Q", b"1", b'{"app":"","what":"all","name":"","prefix":"","info":[]}'], "'what'"),
    ([b"Q", b"1", b'{"app":"","what":"channels","name":"","prefix":"","info":[1]}'],
     "'info' holds"),
])
def test_malformed_requests_decode_to_why(frames: list[bytes], says: str) -> None:
    rid, request = link.decode_request(frames)
    assert rid == b"1" and isinstance(request, link.Malformed) and says in request.reason


# -- a front's view of its shards --------------------------------------------------------------


def welcomed(view: ShardsView[str], shard: int, incarnation: str, replay: bool = False,
             now: float = 0.0) -> tuple[Replay | None, list[Send]]:
    return view.welcomed(shard, link.Welcome(shard, incarnation, replay), now)


def test_requests_wait_for_the_first_welcome_then_follow_the_replay() -> None:
    view: ShardsView[str] = ShardsView(front=0, shards=2)
    assert view.connected(1) == Send(1, link.Hello(0).encode())
    assert view.request(1, link.Stats(), "w1", now=0, timeout=5) is None  # not synced
    replay, resend = welcomed(view, 1, "inc-a")
    assert replay == Replay(1, "inc-a", restarted=False)
    assert resend == [Send(1, link.Stats().encode(b"1"), b"1")]
    view.sent(1, b"1", True)
    assert view.done(1, b"1") == "w1" and view.done(1, b"1") is None


def test_a_new_incarnation_gets_a_replay_and_every_pending_request_again() -> None:
    view: ShardsView[str] = ShardsView(front=0, shards=1)
    welcomed(view, 0, "inc-a")
    send = view.request(0, link.Stats(), "w", now=0, timeout=5)
    assert send is not None
    view.sent(0, b"1", True)
    view.disconnected(0)
    assert view.in_flight == 0  # a shard that went away answers nothing
    replay, resend = welcomed(view, 0, "inc-a")  # the same incarnation: the link blipped
    assert replay is None and resend == []  # it was sent and will be answered
    replay, resend = welcomed(view, 0, "inc-b")  # restarted: lost everything
    assert replay == Replay(0, "inc-b", restarted=True) and [s.rid for s in resend] == [b"1"]
    replay, resend = welcomed(view, 0, "inc-b", replay=True)  # it gave this front up
    assert replay == Replay(0, "inc-b", restarted=True) and len(resend) == 1


def test_a_request_the_link_refused_is_sent_again_after_the_next_welcome() -> None:
    view: ShardsView[str] = ShardsView(front=0, shards=1)
    welcomed(view, 0, "inc")
    view.request(0, link.Stats(), "w", now=0, timeout=5)
    view.sent(0, b"1", False)
    replay, resend = welcomed(view, 0, "inc")
    assert replay is None and [s.rid for s in resend] == [b"1"]


def test_tick_pings_synced_links_and_expires_late_requests() -> None:
    view: ShardsView[str] = ShardsView(front=3, shards=2)
    welcomed(view, 0, "inc", now=10)
    view.request(0, link.Stats(), "early", now=10, timeout=1)
    view.request(0, link.Stats(), "late", now=10, timeout=5)
    pings, expired = view.tick(11)
    assert pings == [Send(0, link.Ping().encode())] and expired == ["early"]
    assert view.in_flight == 1
    assert view.down(now=11, stale=3) == [1]  # never welcomed
    assert view.down(now=14, stale=3) == [0, 1]  # no Pong for 4 s
    view.pong(0, 13.5)
    assert view.down(now=14, stale=3) == [1]


def test_pending_requests_are_bounded() -> None:
    view: ShardsView[int] = ShardsView(front=0, shards=1)
    for n in range(MAX_PENDING):
        view.request(0, link.Stats(), n, now=0, timeout=5)
    with pytest.raises(OverflowError):
        view.request(0, link.Stats(), -1, now=0, timeout=5)


# -- a shard's view of its fronts --------------------------------------------------------------

F0, F1, F1_AGAIN = b"f0.a", b"f1.a", b"f1.b"


def fronts(count: int = 2) -> FrontsView:
    return FrontsView(shard=0, incarnation="inc", fronts=count)


def resync(view: FrontsView, identity: bytes, front: int, members: tuple[MemberState, ...] = (),
           now: float = 0.0, incarnation: str = "inc") -> list:
    return view.resync(identity, link.Resync(front, incarnation, members), now)


def test_hello_is_welcomed_and_a_stale_replay_ignored() -> None:
    view = fronts()
    assert view.hello(F0) == [Answer(F0, link.Welcome(0, "inc"))]
    assert resync(view, F0, 0, incarnation="older") == []
    assert view.identity(0) is None


def test_requests_are_held_until_every_front_replayed() -> None:
    view = fronts(2)
    assert resync(view, F0, 0, (ANN,)) == [Restore(0, (ANN,), False, "replay")]
    request = [b"T", b"1", b"{}"]
    assert view.message(F0, request, now=1) == []  # recovering: held back
    actions = resync(view, F1, 1)
    assert actions == [Restore(1, (), False, "replay"), Apply(0, F0, request)]
    assert not view.recovering
    assert view.message(F0, request, now=2) == [Apply(0, F0, request)]


def test_the_grace_ends_recovery_and_drops_what_a_gone_identity_sent() -> None:
    view = fronts(2)
    resync(view, F1, 1)
    view.message(F1, [b"T", b"1", b"{}"], now=1)
    resync(view, F1_AGAIN, 1)  # front 1 restarted meanwhile: its old request is void
    assert view.end_recovery() == []
    assert view.end_recovery() == []  # once


def test_a_front_that_has_not_replayed_is_ignored_or_asked_to() -> None:
    view = fronts(1)
    assert view.message(F0, [b"T", b"1", b"{}"], now=0) == []
    assert view.dropped_unsynced == 1
    resync(view, F0, 0)
    assert view.message(F0, [b"p"], now=1) == [Answer(F0, link.Pong())]
    assert view.expire(now=6, silence=5) == []  # 5 s exactly: not yet
    assert view.expire(now=6.5, silence=5) == [Restore(0, (), False, "silent")]
    assert view.identity(0) is None
    assert view.message(F0, [b"p"], now=7) == [Answer(F0, link.Welcome(0, "inc", True))]
    assert resync(view, F0, 0, (ANN,), now=7) == [Restore(0, (ANN,), True, "replay")]


def test_a_restarted_front_replaces_its_old_incarnation() -> None:
    view = fronts(2)
    resync(view, F1, 1, (ANN,))
    assert resync(view, F1_AGAIN, 1) == [Restore(1, (), False, "restarted")]
    assert view.identity(1) == F1_AGAIN
    assert view.message(F1, [b"p"], now=1) == []  # the old identity is nobody now
