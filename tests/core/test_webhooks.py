"""Webhooks (core/webhooks.py, PUSHER.md 9): what is announced once and when, the per-target
batches, tries and retries, and the signed request of one try. Pure: time is passed in."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import pusher
import pytest

from pushy_shard.core.webhooks import (
    EVENTS,
    Announcer,
    BadTransition,
    Deliveries,
    DeliverySettings,
    Post,
    Target,
    request,
    signature,
)

NOW = 1_700_000_000_000
HOLD = 3000
APP = "1"


def target(url: str = "https://example.com/hook", **changes: Any) -> Target:
    fields: dict[str, Any] = {"app": APP, "key": "278d425bdf160c739803",
                              "secret": "7ad3773142a6692b25b8", "url": url,
                              "events": frozenset(EVENTS)}
    return Target(**(fields | changes))


def occupied(channel: str = "c") -> dict[str, Any]:
    return {"name": "channel_occupied", "channel": channel}


def vacated(channel: str = "c") -> dict[str, Any]:
    return {"name": "channel_vacated", "channel": channel}


def added(user: object, channel: str = "presence-x") -> dict[str, Any]:
    return {"name": "member_added", "channel": channel, "user_id": user}


def removed(user: object, channel: str = "presence-x") -> dict[str, Any]:
    return {"name": "member_removed", "channel": channel, "user_id": user}


def announced(*events: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(APP, event) for event in events]


# -- targets ----------------------------------------------------------------------------------


def test_target_wants_only_its_events() -> None:
    hook = target(events=frozenset({"channel_occupied"}))
    assert hook.wants(occupied())
    assert not hook.wants(vacated())


def test_target_prefix_filters_channels() -> None:
    hook = target(channel_prefix="presence-")
    assert hook.wants(added("1"))
    assert not hook.wants(occupied("private-a"))


def test_target_repr_hides_secret() -> None:
    assert "7ad3773142a6692b25b8" not in repr(target())


# -- announcer: occupancy ---------------------------------------------------------------------


def test_occupied_is_announced_once() -> None:
    hooks = Announcer(HOLD)
    assert hooks.apply(APP, occupied(), NOW) == announced(occupied())
    assert hooks.occupied(APP, "c")


def test_duplicate_occupied_is_ignored() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied(), NOW)
    assert hooks.apply(APP, occupied(), NOW + 1) == []


def test_vacate_is_held_then_announced() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied(), NOW)
    assert hooks.apply(APP, vacated(), NOW) == []
    assert hooks.next_due() == NOW + HOLD
    assert hooks.due(NOW + HOLD - 1) == []
    assert hooks.due(NOW + HOLD) == announced(vacated())
    assert not hooks.occupied(APP, "c")
    assert hooks.next_due() is None


def test_reoccupied_within_hold_announces_nothing() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied(), NOW)
    hooks.apply(APP, vacated(), NOW)
    assert hooks.apply(APP, occupied(), NOW + 1000) == []
    assert hooks.due(NOW + 10 * HOLD) == []
    assert hooks.next_due() is None
    assert hooks.occupied(APP, "c")


def test_vacate_of_unannounced_channel_is_ignored() -> None:
    hooks = Announcer(HOLD)
    assert hooks.apply(APP, vacated(), NOW) == []
    assert hooks.next_due() is None
    assert len(hooks) == 0


def test_second_vacate_does_not_restart_the_hold() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied(), NOW)
    hooks.apply(APP, vacated(), NOW)
    hooks.apply(APP, vacated(), NOW + 2000)
    assert hooks.due(NOW + HOLD) == announced(vacated())


def test_channels_of_apps_are_apart() -> None:
    hooks = Announcer(HOLD)
    hooks.apply("1", occupied(), NOW)
    assert hooks.apply("2", occupied(), NOW) == [("2", occupied())]


# -- announcer: presence ----------------------------------------------------------------------


def test_member_added_once_and_removed_after_hold() -> None:
    hooks = Announcer(HOLD)
    assert hooks.apply(APP, added("7"), NOW) == announced(added("7"))
    assert hooks.apply(APP, added("7"), NOW) == []
    assert hooks.apply(APP, removed("7"), NOW) == []
    assert hooks.present(APP, "presence-x") == {"7"}
    assert hooks.due(NOW + HOLD) == announced(removed("7"))
    assert hooks.present(APP, "presence-x") == set()


def test_member_rejoined_within_hold_announces_nothing() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, added("7"), NOW)
    hooks.apply(APP, removed("7"), NOW)
    assert hooks.apply(APP, added("7"), NOW + 2999) == []
    assert hooks.due(NOW + 10 * HOLD) == []


def test_user_ids_compare_as_text() -> None:
    hooks = Announcer(HOLD)
    assert hooks.apply(APP, added(1), NOW) == announced(added("1"))
    assert hooks.apply(APP, added("1"), NOW) == []
    hooks.apply(APP, removed("1"), NOW)
    assert hooks.due(NOW + HOLD) == announced(removed("1"))


def test_removals_precede_the_vacate_of_their_channel() -> None:
    hooks = Announcer(HOLD)
    ch = "presence-x"
    hooks.apply(APP, occupied(ch), NOW)
    hooks.apply(APP, added("a"), NOW)
    hooks.apply(APP, added("b"), NOW)
    hooks.apply(APP, vacated(ch), NOW)  # the vacate's hold starts first...
    hooks.apply(APP, removed("a"), NOW)
    hooks.apply(APP, removed("b"), NOW + 500)  # ...and b's ends after it
    assert hooks.due(NOW + HOLD) == announced(removed("a"), removed("b"), vacated(ch))
    assert hooks.due(NOW + HOLD + 500) == []
    assert len(hooks) == 0


def test_vacate_removes_users_still_present() -> None:
    hooks = Announcer(HOLD)
    ch = "presence-x"
    hooks.apply(APP, occupied(ch), NOW)
    hooks.apply(APP, added("a"), NOW)
    hooks.apply(APP, vacated(ch), NOW)
    assert hooks.due(NOW + HOLD) == announced(removed("a"), vacated(ch))


def test_due_orders_by_hold_end_then_insertion() -> None:
    hooks = Announcer(HOLD)
    for ch in ("a", "b", "c"):
        hooks.apply(APP, occupied(ch), NOW)
    hooks.apply(APP, vacated("b"), NOW + 10)
    hooks.apply(APP, vacated("c"), NOW)
    hooks.apply(APP, vacated("a"), NOW)
    assert hooks.due(NOW + HOLD + 10) == announced(vacated("c"), vacated("a"), vacated("b"))


def test_next_due_skips_cancelled_holds() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("a"), NOW)
    hooks.apply(APP, occupied("b"), NOW)
    hooks.apply(APP, vacated("a"), NOW)
    hooks.apply(APP, vacated("b"), NOW + 100)
    hooks.apply(APP, occupied("a"), NOW + 200)
    assert hooks.next_due() == NOW + 100 + HOLD


@pytest.mark.parametrize("event", [
    {"name": "client_event", "channel": "private-c", "event": "client-x", "data": "{}",
     "socket_id": "1.2"},
    {"name": "client_event", "channel": "presence-c", "event": "client-x", "data": "{}",
     "socket_id": "1.2", "user_id": "7"},
    {"name": "cache_miss", "channel": "cache-c"},
    {"name": "subscription_count", "channel": "c", "subscription_count": 3},
])
def test_other_events_pass_through(event: dict[str, Any]) -> None:
    hooks = Announcer(HOLD)
    assert hooks.apply(APP, event, NOW) == announced(event)
    assert hooks.apply(APP, event, NOW) == announced(event)
    assert len(hooks) == 0


@pytest.mark.parametrize("event", [
    {"name": "channel_exploded", "channel": "c"},
    {"channel": "c"},
    {"name": "channel_occupied"},
    {"name": "channel_vacated", "channel": 5},
    {"name": "member_added", "channel": "presence-x"},
    {"name": "member_removed", "channel": "presence-x", "user_id": None},
    {"name": "member_added", "channel": "presence-x", "user_id": True},
    {"name": "cache_miss", "channel": ""},
])
def test_bad_transition_changes_nothing(event: dict[str, Any]) -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("presence-x"), NOW)
    hooks.apply(APP, added("7"), NOW)
    with pytest.raises(BadTransition):
        hooks.apply(APP, event, NOW)
    assert hooks.occupied(APP, "presence-x") and hooks.present(APP, "presence-x") == {"7"}
    assert hooks.next_due() is None


def test_bad_transition_is_a_value_error() -> None:
    assert issubclass(BadTransition, ValueError)


def test_vacated_channel_is_forgotten() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("presence-x"), NOW)
    hooks.apply(APP, added("7"), NOW)
    hooks.apply(APP, removed("7"), NOW)
    hooks.apply(APP, vacated("presence-x"), NOW)
    hooks.due(NOW + HOLD)
    assert len(hooks) == 0
    assert hooks.next_due() is None


def test_member_of_unannounced_channel_is_forgotten_when_gone() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, added("7"), NOW)
    hooks.apply(APP, removed("7"), NOW)
    hooks.due(NOW + HOLD)
    assert len(hooks) == 0


# -- announcer: a shard's report (restore) ----------------------------------------------------


def all_owned(app: str, channel: str) -> bool:
    return True


def test_restore_vacates_absent_channel_after_hold() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("gone"), NOW)
    assert hooks.restore(all_owned, {}, NOW, announce=True) == []
    assert hooks.occupied(APP, "gone")
    assert hooks.due(NOW + HOLD) == announced(vacated("gone"))


def test_restore_announces_what_was_missing() -> None:
    hooks = Announcer(HOLD)
    out = hooks.restore(all_owned, {APP: {"c": None, "presence-x": ["7", 8]}}, NOW,
                        announce=True)
    assert out == announced(occupied("c"), occupied("presence-x"), added("7"), added("8"))


def test_restore_of_matching_state_announces_nothing() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("presence-x"), NOW)
    hooks.apply(APP, added("7"), NOW)
    assert hooks.restore(all_owned, {APP: {"presence-x": [7]}}, NOW, announce=True) == []
    assert hooks.next_due() is None


def test_restore_removes_missing_users_after_hold() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("presence-x"), NOW)
    hooks.apply(APP, added("7"), NOW)
    hooks.apply(APP, added("8"), NOW)
    assert hooks.restore(all_owned, {APP: {"presence-x": ["8"]}}, NOW, announce=True) == []
    assert hooks.due(NOW + HOLD) == announced(removed("7"))


def test_restore_cancels_a_pending_hold() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("c"), NOW)
    hooks.apply(APP, vacated("c"), NOW)
    assert hooks.restore(all_owned, {APP: {"c": None}}, NOW + 1000, announce=True) == []
    assert hooks.due(NOW + HOLD) == []


def test_restore_leaves_channels_of_other_shards_alone() -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("theirs"), NOW)
    hooks.apply(APP, occupied("mine"), NOW)

    def owned(app: str, channel: str) -> bool:
        return channel.startswith("mine")

    state = {APP: {"mine-new": None, "theirs-new": None}}
    assert hooks.restore(owned, state, NOW, announce=True) == announced(occupied("mine-new"))
    assert hooks.due(NOW + HOLD) == announced(vacated("mine"))
    assert hooks.occupied(APP, "theirs") and not hooks.occupied(APP, "theirs-new")


def test_silent_restore_adopts_what_it_never_heard_of_and_departs_the_rest() -> None:
    """A restarted hooks process: what the report has and it never heard of was there
    before it started (silent); what it heard of since and the report lacks departs."""
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("gone"), NOW)
    users: list[str | int] = ["7", 7]
    assert hooks.restore(all_owned, {APP: {"c": None, "presence-x": users}}, NOW,
                         announce=False) == []
    assert hooks.occupied(APP, "c") and hooks.present(APP, "presence-x") == {"7"}
    assert hooks.apply(APP, added("7"), NOW) == []
    assert hooks.due(NOW + HOLD) == announced(vacated("gone"))


def test_silent_restore_cancels_holds_of_reported_channels_only() -> None:
    hooks = Announcer(HOLD)
    for ch in ("mine", "theirs"):
        hooks.apply(APP, occupied(ch), NOW)
        hooks.apply(APP, vacated(ch), NOW)

    def owned(app: str, channel: str) -> bool:
        return channel == "mine"

    hooks.restore(owned, {APP: {"mine": None}}, NOW, announce=False)
    assert hooks.due(NOW + HOLD) == announced(vacated("theirs"))
    assert hooks.occupied(APP, "mine")


@pytest.mark.parametrize("state", [
    {APP: {"c": "7"}},
    {APP: {"c": [None]}},
    {APP: ["c"]},
    {APP: {"": None}},
])
def test_unreadable_report_changes_nothing(state: Any) -> None:
    hooks = Announcer(HOLD)
    hooks.apply(APP, occupied("c"), NOW)
    with pytest.raises(BadTransition):
        hooks.restore(all_owned, {APP: {"a": None}, **state}, NOW, announce=False)
    assert hooks.occupied(APP, "c") and not hooks.occupied(APP, "a")


# -- deliveries -------------------------------------------------------------------------------


def deliveries(jitter: float = 0.0, **settings: int) -> Deliveries:
    return Deliveries(DeliverySettings(**settings), lambda: jitter)


def ev(n: int) -> dict[str, Any]:
    return {"name": "cache_miss", "channel": f"cache-{n}"}


def fill(queue: Deliveries, hook: Target, count: int, now_ms: int = NOW, start: int = 0) -> None:
    for n in range(start, start + count):
        assert queue.add(hook, ev(n), now_ms)


def test_batch_waits_for_the_delay() -> None:
    queue, hook = deliveries(), target()
    fill(queue, hook, 3)
    assert queue.due(NOW + 249) == []
    [post] = queue.due(NOW + 250)
    assert post.events == (ev(0), ev(1), ev(2))
    assert (post.attempt, post.first_try_ms) == (1, NOW + 250)


def test_delay_counts_from_the_oldest_event() -> None:
    queue, hook = deliveries(), target()
    fill(queue, hook, 1)
    fill(queue, hook, 1, NOW + 200, start=1)
    [post] = queue.due(NOW + 250)
    assert len(post.events) == 2


def test_full_batch_goes_at_once() -> None:
    queue, hook = deliveries(batch_events=3), target()
    fill(queue, hook, 3)
    [post] = queue.due(NOW)
    assert len(post.events) == 3


def test_batch_holds_at_most_batch_events() -> None:
    queue, hook = deliveries(batch_events=3), target()
    fill(queue, hook, 5)
    [post] = queue.due(NOW)
    assert post.events == (ev(0), ev(1), ev(2))


def test_one_post_in_flight_per_target_in_order() -> None:
    queue, hook = deliveries(batch_events=2), target()
    fill(queue, hook, 5)
    [first] = queue.due(NOW)
    assert queue.due(NOW + 1000) == []
    queue.finished(first.id, True, NOW + 1000)
    [second] = queue.due(NOW + 1000)
    assert second.events == (ev(2), ev(3)) and second.id > first.id
    queue.finished(second.id, True, NOW + 1000)
    [third] = queue.due(NOW + 1000)
    assert third.events == (ev(4),)


def test_targets_post_independently() -> None:
    queue, one, two = deliveries(), target("https://a/"), target("https://b/")
    fill(queue, one, 1)
    fill(queue, two, 1)
    posts = queue.due(NOW + 250)
    assert [post.target for post in posts] == [one, two]
    assert len({post.id for post in posts}) == 2


def test_delivered_post_frees_the_queue() -> None:
    queue, hook = deliveries(), target()
    fill(queue, hook, 2)
    [post] = queue.due(NOW + 250)
    assert queue.stats()["in_flight"] == 1
    queue.finished(post.id, True, NOW + 300)
    assert queue.stats() == {
        "queued_events": 0, "queued_bytes": 0, "in_flight": 0, "delivered": 2, "posts_ok": 1,
        "posts_failed": 0, "retries": 0, "dropped_queue_full": 0, "dropped_expired": 0,
        "dropped_removed": 0}
    assert queue.next_due(NOW + 300) is None


def retry_gaps(jitter: float) -> tuple[list[int], Deliveries]:
    """Fail every try the moment it ends; the gaps between the tries, until dropped."""
    queue, hook = deliveries(jitter=jitter), target()
    fill(queue, hook, 1, 0)
    [post] = queue.due(250)
    now, gaps = 250, list[int]()
    while True:
        queue.finished(post.id, False, now)
        at = queue.next_due(now)
        if at is None:
            return gaps, queue
        assert queue.due(at - 1) == []
        [post] = queue.due(at)
        gaps.append(at - now)
        now = at


def test_retry_schedule_with_least_jitter() -> None:
    gaps, queue = retry_gaps(0.0)
    assert gaps == [800, 1600, 3200, 6400, 12_800, 25_600] + [48_000] * 5
    assert sum(gaps) <= 300_000 < sum(gaps) + 48_000
    assert queue.stats()["retries"] == 11 and queue.stats()["dropped_expired"] == 1


def test_retry_schedule_with_most_jitter() -> None:
    gaps, queue = retry_gaps(1.0)
    assert gaps == [1200, 2400, 4800, 9600, 19_200, 38_400] + [72_000] * 3
    assert queue.stats()["posts_failed"] == 10


def test_retry_is_the_same_batch_and_new_events_wait() -> None:
    queue, hook = deliveries(batch_events=2), target()
    fill(queue, hook, 2)
    [first] = queue.due(NOW)
    queue.finished(first.id, False, NOW + 10)
    fill(queue, hook, 2, NOW + 20, start=2)
    assert queue.next_due(NOW + 20) == NOW + 810
    [retry] = queue.due(NOW + 810)
    assert (retry.events, retry.attempt, retry.first_try_ms) == (first.events, 2, NOW)
    queue.finished(retry.id, True, NOW + 900)
    [after] = queue.due(NOW + 900)
    assert after.events == (ev(2), ev(3)) and after.attempt == 1


def test_expired_batch_is_dropped_and_the_next_goes() -> None:
    queue, hook = deliveries(batch_events=1, retry_for_ms=2000), target()
    fill(queue, hook, 2)
    [first] = queue.due(NOW)
    queue.finished(first.id, False, NOW)  # retry at +800
    [retry] = queue.due(NOW + 800)
    queue.finished(retry.id, False, NOW + 800)  # retry at +2400 > +2000: dropped
    [after] = queue.due(NOW + 800)
    assert after.events == (ev(1),) and after.attempt == 1
    assert queue.stats()["dropped_expired"] == 1 and queue.stats()["queued_events"] == 1


def test_full_queue_drops_the_event() -> None:
    size = len(json.dumps(ev(0), separators=(",", ":")))
    queue, hook = deliveries(max_bytes=2 * size), target()
    fill(queue, hook, 2)
    assert not queue.add(hook, ev(2), NOW)
    assert queue.stats()["dropped_queue_full"] == 1
    assert queue.stats()["queued_bytes"] == 2 * size


def test_queue_bound_is_shared_by_targets() -> None:
    size = len(json.dumps(ev(0), separators=(",", ":")))
    queue = deliveries(max_bytes=size)
    assert queue.add(target("https://a/"), ev(0), NOW)
    assert not queue.add(target("https://b/"), ev(1), NOW)


def test_delivery_frees_room_in_the_queue() -> None:
    size = len(json.dumps(ev(0), separators=(",", ":")))
    queue, hook = deliveries(max_bytes=size), target()
    fill(queue, hook, 1)
    [post] = queue.due(NOW + 250)
    queue.finished(post.id, True, NOW + 300)
    assert queue.add(hook, ev(1), NOW + 300)


def test_retarget_drops_queues_of_removed_targets() -> None:
    queue, kept, gone = deliveries(), target("https://a/"), target("https://b/")
    fill(queue, kept, 1)
    fill(queue, gone, 2)
    queue.retarget([kept])
    assert queue.stats()["dropped_removed"] == 2
    assert queue.stats()["queued_events"] == 1
    assert [post.target for post in queue.due(NOW + 250)] == [kept]


def test_post_of_a_removed_target_is_ignored_when_it_ends() -> None:
    queue, hook = deliveries(), target()
    fill(queue, hook, 1)
    [post] = queue.due(NOW + 250)
    queue.retarget([])
    assert queue.stats()["in_flight"] == 0 and queue.stats()["queued_bytes"] == 0
    fill(queue, hook, 1, NOW + 300, start=1)
    queue.finished(post.id, True, NOW + 400)
    assert queue.stats()["delivered"] == 0
    [again] = queue.due(NOW + 550)
    assert again.events == (ev(1),)


def test_unknown_post_is_ignored() -> None:
    queue = deliveries()
    queue.finished(99, False, NOW)
    assert queue.stats()["posts_failed"] == 0


def test_next_due() -> None:
    queue, one, two = deliveries(batch_events=2), target("https://a/"), target("https://b/")
    assert queue.next_due(NOW) is None
    fill(queue, one, 1)
    assert queue.next_due(NOW + 10) == NOW + 250
    fill(queue, two, 2, NOW + 10)
    assert queue.next_due(NOW + 10) == NOW + 10
    [post] = queue.due(NOW + 10)
    assert queue.next_due(NOW + 10) == NOW + 250
    queue.due(NOW + 250)
    assert queue.next_due(NOW + 250) is None  # both in flight
    queue.finished(post.id, False, NOW + 300)
    assert queue.next_due(NOW + 300) == NOW + 1100


def test_post_carries_what_a_try_needs() -> None:
    queue, hook = deliveries(), target()
    fill(queue, hook, 1)
    [post] = queue.due(NOW + 250)
    assert post == Post(post.id, hook, (ev(0),), 1, NOW + 250)


# -- the request of one try -------------------------------------------------------------------


def test_request_body_is_compact_and_stamped() -> None:
    body, _ = request(target(), [occupied(), added("7")], NOW)
    assert body == (b'{"time_ms":1700000000000,"events":[{"name":"channel_occupied",'
                    b'"channel":"c"},{"name":"member_added","channel":"presence-x",'
                    b'"user_id":"7"}]}')


def test_request_headers_extra_first_and_never_override() -> None:
    hook = target(headers=(("X-Env", "prod"), ("content-TYPE", "text/plain"),
                           ("x-pusher-signature", "forged"), ("X-Pusher-Key", "other")))
    body, headers = request(hook, [occupied()], NOW)
    assert headers == [("X-Env", "prod"), ("Content-Type", "application/json"),
                       ("X-Pusher-Key", hook.key),
                       ("X-Pusher-Signature", signature(hook.secret, body))]


def test_signature_verifies_with_hmac() -> None:
    hook = target()
    body, headers = request(hook, [occupied()], NOW)
    expected = hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
    assert dict(headers)["X-Pusher-Signature"] == expected


def test_each_try_is_restamped_and_resigned() -> None:
    hook = target()
    first, first_headers = request(hook, [occupied()], NOW)
    second, second_headers = request(hook, [occupied()], NOW + 1000)
    assert json.loads(second)["time_ms"] == NOW + 1000
    assert dict(first_headers)["X-Pusher-Signature"] != dict(second_headers)["X-Pusher-Signature"]


def test_official_python_sdk_accepts_the_webhook() -> None:
    hook = target()
    sdk = pusher.Pusher(app_id=hook.app, key=hook.key, secret=hook.secret)
    now_ms = int(time.time() * 1000)  # the SDK refuses time_ms over 5 minutes from its clock
    body, headers = request(hook, [occupied(), added(7)], now_ms)
    sent = dict(headers)
    data = sdk.validate_webhook(sent["X-Pusher-Key"], sent["X-Pusher-Signature"], body)
    assert data == {"time_ms": now_ms, "events": [occupied(), added(7)]}
    assert sdk.validate_webhook(hook.key, "0" * 64, body) is None
