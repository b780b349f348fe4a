"""Arbitrary input to the pure cores: only the documented error types come out (errors.py).

ARCHITECTURE.md 6: "no input crashes a process". Each parser a client or an app server can
reach is fed arbitrary text and bytes (lone surrogates, invalid UTF-8, deep nesting, huge
numbers included), and must answer with a value of the documented shape or raise one of the
errors its docstring names, nothing else. The channel table's invariants under any sequence
of operations, with arbitrary requests and replays, are checked at the end.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pushy_shard import errors
from pushy_shard.core import link, protocol, sockjs
from pushy_shard.core.auth import (
    canonical_json,
    channel_token,
    parse_json_like_js,
    php_json,
    sha256_hex,
    signatures_equal,
    timestamp_in_window,
    trigger_key,
)
from pushy_shard.core.channels import (
    Broadcast,
    ChannelTable,
    Joined,
    Left,
    MemberState,
    Reply,
)
from pushy_shard.core.session import TABLE, Event, Session, State
from pushy_shard.core.trigger import Trigger, js_parse_int, verify_trigger
from pushy_shard.errors import (
    BodyTooLarge,
    BogusMessage,
    ChannelNameRefused,
    ChannelNotFound,
    InvalidBody,
    InvalidChannel,
    InvalidCredentials,
    MessageTooLarge,
    MissingParameters,
    NotSubscribed,
    SessionStateError,
    TimestampOutOfBounds,
    UnsupportedContentType,
)

SECRET = "secret"
NOW = 1_700_000_000.0

# every code point, lone surrogates included (a JavaScript client can send them)
any_text = st.text(alphabet=st.characters(exclude_categories=()))
json_alphabet = '{}[]":,. 0123456789-+eEtrufalsnNI\\/\ud800\udc00é\x00\x1f commandevtdhi'
json_ish = st.text(alphabet=json_alphabet)
finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=15,
)
# pathological shapes no random generator finds
NASTY = [
    "[" * 5000, "{" * 5000, '{"a":' * 3000, "[" * 100_000 + "]" * 100_000,
    "1" * 5000, "-" + "9" * 5000, "1e999999", "NaN", "Infinity", "-Infinity", '"\\ud800"',
    '{"command":"subscribe","data":{"channel":"\\udfff"}}', "\ufeff{}", "\x00",
]


def utf16_normal(text: str) -> str:
    """`text` as JavaScript holds it: a surrogate pair is one astral character."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def utf8_ish(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# -- protocol.parse_client_message (PROTOCOL.md 3.3) ------------------------------------------

PARSE_ERRORS = (BogusMessage, InvalidChannel, ChannelNameRefused, MessageTooLarge)


