"""pushy_shard.core.pusher_protocol against PUSHER.md 2-7, grouped by section."""

from __future__ import annotations

import json
import re
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pushy_shard.core import pusher_protocol as pp
from pushy_shard.core.pusher_protocol import (
    ClientEvent,
    Ignored,
    Member,
    Ping,
    Pong,
    Signin,
    Subscribe,
    Unsubscribe,
    parse,
    presence_member,
    signin_user,
)
from pushy_shard.errors import FrameError, InvalidPusherMessage, SubscriptionRefused

MAX = 64 * 1024


def frame(**fields: Any) -> str:
    return json.dumps(fields)


def refused(exc: pytest.ExceptionInfo[SubscriptionRefused]) -> tuple[str, int, str]:
    return exc.value.kind, exc.value.status, exc.value.message


# -- 2. Connection ---------------------------------------------------------------------------


class TestConnection:
    def test_connection_established_is_the_documented_frame(self) -> None:
        assert pp.connection_established("123.456", 120) == (
            b'{"event":"pusher:connection_established",'
            b'"data":"{\\"socket_id\\":\\"123.456\\",\\"activity_timeout\\":120}"}'
        )

    def test_connection_established_data_decodes_twice(self) -> None:
        outer = json.loads(pp.connection_established("1.2", 30))
        assert json.loads(outer["data"]) == {"socket_id": "1.2", "activity_timeout": 30}

    def test_ping_and_pong_have_object_data(self) -> None:
        assert pp.ping() == b'{"event":"pusher:ping","data":{}}'
        assert pp.pong() == b'{"event":"pusher:pong","data":{}}'

    def test_error_with_and_without_code(self) -> None:
        assert pp.error(None, "Invalid message") == (
            b'{"event":"pusher:error","data":{"code":null,"message":"Invalid message"}}'
        )
        assert pp.error(4001, "App key x not in this cluster") == (
            b'{"event":"pusher:error","data":{"code":4001,'
            b'"message":"App key x not in this cluster"}}'
        )

    def test_parse_ping_and_pong(self) -> None:
        assert parse('{"event":"pusher:ping","data":{}}', MAX) == Ping()
        assert parse('{"event":"pusher:ping"}', MAX) == Ping()
        assert parse('{"event":"pusher:pong","data":{}}', MAX) == Pong()

    @pytest.mark.parametrize("name", ["pusher:error", "pusher_internal:member_added", "x", "",
                                      "Pusher:ping", "client"])
    def test_other_events_are_ignored(self, name: str) -> None:
        assert parse(frame(event=name, data=[1]), MAX) == Ignored()

    @pytest.mark.parametrize("text", [
        "", "not json", "[]", '"pusher:ping"', "null", "1", '{"data":{}}', '{"event":null}',
        '{"event":1}', '{"event":["pusher:ping"]}', '{"event":"pusher:ping"', "NaN",
        '{"event":"pusher:ping","data":NaN}',
    ])
    def test_invalid_message(self, text: str) -> None:
        with pytest.raises(InvalidPusherMessage) as exc:
            parse(text, MAX)
        assert exc.value.message == "Invalid message"

    def test_too_large_counts_utf8_bytes(self) -> None:
        assert not pp.too_large("a" * 10, 10)
        assert pp.too_large("a" * 11, 10)
        assert not pp.too_large("é" * 5, 10)  # 2 bytes each
        assert pp.too_large("é" * 6, 10)
        assert pp.too_large("€" * 4, 10)  # 3 bytes each
        assert not pp.too_large("\ud800", 3)  # a lone surrogate counts, never raises
        assert pp.too_large("\ud800", 2)

    def test_parse_refuses_to_decode_what_too_large_refuses(self) -> None:
        text = frame(event="pusher:ping", data={"pad": "x" * 100})
        with pytest.raises(FrameError) as exc:
            parse(text, 50)
        assert exc.value.code == 1009

    @settings(max_examples=300, deadline=None)
    @given(st.one_of(
        st.text(),
        st.text(alphabet='{}[]":,0123456789.eE-+truefalsn \\u\ud800abcdefpusher:client-'),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
            lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        ).map(lambda v: json.dumps(v)),
        st.fixed_dictionaries({
            "event": st.sampled_from(["pusher:subscribe", "pusher:unsubscribe", "pusher:signin",
                                      "pusher:ping", "pusher:pong", "client-x", "other"]),
        }, optional={
            "channel": st.none() | st.integers() | st.text(),
            "data": st.none() | st.integers() | st.text() | st.dictionaries(
                st.sampled_from(["channel", "auth", "channel_data", "user_data"]),
                st.none() | st.integers() | st.text() | st.lists(st.integers())),
        }).map(lambda v: json.dumps(v)),
    ))
    @example('{"event":"client-x","channel":"c","data":' + "[" * 3000 + "]" * 3000 + "}")
    @example('{"event":"pusher:subscribe","data":"' + "[" * 3000 + '"}')
    @example('{"event":"client-x","channel":"c","data":1' + "0" * 5000 + "}")
    def test_arbitrary_text_raises_only_the_documented_errors(self, text: str) -> None:
        try:
            message = parse(text, MAX)
        except (InvalidPusherMessage, SubscriptionRefused):
            return
        assert isinstance(message, (Subscribe, Unsubscribe, Ping, Pong, Signin, ClientEvent,
                                    Ignored))


