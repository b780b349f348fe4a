"""The SockJS HTTP session table (core/session.py), driven with explicit times.

Each test names the sockjs-protocol-0.3.3 behaviour it checks; no event loop, no sockets.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.session import (
    MAX_QUEUED_BYTES,
    MAX_QUEUED_MESSAGES,
    OPEN_STATES,
    TABLE,
    Do,
    Event,
    Session,
    State,
    owner_front,
)
from pushy_shard.errors import SessionStateError

DELAY = 5.0


def opened(now: float = 0.0) -> Session:
    """A session whose creating request got `o` and is still attached."""
    session = Session(DELAY)
    assert session.handle(Event.ATTACH, now) is Do.OPEN
    return session


def waiting(now: float = 0.0) -> Session:
    """Open, between two polls."""
    session = opened(now)
    assert session.handle(Event.DETACH, now) is Do.CLOCK
    return session


class TestTableShape:
    def test_every_state_has_a_row(self) -> None:
        assert set(TABLE) == set(State)

    def test_only_attach_leaves_new(self) -> None:
        assert set(TABLE[State.NEW]) == {Event.ATTACH}

    def test_gone_ignores_everything_but_a_new_attach(self) -> None:
        # a request naming a forgotten session creates a new one instead
        assert Event.ATTACH not in TABLE[State.GONE]
        assert all(entry == (State.GONE, Do.NOTHING) for entry in TABLE[State.GONE].values())

    def test_open_states_are_the_ones_that_dispatch_client_messages(self) -> None:
        dispatching = {state for state, row in TABLE.items()
                       if Event.CLIENT in row and row[Event.CLIENT][1] & Do.DISPATCH}
        assert dispatching == OPEN_STATES - {State.NEW}

    def test_leave_happens_on_the_way_out_of_the_open_states_only(self) -> None:
        for state, row in TABLE.items():
            for _event, (next_state, do) in row.items():
                if do & Do.LEAVE:
                    assert state in OPEN_STATES and next_state not in OPEN_STATES

    def test_every_transition_out_of_the_open_states_leaves(self) -> None:
        # a Pushy connection never ends without leaving its channels
        for state in OPEN_STATES:
            for _event, (next_state, do) in TABLE[state].items():
                if next_state not in OPEN_STATES:
                    assert do & Do.LEAVE

    def test_missing_pairs_raise(self) -> None:
        with pytest.raises(SessionStateError):
            Session(DELAY).handle(Event.SEND, 0.0)
        with pytest.raises(SessionStateError):
            waiting().handle(Event.DETACH, 0.0)


class TestProtocol:
    def test_first_receiver_gets_the_open_frame(self) -> None:
        # Protocol.test_simpleSession: a new session answers `o` at once
        session = Session(DELAY)
        assert session.handle(Event.ATTACH, 0.0) is Do.OPEN
        assert session.state is State.RECEIVING
        assert session.deadline is None

    def test_second_receiver_is_refused_with_2010(self) -> None:
        session = opened()
        assert session.handle(Event.ATTACH, 1.0) is Do.REJECT
        assert session.state is State.RECEIVING  # the first receiver keeps the session

    def test_messages_queue_between_polls_and_flush_in_order(self) -> None:
        session = waiting()
        for n in range(3):
            assert session.handle(Event.SEND, 1.0) is Do.QUEUE
            assert session.enqueue(f'"m{n}"'.encode())
        assert session.handle(Event.ATTACH, 2.0) is Do.FLUSH
        assert session.take() == [b'"m0"', b'"m1"', b'"m2"']
        assert session.take() == []

    def test_messages_go_straight_to_an_attached_receiver(self) -> None:
        assert opened().handle(Event.SEND, 1.0) is Do.WRITE

    def test_client_messages_are_dispatched_while_open(self) -> None:
        assert opened().handle(Event.CLIENT, 1.0) is Do.DISPATCH
        assert waiting().handle(Event.CLIENT, 1.0) is Do.DISPATCH

    def test_heartbeat_only_with_a_receiver(self) -> None:
        assert opened().handle(Event.HEARTBEAT, 1.0) is Do.HEARTBEAT
        assert waiting().handle(Event.HEARTBEAT, 1.0) is Do.NOTHING


class TestDisconnectClock:
    def test_clock_starts_when_the_receiver_detaches(self) -> None:
        session = waiting(now=10.0)
        assert session.deadline == 10.0 + DELAY
        assert not session.expired(14.9)
        assert session.expired(15.0)

    def test_no_clock_while_receiving(self) -> None:
        session = waiting(now=0.0)
        session.handle(Event.ATTACH, 3.0)
        assert session.deadline is None
        assert not session.expired(1000.0)
        assert session.handle(Event.EXPIRE, 1000.0) is Do.NOTHING

    def test_each_poll_restarts_the_clock(self) -> None:
        session = waiting(now=0.0)
        session.handle(Event.ATTACH, 4.0)
        session.handle(Event.DETACH, 4.5)
        assert session.deadline == 4.5 + DELAY

    def test_client_sends_do_not_keep_a_session_alive(self) -> None:
        session = waiting(now=0.0)
        session.handle(Event.CLIENT, 4.0)
        assert session.deadline == DELAY

    def test_expiry_of_a_waiting_session_leaves_and_forgets(self) -> None:
        # a vanished client leaves its channels like a closed WebSocket
        session = waiting(now=0.0)
        assert session.handle(Event.EXPIRE, DELAY) == Do.LEAVE | Do.FORGET
        assert session.state is State.GONE
        assert session.deadline is None


class TestClose:
    def test_close_while_receiving_writes_the_close_frame(self) -> None:
        session = opened()
        do = session.handle(Event.CLOSE, 1.0)
        assert do == Do.CLOSE_FRAME | Do.LEAVE | Do.CLOCK
        assert session.state is State.CLOSING
        assert session.deadline == 1.0 + DELAY

    def test_close_while_waiting_leaves_now_and_answers_the_next_receiver(self) -> None:
        session = waiting()
        assert session.handle(Event.CLOSE, 1.0) == Do.LEAVE | Do.CLOCK
        # Protocol.test_closeSession: the close frame to every receiver, again and again
        for now in (2.0, 3.0):
            assert session.handle(Event.ATTACH, now) == Do.CLOSE_FRAME | Do.CLOCK
            assert session.deadline == now + DELAY

    def test_closing_drops_the_queue_and_new_messages(self) -> None:
        session = waiting()
        session.enqueue(b'"x"')
        session.handle(Event.CLOSE, 1.0)
        assert session.take() == []
        assert session.handle(Event.SEND, 1.0) is Do.NOTHING
        assert session.handle(Event.CLIENT, 1.0) is Do.NOTHING  # accepted, dropped

    def test_closing_session_is_forgotten_when_its_clock_runs_out(self) -> None:
        session = waiting()
        session.handle(Event.CLOSE, 1.0)
        assert session.handle(Event.EXPIRE, 1.0 + DELAY) is Do.FORGET
        assert session.state is State.GONE

    def test_second_close_changes_nothing(self) -> None:
        session = waiting()
        session.handle(Event.CLOSE, 1.0)
        assert session.handle(Event.CLOSE, 2.0) is Do.NOTHING

    def test_abort_of_the_receiver_ends_the_session(self) -> None:
        # HandlingClose.test_abort_xhr_*: closing and forgetting is one allowed answer
        session = opened()
        assert session.handle(Event.ABORT, 1.0) == Do.LEAVE | Do.FORGET
        assert session.state is State.GONE

    def test_gone_ignores_late_events(self) -> None:
        session = opened()
        session.handle(Event.ABORT, 1.0)
        for event in (Event.SEND, Event.CLIENT, Event.HEARTBEAT, Event.CLOSE, Event.EXPIRE):
            assert session.handle(event, 2.0) is Do.NOTHING


class TestQueueBound:
    def test_message_count_bound(self) -> None:
        session = waiting()
        for _ in range(MAX_QUEUED_MESSAGES):
            assert session.enqueue(b'"x"')
        assert not session.enqueue(b'"x"')
        assert len(session.queue) == MAX_QUEUED_MESSAGES

    def test_byte_bound(self) -> None:
        session = Session(DELAY, max_bytes=10)
        assert session.enqueue(b"12345")
        assert session.enqueue(b"67890")
        assert not session.enqueue(b"1")
        assert session.queued_bytes == 10
        session.take()
        assert session.queued_bytes == 0
        assert session.enqueue(b"1")

    def test_default_bounds(self) -> None:
        assert (MAX_QUEUED_MESSAGES, MAX_QUEUED_BYTES) == (1000, 1024 * 1024)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.binary(min_size=1, max_size=40), max_size=60))
    def test_queue_keeps_order_and_never_passes_its_bounds(self, messages: list[bytes]) -> None:
        session = Session(DELAY, max_messages=20, max_bytes=300)
        kept = [m for m in messages if session.enqueue(m)]
        assert len(session.queue) <= 20 and session.queued_bytes <= 300
        assert session.queued_bytes == sum(map(len, kept))
        assert session.take() == kept


class TestRandomWalk:
    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.sampled_from(list(Event)), max_size=40))
    def test_any_sequence_the_table_allows_keeps_the_invariants(self, events: list[Event]
                                                                ) -> None:
        session = Session(DELAY)
        session.handle(Event.ATTACH, 0.0)
        left = 0
        for step, event in enumerate(events, start=1):
            if event not in TABLE[session.state]:
                continue
            do = session.handle(event, float(step))
            left += bool(do & Do.LEAVE)
            # the clock runs exactly when no receiver is attached and it is not gone
            if session.state in (State.WAITING, State.CLOSING):
                assert session.deadline is not None
            else:
                assert session.deadline is None
            if not session.open:
                assert not session.queue
        assert left <= 1  # a Pushy connection leaves its channels once


class TestOwnerFront:
    def test_single_front_owns_everything(self) -> None:
        assert owner_front("abc", 1) == 0

    def test_stable_and_in_range(self) -> None:
        owners = {owner_front(f"session-{n}", 4) for n in range(200)}
        assert owners == {0, 1, 2, 3}
        assert owner_front("abc", 4) == owner_front("abc", 4)

    def test_known_value(self) -> None:
        # crc32, not the per-process salted hash(): every front must agree
        assert owner_front("abc", 7) == 0x352441C2 % 7