def check_client_message(text: str, max_bytes: int = protocol.MAX_MESSAGE_BYTES) -> None:
    try:
        command = protocol.parse_client_message(text, max_bytes=max_bytes)
    except PARSE_ERRORS as exc:
        assert type(exc) in PARSE_ERRORS
        assert exc.payload()["code"] in {"100", "301", "413"}
        return
    assert len(utf8_ish(text)) <= max_bytes
    if command is not None:
        assert command.name == command.name.lower()
        assert isinstance(command.data, dict)
        assert command.channel is None or 0 < len(command.channel) <= protocol.MAX_CHANNEL_LENGTH
        # an event naming it encodes to valid UTF-8 JSON (lone surrogates as \\u escapes)
        json.loads(protocol.event("x", command.data, command.channel).decode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(any_text | json_ish, st.integers(0, 200))
def test_client_message_raises_only_its_documented_errors(text: str, max_bytes: int) -> None:
    check_client_message(text)
    check_client_message(text, max_bytes=max_bytes)


@pytest.mark.parametrize("text", NASTY)
def test_pathological_client_messages(text: str) -> None:
    check_client_message(text)
    check_client_message(text, max_bytes=len(text) * 4)


@settings(max_examples=300, deadline=None)
@given(command=json_values, data=json_values, event=st.none() | json_values)
def test_command_objects_with_any_fields(command: object, data: object, event: object) -> None:
    message: dict[str, object] = {"command": command, "data": data}
    if event is not None:
        message["event"] = event
    check_client_message(json.dumps(message))


# -- sockjs: client frames, xhr_send / jsonp_send bodies, callbacks --------------------------


@settings(max_examples=200, deadline=None)
@example("\ud800")
@example('["\\ud800"]')
@example(b"\xff\xfe")
@example(b'["\xc3"]')
@given(any_text | json_ish | st.binary() | json_ish.map(utf8_ish))
def test_client_frame_is_a_list_of_strings_or_a_frame_error(payload: str | bytes) -> None:
    try:
        messages = sockjs.decode_client_frame(payload)
    except errors.SockJSFrameError:
        return
    assert isinstance(messages, list) and all(isinstance(m, str) for m in messages)


@settings(max_examples=300, deadline=None)
@example(["\ud800", "a\udfffb"])
@given(st.lists(any_text, max_size=5))
def test_client_frame_of_strings_round_trips(messages: list[str]) -> None:
    """What a JavaScript client sends (JSON.stringify escapes lone surrogates) comes back."""
    text = json.dumps(messages)  # ASCII-escaped: lone surrogates as \\udxxx
    assert sockjs.decode_client_frame(text) == [utf16_normal(m) for m in messages]
    assert sockjs.decode_send_payload(text) == [utf16_normal(m) for m in messages]


SEND_ERRORS = (errors.PayloadExpected, errors.BrokenJSON)


@settings(max_examples=200, deadline=None)
@example(b"[" * 100_000, False)
@example(b'["\xed\xa0\x80"]', False)  # a surrogate as UTF-8 bytes
@example(b"d=%5B%22%5Cud800%22%5D", True)
@given(st.binary() | json_ish.map(utf8_ish) | any_text, st.booleans())
def test_send_bodies_raise_only_payload_expected_or_broken_json(body: bytes | str,
                                                               form: bool) -> None:
    for decode in (
        lambda: sockjs.decode_send_payload(body),
        lambda: sockjs.decode_jsonp_send(body if isinstance(body, bytes) else utf8_ish(body),
                                         form),
    ):
        try:
            messages = decode()
        except SEND_ERRORS as exc:
            assert exc.args == (exc.message,)  # the 500 body SockJS answers
            continue
        assert isinstance(messages, list) and all(isinstance(m, str) for m in messages)


@settings(max_examples=300, deadline=None)
@given(st.none() | any_text)
def test_callback_names_are_checked(value: str | None) -> None:
    try:
        name = sockjs.callback_name(value)
    except (errors.CallbackRequired, errors.InvalidCallback):
        return
    # what is written into a script unescaped is a plain dotted name
    assert re.fullmatch(r"[A-Za-z0-9_.\-]{1,32}", name)
    sockjs.htmlfile_prelude(name)
    sockjs.jsonp_frame(name, b"o")


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_any_message_quotes_to_valid_utf8_json(message: str) -> None:
    frame = sockjs.message_frame([sockjs.quote(message)])
    decoded = json.loads(frame[1:].decode("utf-8"))
    assert len(decoded) == 1
    for wrap in (sockjs.eventsource_frame, sockjs.htmlfile_frame, sockjs.xhr_frame):
        wrap(frame).decode("utf-8")


# -- session table ---------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Event)), st.floats(0, 1e6)), max_size=50))
def test_session_any_event_sequence(events: list[tuple[Event, float]]) -> None:
    """Events the table lacks raise SessionStateError and change nothing; others follow it."""
    session = Session(5.0)
    for event, now in events:
        before = (session.state, session.deadline, list(session.queue))
        if event not in TABLE[session.state]:
            with pytest.raises(SessionStateError):
                session.handle(event, now)
            assert (session.state, session.deadline, list(session.queue)) == before
            continue
        expected_state, expected_do = TABLE[session.state][event]
        assert session.handle(event, now) == expected_do
        assert session.state is expected_state
        if session.state is State.GONE:
            assert session.deadline is None and not session.queue


# -- auth ------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(any_text | json_ish | st.binary() | json_ish.map(utf8_ish))
def test_parse_json_like_js_raises_only_value_error(text: str | bytes) -> None:
    try:
        value = parse_json_like_js(text)
    except ValueError:
        return
    # what parses can be signed both ways, and its canonical JSON parses again
    parse_json_like_js(canonical_json(value))
    parse_json_like_js(php_json(value))


@pytest.mark.parametrize("text", NASTY)
def test_parse_json_like_js_pathological(text: str) -> None:
    try:
        value = parse_json_like_js(text)
    except ValueError:
        return
    canonical_json(value)
    php_json(value)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_canonical_and_php_json_accept_every_json_value(value: object) -> None:
    canon = canonical_json(value)
    assert isinstance(canon, str)
    php = php_json(value)
    assert php.isascii()  # json_encode escapes every non-ASCII character


@settings(max_examples=300, deadline=None)
@given(any_text, any_text, st.none() | json_values, any_text)
def test_tokens_and_keys_are_hex_for_any_text(sid: str, channel: str, data: object,
                                              event: str) -> None:
    token = channel_token(sid, channel, data, SECRET)
    assert re.fullmatch("[0-9a-f]{64}", token)
    assert re.fullmatch("[0-9a-f]{64}", trigger_key(channel, event, 1, "{}", SECRET))
    assert re.fullmatch("[0-9a-f]{64}", sha256_hex(channel))
    assert signatures_equal(token, token)
    assert signatures_equal(token, channel) is (token == channel)


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_js_parse_int_any_text(text: str) -> None:
    value = js_parse_int(text)
    assert value is None or isinstance(value, int)
    if value is not None:
        assert isinstance(timestamp_in_window(value, NOW), bool)


@settings(max_examples=200, deadline=None)
@given(st.integers(), st.floats(-1e12, 1e12))
def test_timestamp_window_is_symmetric(timestamp: int, now: float) -> None:
    inside = timestamp_in_window(timestamp, now)
    assert inside is (abs(int((now + 0.5) // 1) - timestamp) < 600)


# -- trigger.verify_trigger (PROTOCOL.md 4.3) -------------------------------------------------

TRIGGER_ERRORS = (MissingParameters, TimestampOutOfBounds, BodyTooLarge, UnsupportedContentType,
                  InvalidBody, InvalidCredentials)
query_keys = st.sampled_from(["event", "timestamp", "auth_key", "socket_id"]) | any_text
query_values = any_text | st.sampled_from(
    [str(int(NOW)), "0x6553f100", " 1700000000abc", "", "NaN", "1" * 5000, "-1700000000"])
content_types = st.none() | any_text | st.sampled_from([
    "application/json", "application/x-www-form-urlencoded", "APPLICATION/JSON; charset=x",
    "text/plain", "application/vnd.x+json", ";", "",
])
bodies = st.binary(max_size=200) | json_ish.map(utf8_ish) | json_values.map(
    lambda v: json.dumps(v).encode()) | st.sampled_from([t.encode() for t in NASTY])


def check_trigger(channel: str, query: dict[str, str], body: bytes, content_type: str | None,
                  max_body: int = 65536) -> Trigger | None:
    try:
        trigger = verify_trigger(channel=channel, query=query, body=body,
                                 content_type=content_type, secret=SECRET, now=NOW,
                                 max_body=max_body)
    except TRIGGER_ERRORS as exc:
        assert type(exc) in TRIGGER_ERRORS
        assert exc.status in {400, 403, 413, 415}
        key = query.get("auth_key", "")
        if len(key) >= 16:  # the key given is never echoed
            assert key not in json.dumps(exc.body(), ensure_ascii=False)
        return None
    assert trigger.event and trigger.channel == channel
    # the accepted data can be delivered: the event encodes
    json.loads(protocol.event(trigger.event, trigger.data, trigger.channel).decode("utf-8"))
    return trigger


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=any_text, query=st.dictionaries(query_keys, query_values, max_size=6),
       body=bodies, content_type=content_types, max_body=st.sampled_from([0, 16, 65536]))
def test_arbitrary_trigger_requests_raise_only_trigger_errors(
        channel: str, query: dict[str, str], body: bytes, content_type: str | None,
        max_body: int) -> None:
    check_trigger(channel, query, body, content_type, max_body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(channel=any_text.filter(bool), event=any_text.filter(bool), data=json_values,
       socket_id=st.none() | any_text)
def test_correctly_signed_json_triggers_are_accepted(channel: str, event: str, data: object,
                                                     socket_id: str | None) -> None:
    """The other half: fuzzed but correctly signed requests get through, with their data."""
    assume(isinstance(data, dict | list))
    body = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        assume(False)  # lone surrogates cannot travel as UTF-8; covered above as refusals
    key = trigger_key(channel, event, int(NOW), canonical_json(data), SECRET)
    query = {"event": event, "timestamp": str(int(NOW)), "auth_key": key}
    if socket_id is not None:
        query["socket_id"] = socket_id
    trigger = check_trigger(channel, query, body, "application/json")
    assert trigger is not None
    assert trigger.data == data and trigger.socket_id == (socket_id or None)


# -- ChannelTable under arbitrary operations (PROTOCOL.md 3, 5; ARCHITECTURE.md 6) -----------

FRONTS = (0, 1, 2)
SIDS = tuple(f"s{i}" for i in range(5))
CHANNELS = ("room", "private-a", "PRIVATE-A", "private-b", "x" * 200)
presence_data = st.none() | st.just("absent") | json_values | st.sampled_from(
    ['{"name":"x"}', "x" * 3000, json.dumps({"big": "y" * 3000}), "\ud800"])


class AnyOperationMachine(RuleBasedStateMachine):
    """No model of who should be where: only the invariants, under requests with any fields,
    fronts that restart, stall and come back (announce), and shards that restart.

    Each front's view is rebuilt from the effects (Joined/Left) as the front would, and is
    what it replays; after every step the table must equal the union of the fronts' views.
    """

    def __init__(self) -> None:
        super().__init__()
        self.table = ChannelTable(SECRET)
        self.ids = itertools.cycle(f"{i:04x}" for i in range(7))
        self.now = 1_000
        self.known: dict[int, dict[tuple[str, str], MemberState]] = {f: {} for f in FRONTS}
        self.front_of: dict[str, int] = {}

    def perform(self, effects: list[Any]) -> None:
        for effect in effects:
            if effect.message is not None:
                json.loads(effect.message.decode("utf-8"))
            if isinstance(effect, Joined):
                self.known[effect.front][(effect.member.key, effect.sid)] = effect.member
            elif isinstance(effect, Left):
                del self.known[effect.front][(effect.key, effect.sid)]
            elif isinstance(effect, Broadcast):
                assert set(effect.fronts) <= set(FRONTS)
                event = orjson.loads(effect.message)["event"]
                assert event in {protocol.PRESENCE_ADD, protocol.PRESENCE_QUIT}
            else:
                assert isinstance(effect, Reply)

    @rule(sid=st.sampled_from(SIDS), front=st.sampled_from(FRONTS),
          channel=st.sampled_from(CHANNELS), data=presence_data,
          auth=st.sampled_from(["good", "good", "bad", "none", "number"]))
    def subscribe(self, sid: str, front: int, channel: str, data: object, auth: str) -> None:
        front = self.front_of.setdefault(sid, front)  # a connection lives on one front
        request: dict[str, Any] = {}
        if data != "absent":
            request["data"] = data
        if auth == "good":
            request["auth"] = channel_token(sid, channel, request.get("data"), SECRET)
        elif auth == "bad":
            request["auth"] = "0" * 64
        elif auth == "number":
            request["auth"] = 12
        self.now += 1
        effects = self.table.subscribe(front=front, sid=sid, channel=channel, request=request,
                                       now_ms=self.now, new_member_id=lambda: next(self.ids))
        self.perform(effects)

    @rule(sid=st.sampled_from(SIDS), channel=st.sampled_from(CHANNELS))
    def unsubscribe(self, sid: str, channel: str) -> None:
        front = self.front_of.get(sid, 0)
        try:
            effects = self.table.unsubscribe(front=front, sid=sid, channel=channel)
        except (ChannelNotFound, NotSubscribed):
            return
        self.perform(effects)

    @rule(sid=st.sampled_from(SIDS))
    def disconnect(self, sid: str) -> None:
        front = self.front_of.pop(sid, None)
        if front is None:
            return
        keys = [key for (key, s) in self.known[front] if s == sid]
        self.perform(self.table.leave(sid, keys))

    @rule(front=st.sampled_from(FRONTS))
    def front_restarts(self, front: int) -> None:
        for sid in [s for s, f in self.front_of.items() if f == front]:
            del self.front_of[sid]
        self.perform(self.table.restore_front(front, []))
        assert self.known[front] == {}

    @rule(front=st.sampled_from(FRONTS))
    def front_stalls_and_comes_back(self, front: int) -> None:
        """Given up (its members leave), then its replay brings them back with presence-add."""
        held = dict(self.known[front])
        self.perform(self.table.restore_front(front, []))
        assert self.known[front] == {}
        self.known[front] = held  # the front itself never forgot them
        effects = self.table.restore_front(front, list(held.values()), announce=True)
        assert not any(isinstance(e, Left | Joined) for e in effects)
        self.perform(effects)

    @rule(order=st.permutations(FRONTS))
    def shard_restarts(self, order: list[int]) -> None:
        self.table = ChannelTable(SECRET)
        for front in order:
            # through the link codec, as the front replays them
            replay = [MemberState.from_wire(link.load(link.body(m.to_wire())))
                      for m in self.known[front].values()]
            assert self.table.restore_front(front, replay) == []

    @rule(channel=st.sampled_from(CHANNELS), exclude=st.none() | st.sampled_from(SIDS),
          data=json_values)
    def trigger(self, channel: str, exclude: str | None, data: object) -> None:
        key = channel.lower()
        delivered, effects = self.table.trigger(key, "e", data, exclude)
        assert delivered is (key in self.table.channels)
        for effect in effects:
            assert isinstance(effect, Broadcast)
            assert set(effect.fronts) == set(self.table.channels[key].front_counts)
            json.loads(effect.message.decode("utf-8"))

    @invariant()
    def no_empty_channels(self) -> None:
        assert all(chan.members for chan in self.table.channels.values())

    @invariant()
    def presence_list_equals_members(self) -> None:
        for chan in self.table.channels.values():
            records = chan.presence_list()
            if chan.presence:
                assert [r["memberId"] for r in records] == [
                    m.state.member_id for m in chan.members.values()]
                assert all(len(protocol.dumps(m.state.record)) <= 2048 + 100
                           for m in chan.members.values())
                stamps = [r["subscribed"] for r in records]
                assert stamps == sorted(stamps)  # join order
            else:
                assert records == []

    @invariant()
    def member_ids_unique(self) -> None:
        for chan in self.table.channels.values():
            ids = [m.state.member_id for m in chan.members.values()]
            assert len(ids) == len(set(ids)) and set(ids) == chan.member_ids

    @invariant()
    def front_counts_match(self) -> None:
        for chan in self.table.channels.values():
            assert chan.front_counts == dict(Counter(m.front for m in chan.members.values()))

    @invariant()
    def table_is_what_the_fronts_know(self) -> None:
        in_table = {(key, sid): (member.front, member.state)
                    for key, chan in self.table.channels.items()
                    for sid, member in chan.members.items()}
        known = {k: (front, state) for front, items in self.known.items()
                 for k, state in items.items()}
        assert in_table == known


AnyOperationMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAnyOperations = AnyOperationMachine.TestCase