# -- 3. Channels and auth --------------------------------------------------------------------


class TestSubscribe:
    def test_private_subscribe(self) -> None:
        text = frame(event="pusher:subscribe",
                     data={"channel": "private-foobar", "auth": "key:sig"})
        assert parse(text, MAX) == Subscribe("private-foobar", "key:sig", None)

    def test_presence_subscribe_keeps_channel_data_as_received(self) -> None:
        channel_data = '{"user_id": 10, "user_info": {"name": "Mr. Channels"}}'  # Python SDK
        text = frame(event="pusher:subscribe",
                     data={"channel": "presence-c", "auth": "k:s", "channel_data": channel_data})
        message = parse(text, MAX)
        assert message == Subscribe("presence-c", "k:s", channel_data)
        assert isinstance(message, Subscribe) and message.refusal() is None

    def test_public_subscribe_with_empty_auth(self) -> None:
        assert parse('{"event":"pusher:subscribe","data":{"auth":"","channel":"my"}}',
                     MAX) == Subscribe("my", "", None)

    def test_null_fields_are_absent(self) -> None:
        text = frame(event="pusher:subscribe",
                     data={"channel": "c", "auth": None, "channel_data": None})
        assert parse(text, MAX) == Subscribe("c", None, None)

    def test_data_as_a_json_string(self) -> None:
        data = json.dumps({"channel": "private-a", "auth": "k:s"})
        assert parse(frame(event="pusher:subscribe", data=data), MAX) == Subscribe(
            "private-a", "k:s", None)

    def test_the_name_is_checked_by_the_caller(self) -> None:
        # parse_channel refuses these with a subscription_error naming the channel
        assert parse(frame(event="pusher:subscribe", data={"channel": ""}), MAX) == Subscribe(
            "", None, None)
        assert parse(frame(event="pusher:subscribe", data={"channel": "a b"}),
                     MAX) == Subscribe("a b", None, None)

    @pytest.mark.parametrize("auth", [1, True, {}, ["k:s"], 1.5])
    def test_non_string_auth_is_an_auth_error(self, auth: object) -> None:
        message = parse(frame(event="pusher:subscribe",
                              data={"channel": "private-a", "auth": auth}), MAX)
        assert message == Subscribe("private-a", None, None, "Invalid auth")
        assert isinstance(message, Subscribe)
        refusal = message.refusal()
        assert refusal is not None
        assert (refusal.kind, refusal.status, refusal.message) == (
            "AuthError", 401, "Invalid auth")

    @pytest.mark.parametrize("channel_data", [{"user_id": "1"}, 1, False, ["x"]])
    def test_non_string_channel_data_is_a_bad_request(self, channel_data: object) -> None:
        message = parse(frame(event="pusher:subscribe", data={
            "channel": "presence-a", "auth": "k:s", "channel_data": channel_data}), MAX)
        assert message == Subscribe("presence-a", "k:s", None, "Invalid channel_data")
        assert isinstance(message, Subscribe)
        refusal = message.refusal()
        assert refusal is not None
        assert (refusal.kind, refusal.status, refusal.message) == (
            "BadRequest", 400, "Invalid channel_data")

    def test_both_wrong_names_the_auth_first(self) -> None:
        message = parse(frame(event="pusher:subscribe", data={
            "channel": "presence-a", "auth": 1, "channel_data": 2}), MAX)
        assert message == Subscribe("presence-a", None, None, "Invalid auth")

    @pytest.mark.parametrize("data", [{}, {"channel": None}, {"channel": 1}, {"channel": ["a"]},
                                      {"auth": "k:s"}])
    def test_no_usable_channel(self, data: object) -> None:
        with pytest.raises(InvalidPusherMessage) as exc:
            parse(frame(event="pusher:subscribe", data=data), MAX)
        assert exc.value.message == "Invalid subscribe: no channel"

    @pytest.mark.parametrize("data", [None, 1, "x", "[]", '"c"', [{"channel": "c"}], True])
    def test_data_not_an_object(self, data: object) -> None:
        fields: dict[str, object] = {"event": "pusher:subscribe", "data": data}
        with pytest.raises(InvalidPusherMessage) as exc:
            parse(json.dumps(fields), MAX)
        assert exc.value.message == "Invalid message"

    def test_no_data(self) -> None:
        with pytest.raises(InvalidPusherMessage, match="Invalid message"):
            parse('{"event":"pusher:subscribe"}', MAX)

    def test_unsubscribe(self) -> None:
        assert parse('{"event":"pusher:unsubscribe","data":{"channel":"private-a"}}',
                     MAX) == Unsubscribe("private-a")
        assert parse(frame(event="pusher:unsubscribe", data='{"channel":"b"}'),
                     MAX) == Unsubscribe("b")

    def test_unsubscribe_refusals(self) -> None:
        with pytest.raises(InvalidPusherMessage, match="Invalid unsubscribe: no channel"):
            parse('{"event":"pusher:unsubscribe","data":{"channel":7}}', MAX)
        with pytest.raises(InvalidPusherMessage, match="Invalid message"):
            parse('{"event":"pusher:unsubscribe","data":7}', MAX)

    def test_subscription_succeeded(self) -> None:
        assert pp.subscription_succeeded("private-foobar") == (
            b'{"event":"pusher_internal:subscription_succeeded","channel":"private-foobar",'
            b'"data":"{}"}'
        )

    def test_cache_miss_has_no_data(self) -> None:
        assert pp.cache_miss("cache-a") == b'{"event":"pusher:cache_miss","channel":"cache-a"}'

    def test_subscription_count(self) -> None:
        assert pp.subscription_count("my", 3) == (
            b'{"event":"pusher_internal:subscription_count","channel":"my",'
            b'"data":"{\\"subscription_count\\":3}"}'
        )


# -- 4. Presence -----------------------------------------------------------------------------


class TestPresence:
    def test_string_id(self) -> None:
        assert presence_member('{"user_id":"2","user_info":{"name":"a"}}') == Member(
            "2", "2", {"name": "a"})

    def test_integer_id_kept_as_written_keyed_by_text(self) -> None:
        member = presence_member('{"user_id":10,"user_info":{"name":"Mr. Channels"}}')
        assert member == Member(10, "10", {"name": "Mr. Channels"})
        assert type(member.user_id) is int

    def test_one_and_quoted_one_are_the_same_user(self) -> None:
        a = presence_member('{"user_id":1}')
        b = presence_member('{"user_id":"1"}')
        assert a.user_key == b.user_key == "1"
        assert a.user_id == 1 and b.user_id == "1"

    @pytest.mark.parametrize("user_id", [-5, 0, 2**63 - 1, -(2**63), 2**64 - 1])
    def test_integer_ids_within_64_bits(self, user_id: int) -> None:
        assert presence_member(json.dumps({"user_id": user_id})) == Member(
            user_id, str(user_id), {})

    def test_integer_id_of_129_digits_is_refused(self) -> None:
        # protocol.loads reads integers past 64 bits as floats (orjson) today: 400 then,
        # 413 once it keeps them as integers
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member(json.dumps({"user_id": int("9" * 129)}))
        assert exc.value.status in (400, 413)

    def test_user_info_absent_is_empty_object_null_stays_null(self) -> None:
        assert presence_member('{"user_id":"1"}').user_info == {}
        assert presence_member('{"user_id":"1","user_info":null}').user_info is None
        assert presence_member('{"user_id":"1","user_info":[1,"a"]}').user_info == [1, "a"]

    def test_spaces_of_the_python_sdk(self) -> None:
        assert presence_member('{"user_id": "1", "user_info": {"a": 1}}') == Member(
            "1", "1", {"a": 1})

    @pytest.mark.parametrize("channel_data", ["", "x", "[]", '"1"', "1", "null",
                                              '{"user_id":"1"', "NaN"])
    def test_not_a_json_object(self, channel_data: str) -> None:
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member(channel_data)
        assert refused(exc) == ("BadRequest", 400, "Invalid channel_data")

    def test_missing_user_id(self) -> None:
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member('{"user_info":{}}')
        assert refused(exc) == ("BadRequest", 400, "Missing user_id")

    @pytest.mark.parametrize("user_id", ["", None, True, False, 1.0, 1.5, [], {}, ["1"]])
    def test_invalid_user_id(self, user_id: object) -> None:
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member(json.dumps({"user_id": user_id}))
        assert refused(exc) == ("BadRequest", 400, "Invalid user_id")

    def test_user_id_of_128_characters(self) -> None:
        assert presence_member(json.dumps({"user_id": "x" * 128})).user_key == "x" * 128
        assert presence_member(json.dumps({"user_id": "é" * 128})).user_key == "é" * 128
        assert presence_member('{"user_id":"' + "\\u00e9" * 128 + '"}').user_key == "é" * 128

    @pytest.mark.parametrize("user_id", ["x" * 129, "é" * 129, "𝄞" * 129])
    def test_user_id_over_128_characters(self, user_id: object) -> None:
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member(json.dumps({"user_id": user_id}))
        assert exc.value.kind == "LimitReached" and exc.value.status == 413

    def test_user_info_of_1_kb_compact(self) -> None:
        # {"n":"..."} is 8 bytes of structure; "é" is 2 bytes of UTF-8 when written raw
        info = {"n": "é" * 508}
        assert len(json.dumps(info, ensure_ascii=False, separators=(",", ":")).encode()) == 1024
        spaced = json.dumps({"user_id": "1", "user_info": info})  # escaped and spaced: longer
        assert len(spaced) > 1024
        assert presence_member(spaced).user_info == info

    def test_user_info_over_1_kb(self) -> None:
        info = {"n": "é" * 508 + "a"}  # 1025 bytes
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member(json.dumps({"user_id": "1", "user_info": info}))
        assert refused(exc) == ("LimitReached", 413, "user_info larger than 1 KB")

    def test_user_info_too_deep_to_write_is_too_large(self) -> None:
        deep = "[" * 3000 + "]" * 3000
        with pytest.raises(SubscriptionRefused) as exc:
            presence_member('{"user_id":"1","user_info":' + deep + "}")
        assert exc.value.status in (400, 413)

    def test_presence_succeeded_is_the_documented_frame(self) -> None:
        got = pp.presence_succeeded("presence-c", ["1", "2"], {"1": {"name": "a"}, "2": {}})
        assert got == (
            b'{"event":"pusher_internal:subscription_succeeded","channel":"presence-c",'
            b'"data":"{\\"presence\\":{\\"ids\\":[\\"1\\",\\"2\\"],'
            b'\\"hash\\":{\\"1\\":{\\"name\\":\\"a\\"},\\"2\\":{}},\\"count\\":2}}"}'
        )

    def test_presence_succeeded_integer_ids_and_any_mapping(self) -> None:
        got = pp.presence_succeeded("presence-c", [1], MappingProxyType({"1": {}}))
        data = json.loads(json.loads(got)["data"])
        assert data == {"presence": {"ids": [1], "hash": {"1": {}}, "count": 1}}

    def test_member_added_and_removed(self) -> None:
        assert pp.member_added("presence-c", "2", {}) == (
            b'{"event":"pusher_internal:member_added","channel":"presence-c",'
            b'"data":"{\\"user_id\\":\\"2\\",\\"user_info\\":{}}"}'
        )
        assert pp.member_removed("presence-c", "2") == (
            b'{"event":"pusher_internal:member_removed","channel":"presence-c",'
            b'"data":"{\\"user_id\\":\\"2\\"}"}'
        )
        assert pp.member_removed("presence-c", 2) == (
            b'{"event":"pusher_internal:member_removed","channel":"presence-c",'
            b'"data":"{\\"user_id\\":2}"}'
        )

    def test_unicode_survives_double_encoding(self) -> None:
        got = pp.member_added("presence-c", 1, {"name": "Zoë €"})
        assert json.loads(json.loads(got.decode())["data"]) == {
            "user_id": 1, "user_info": {"name": "Zoë €"}}


# -- 5. Client events ------------------------------------------------------------------------


class TestClientEvents:
    def test_object_data_becomes_compact_json(self) -> None:
        text = '{"event":"client-x","channel":"presence-c","data":{ "t" : 1 }}'
        assert parse(text, MAX) == ClientEvent("client-x", "presence-c", '{"t":1}')

    def test_string_data_is_kept_as_received(self) -> None:
        text = frame(event="client-x", channel="private-c", data='{ "t": 1 }')
        assert parse(text, MAX) == ClientEvent("client-x", "private-c", '{ "t": 1 }')

    @pytest.mark.parametrize(("raw", "data"), [("1", "1"), ("true", "true"), ("null", "null"),
                                               ("[1, 2]", "[1,2]"), ('"é"', "é"),
                                               ("1e5", "100000.0")])
    def test_other_values(self, raw: str, data: str) -> None:
        text = '{"event":"client-x","channel":"private-c","data":' + raw + "}"
        assert parse(text, MAX) == ClientEvent("client-x", "private-c", data)

    def test_absent_data_is_null(self) -> None:
        assert parse('{"event":"client-x","channel":"private-c"}', MAX) == ClientEvent(
            "client-x", "private-c", "null")

    def test_the_channel_checks_are_the_callers(self) -> None:
        assert parse('{"event":"client-x","channel":"public","data":1}', MAX) == ClientEvent(
            "client-x", "public", "1")

    @pytest.mark.parametrize("channel", ["", None, 1, ["private-c"]])
    def test_channel_must_be_a_string(self, channel: object) -> None:
        if channel == "":
            assert parse(frame(event="client-x", channel="", data={}), MAX) == ClientEvent(
                "client-x", "", "{}")
            return
        with pytest.raises(InvalidPusherMessage, match="Invalid message"):
            parse(frame(event="client-x", channel=channel, data={}), MAX)

    def test_missing_channel(self) -> None:
        with pytest.raises(InvalidPusherMessage, match="Invalid message"):
            parse('{"event":"client-x","data":{}}', MAX)

    def test_size_limits(self) -> None:
        assert pp.CLIENT_EVENT_MAX_NAME == 200
        assert pp.CLIENT_EVENT_MAX_DATA == 10240
        name = "client-" + "x" * 193
        assert not pp.client_event_too_large(ClientEvent(name, "private-c", "a" * 10240))
        assert pp.client_event_too_large(ClientEvent(name + "x", "private-c", "a"))
        assert pp.client_event_too_large(ClientEvent(name, "private-c", "a" * 10241))
        assert not pp.client_event_too_large(ClientEvent(name, "private-c", "é" * 5120))
        assert pp.client_event_too_large(ClientEvent(name, "private-c", "é" * 5120 + "a"))

    def test_relayed_event(self) -> None:
        assert pp.event("client-x", "presence-c", '{"t":1}', "1") == (
            b'{"event":"client-x","channel":"presence-c","data":"{\\"t\\":1}","user_id":"1"}'
        )
        assert pp.event("client-x", "presence-c", '{"t":1}', 1) == (
            b'{"event":"client-x","channel":"presence-c","data":"{\\"t\\":1}","user_id":1}'
        )
        assert pp.event("my-event", "project-3", '{"some":"data"}') == (
            b'{"event":"my-event","channel":"project-3","data":"{\\"some\\":\\"data\\"}"}'
        )

    def test_relayed_lone_surrogate_is_escaped(self) -> None:
        message = parse('{"event":"client-x","channel":"private-c","data":"\\ud800"}', MAX)
        assert isinstance(message, ClientEvent)
        out = pp.event(message.event, message.channel, message.data)
        assert out == b'{"event":"client-x","channel":"private-c","data":"\\ud800"}'
        out.decode("utf-8")  # valid UTF-8 on the wire


# -- 6. User authentication ------------------------------------------------------------------


class TestSignin:
    def test_signin(self) -> None:
        text = ('{"event":"pusher:signin","data":'
                '{"auth":"key:sig","user_data":"{\\"id\\":\\"1\\"}"}}')
        assert parse(text, MAX) == Signin("key:sig", '{"id":"1"}')

    def test_signin_data_as_a_json_string(self) -> None:
        data = json.dumps({"auth": "k:s", "user_data": '{"id":"1"}'})
        assert parse(frame(event="pusher:signin", data=data), MAX) == Signin("k:s", '{"id":"1"}')

    @pytest.mark.parametrize("data", [
        {"auth": "k:s"}, {"user_data": "{}"}, {"auth": 1, "user_data": "{}"},
        {"auth": "k:s", "user_data": {"id": "1"}}, None, 1, "x", [],
    ])
    def test_invalid_signin(self, data: object) -> None:
        fields: dict[str, object] = {"event": "pusher:signin", "data": data}
        with pytest.raises(InvalidPusherMessage) as exc:
            parse(json.dumps(fields), MAX)
        assert exc.value.message == pp.INVALID_SIGNIN == "Invalid signin"

    def test_signin_user(self) -> None:
        assert signin_user('{"id":"12345"}') == "12345"
        assert signin_user('{"id": "a", "user_info": {"name": "x"}}') == "a"

    @pytest.mark.parametrize("user_data", ["", "x", "[]", '"1"', '{"id":""}', '{"id":1}',
                                           '{"id":null}', "{}", '{"id":["1"]}'])
    def test_signin_user_refusals(self, user_data: str) -> None:
        with pytest.raises(InvalidPusherMessage) as exc:
            signin_user(user_data)
        assert exc.value.message == "Invalid signin"

    def test_signin_success(self) -> None:
        assert pp.signin_success('{"id":"1"}') == (
            b'{"event":"pusher:signin_success","data":{"user_data":"{\\"id\\":\\"1\\"}"}}'
        )


# -- 7. Errors and close codes ---------------------------------------------------------------


class TestErrors:
    def test_codes(self) -> None:
        assert (pp.APP_UNKNOWN, pp.OVER_QUOTA, pp.PROTOCOL_UNSUPPORTED, pp.PROTOCOL_MISSING,
                pp.UNAUTHORIZED, pp.OVER_CAPACITY, pp.SHUTTING_DOWN, pp.PONG_TIMEOUT,
                pp.CLIENT_EVENT_RATE) == (4001, 4004, 4007, 4008, 4009, 4100, 4200, 4201, 4301)

    def test_subscription_error_is_the_documented_frame(self) -> None:
        assert pp.subscription_error("private-a", "AuthError", "Invalid signature", 401) == (
            b'{"event":"pusher:subscription_error","channel":"private-a",'
            b'"data":{"type":"AuthError","error":"Invalid signature","status":401}}'
        )

    def test_subscription_error_from_a_refusal(self) -> None:
        exc = SubscriptionRefused("LimitReached", 413, "user_info larger than 1 KB")
        got = json.loads(pp.subscription_error("presence-a", exc.kind, exc.message, exc.status))
        assert got["data"] == {"type": "LimitReached", "error": exc.message, "status": 413}

    @pytest.mark.parametrize(("value", "code"), [
        (None, 4008), ("", 4008), ("7", None), ("4", None), ("5", None), ("6", None),
        ("3", 4007), ("8", 4007), ("x", 4007), ("7.0", 4007), (" 7", 4007), ("+7", 4007),
        ("٧", 4007), ("-7", 4007), ("9" * 5000, 4007),
    ])
    def test_protocol_version(self, value: str | None, code: int | None) -> None:
        assert pp.protocol_version_error(value) == code


# -- socket ids ------------------------------------------------------------------------------


class TestSocketId:
    def test_shape(self) -> None:
        for _ in range(1000):
            assert re.fullmatch(r"\d+\.\d+", pp.new_socket_id(), re.ASCII)

    def test_distinct(self) -> None:
        ids = {pp.new_socket_id() for _ in range(10_000)}
        assert len(ids) == 10_000
