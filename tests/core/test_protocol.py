"""pushy_shard.core.protocol and the client error table, against PROTOCOL.md 2 and 3."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core import protocol
from pushy_shard.core.protocol import (
    MAX_CHANNEL_LENGTH,
    MAX_MESSAGE_BYTES,
    ClientCommand,
    channel_of,
    dumps,
    error_event,
    event,
    parse_client_message,
)
from pushy_shard.errors import (
    BogusMessage,
    ChannelNotFound,
    ClientError,
    InvalidChannel,
    MessageTooLarge,
    NoChannel,
    NotSubscribed,
    UnknownCommand,
)

BOGUS = {"message": "Bogus message received", "code": "100"}


def msg(**fields: Any) -> str:
    return json.dumps(fields)


def parse(text: str, **kwargs: Any) -> ClientCommand | None:
    return parse_client_message(text, **kwargs)


# -- PROTOCOL.md 2: client -> server messages ------------------------------------------------


class TestClientCommands_2:
    def test_subscribe(self) -> None:
        text = '{"command":"subscribe","data":{"channel":"Hello","auth":"x"}}'
        assert parse(text) == ClientCommand(
            name="subscribe", data={"channel": "Hello", "auth": "x"}, channel="Hello"
        )

    @pytest.mark.parametrize("name", ["subscribe", "SUBSCRIBE", "Subscribe", "sUbScRiBe"])
    def test_command_names_are_case_insensitive(self, name: str) -> None:
        command = parse(msg(command=name, data={"channel": "c"}))
        assert command is not None and command.name == "subscribe"

    def test_custom_command_name_is_lower_cased(self) -> None:
        command = parse(msg(command="Chat-Message", data={"text": "hi"}))
        assert command == ClientCommand("chat-message", {"text": "hi"}, None)

    def test_data_is_kept_as_sent(self) -> None:
        data = {"channel": "c", "nested": {"a": [1, 2.5, None, True]}, "s": "é/\u2028"}
        command = parse(json.dumps({"command": "x", "data": data}, ensure_ascii=False))
        assert command is not None and command.data == data

    @pytest.mark.parametrize("data", [None, [], ["channel"], "channel", 1, 0, True, False])
    def test_data_not_an_object_is_empty(self, data: object) -> None:
        # The browser client sends `data || []`: no fields, not an error.
        assert parse(msg(command="subscribe", data=data)) == ClientCommand("subscribe", {}, None)

    def test_data_missing_is_empty(self) -> None:
        assert parse('{"command":"unsubscribe"}') == ClientCommand("unsubscribe", {}, None)

    def test_extra_top_level_fields_are_ignored(self) -> None:
        command = parse('{"command":"x","data":{},"id":7,"event":null}')
        assert command == ClientCommand("x", {}, None)

    def test_lone_surrogate_escapes_are_accepted(self) -> None:
        # JSON.parse accepts them; orjson does not, hence the stdlib fallback.
        command = parse('{"command":"x","data":{"t":"\\ud800"}}')
        assert command is not None and command.data == {"t": "\ud800"}


# -- PROTOCOL.md 3.3: other messages ---------------------------------------------------------


class TestOtherMessages_3_3:
    @pytest.mark.parametrize(
        "text",
        ['{"event":"client-x"}', '{"event":"x","data":{"a":1}}', '{"event":"x","command":null}'],
    )
    def test_event_only_is_ignored(self, text: str) -> None:
        assert parse(text) is None

    @pytest.mark.parametrize(
        "text",
        [
            "{}",
            '{"data":{"channel":"c"}}',
            '{"command":null}',
            '{"event":null}',
            '{"command":null,"event":null}',
            '{"command":"subscribe","event":"x"}',  # both
            '{"command":"subscribe","event":{}}',
        ],
    )
    def test_neither_or_both_is_bogus(self, text: str) -> None:
        with pytest.raises(BogusMessage) as info:
            parse(text)
        assert info.value.payload() == BOGUS

    @pytest.mark.parametrize(
        "text",
        ["", " ", "not json", "{", '{"command":', "{'command':'x'}", "\x00", "[1,]", "{}}"],
    )
    def test_not_json_is_bogus(self, text: str) -> None:
        with pytest.raises(BogusMessage) as info:
            parse(text)
        assert info.value.code == "100"

    @pytest.mark.parametrize(
        "text", ["[]", "1", "-2.5", '"subscribe"', "null", "true", '[{"command":"x"}]']
    )
    def test_not_an_object_is_bogus(self, text: str) -> None:
        with pytest.raises(BogusMessage):
            parse(text)

    @pytest.mark.parametrize("command", [1, 0, 1.5, True, False, [], ["subscribe"], {}])
    def test_command_not_a_string_is_bogus(self, command: object) -> None:
        with pytest.raises(BogusMessage):
            parse(msg(command=command, data={"channel": "c"}))

    def test_deeply_nested_json_is_bogus(self) -> None:
        depth = 5_000  # 10 KB, well under the message size limit
        with pytest.raises(BogusMessage):
            parse('{"command":"x","data":' + "[" * depth + "]" * depth + "}")

    @pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
    def test_non_json_number_literals_are_bogus(self, literal: str) -> None:
        with pytest.raises(BogusMessage):
            parse('{"command":"x","data":{"n":' + literal + "}}")


class TestChannelField_3:
    """The channel a command names (routing); checks 3.1.1 and 3.2.1 happen downstream."""

    @pytest.mark.parametrize("channel", [None, "", False, 0, 0.0])
    def test_falsy_channel_names_none(self, channel: object) -> None:
        command = parse(msg(command="subscribe", data={"channel": channel}))
        assert command is not None and command.channel is None

    def test_missing_channel_names_none(self) -> None:
        assert channel_of({}) is None

    @pytest.mark.parametrize(
        "channel", [1, -1, 1.5, True, [], ["a"], {}, {"name": "a"}], ids=repr
    )
    def test_channel_not_a_string_is_invalid(self, channel: object) -> None:
        with pytest.raises(InvalidChannel) as info:
            parse(msg(command="subscribe", data={"channel": channel}))
        assert info.value.code == "301"
        assert info.value.payload()["message"].startswith("Invalid channel name")

    def test_channel_at_the_length_limit(self) -> None:
        name = "c" * MAX_CHANNEL_LENGTH
        command = parse(msg(command="subscribe", data={"channel": name}))
        assert command is not None and command.channel == name

    def test_channel_too_long_is_invalid(self) -> None:
        with pytest.raises(InvalidChannel) as info:
            parse(msg(command="subscribe", data={"channel": "c" * (MAX_CHANNEL_LENGTH + 1)}))
        assert str(MAX_CHANNEL_LENGTH) in info.value.payload()["message"]

    @pytest.mark.parametrize("escaped", ["\\ud800", "a\\udfffb", "\\udc00\\ud800"])
    def test_channel_with_a_lone_surrogate_is_invalid(self, escaped: str) -> None:
        # JSON.stringify sends them as escapes; no link frame could carry the name (UTF-8)
        text = '{"command":"subscribe","data":{"channel":"' + escaped + '"}}'
        with pytest.raises(InvalidChannel) as info:
            parse(text)
        assert info.value.payload() == {"message": "Invalid channel name: lone surrogate",
                                        "code": "301"}

    def test_channel_with_an_escaped_surrogate_pair_is_one_character(self) -> None:
        command = parse('{"command":"subscribe","data":{"channel":"\\ud83d\\ude00"}}')
        assert command is not None and command.channel == "\U0001f600"

    def test_channel_kept_exactly_as_sent(self) -> None:
        command = parse(msg(command="subscribe", data={"channel": " Private-Room é "}))
        assert command is not None and command.channel == " Private-Room é "


class TestMessageSize:
    def test_at_the_limit(self) -> None:
        head = '{"command":"x","data":{"p":"'
        text = head + "x" * (100 - len(head) - 3) + '"}}'
        assert len(text) == 100
        assert parse(text, max_bytes=100) is not None

    def test_over_the_limit_is_too_large(self) -> None:
        text = '{"command":"x","data":{"p":"' + "x" * 100 + '"}}'
        with pytest.raises(MessageTooLarge) as info:
            parse(text, max_bytes=100)
        assert info.value.payload() == {"message": "Message too large", "code": "413"}

    def test_default_limit(self) -> None:
        text = '{"command":"x","data":{"p":"' + "x" * MAX_MESSAGE_BYTES + '"}}'
        with pytest.raises(MessageTooLarge):
            parse(text)

    def test_size_is_checked_before_parsing(self) -> None:
        with pytest.raises(MessageTooLarge):
            parse("x" * 101, max_bytes=100)  # not JSON either: size wins

    def test_limit_counts_utf8_bytes(self) -> None:
        text = '{"command":"x","data":{"p":"' + "\u20ac" * 60 + '"}}'  # 3 bytes each
        assert len(text) < 100 < len(text.encode())
        with pytest.raises(MessageTooLarge):
            parse(text, max_bytes=100)


# -- PROTOCOL.md 2: server -> client events --------------------------------------------------


class TestServerEvents_2:
    def test_connection_level_event(self) -> None:
        data = {"socketId": "abc", "protocol": "websocket"}
        assert event(protocol.CONNECT, data) == (
            b'{"event":"pushy:connect","data":{"socketId":"abc","protocol":"websocket"}}'
        )

    def test_channel_level_event_key_order(self) -> None:
        out = event("news", {"b": 1, "a": 2}, "Hello")
        assert out == b'{"event":"news","channel":"Hello","data":{"b":1,"a":2}}'
        assert list(orjson.loads(out)) == ["event", "channel", "data"]

    def test_event_is_bytes_compact_utf8_unescaped(self) -> None:
        out = event("e", {"t": "é/中😀"}, "Ch/é")
        assert isinstance(out, bytes)
        assert out == '{"event":"e","channel":"Ch/é","data":{"t":"é/中😀"}}'.encode()

    def test_error_event(self) -> None:
        assert error_event(BOGUS) == (
            b'{"event":"pushy:error","data":{"message":"Bogus message received","code":"100"}}'
        )

    def test_event_names(self) -> None:
        assert (
            protocol.CONNECT,
            protocol.ERROR,
            protocol.NEEDAUTH,
            protocol.SUBSCRIPTION_FAILED,
            protocol.SUBSCRIPTION_SUCCESS,
            protocol.SUBSCRIPTION_END,
            protocol.PRESENCE_ADD,
            protocol.PRESENCE_QUIT,
        ) == (
            "pushy:connect",
            "pushy:error",
            "pushy:subscription-needauth",
            "pushy:subscription-failed",
            "pushy:subscription-success",
            "pushy:subscription-end",
            "pushy:presence-add",
            "pushy:presence-quit",
        )

    @pytest.mark.parametrize("n", [2**63, 2**64, -(2**63) - 1, 2**100, -(10**40)])
    def test_dumps_falls_back_for_ints_past_64_bits(self, n: int) -> None:
        assert dumps(n) == str(n).encode()
        assert dumps({"n": n, "s": "é"}) == f'{{"n":{n},"s":"é"}}'.encode()
        assert event("e", [n], "c") == f'{{"event":"e","channel":"c","data":[{n}]}}'.encode()

    def test_dumps_within_64_bits_uses_orjson(self) -> None:
        for n in (2**63 - 1, -(2**63), 2**64 - 1):
            assert dumps(n) == orjson.dumps(n)

    def test_event_with_a_lone_surrogate_is_valid_utf8(self) -> None:
        out = event("e", {"t": "\ud800"}, "c")
        expected = {"event": "e", "channel": "c", "data": {"t": "\ud800"}}
        assert json.loads(out.decode("utf-8")) == expected


# -- errors.py: the wire codes of PROTOCOL.md 3 in one table ---------------------------------


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (BogusMessage, "100", "Bogus message received"),
        (UnknownCommand, "200", "Unknown command"),
        (NoChannel, "300", "No channel specified"),
        (NotSubscribed, "403", "Not subscribed to this channel"),
        (ChannelNotFound, "404", "Channel not found"),
    ],
)
def test_client_error_codes_of_protocol_3(
    error: type[ClientError], code: str, message: str
) -> None:
    assert error().payload() == {"message": message, "code": code}
    assert list(error().payload()) == ["message", "code"]


def test_client_error_message_can_be_overridden_but_not_the_code() -> None:
    exc = InvalidChannel("Invalid channel name: too long")
    assert exc.payload() == {"message": "Invalid channel name: too long", "code": "301"}
    assert str(exc) == "Invalid channel name: too long"
    assert InvalidChannel().message == "Invalid channel name"


# -- properties: no input escapes as anything but a ClientError ------------------------------


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
maybe = st.one_of(st.just(None), json_values)
command_like = st.fixed_dictionaries(
    {},
    optional={
        "command": st.one_of(st.sampled_from(["subscribe", "UNSUBSCRIBE", "Chat"]), json_values),
        "event": maybe,
        "data": st.one_of(
            st.fixed_dictionaries({}, optional={"channel": json_values, "auth": json_values}),
            json_values,
        ),
    },
)


def check_parse(text: str) -> None:
    try:
        command = parse(text)
    except ClientError:
        return
    if command is not None:
        assert isinstance(command.name, str) and command.name == command.name.lower()
        assert isinstance(command.data, dict)
        channel = command.channel
        assert channel is None or (isinstance(channel, str) and 0 < len(channel) <= 200)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_client_errors(text: str) -> None:
    check_parse(text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,. 0123456789-+eEtrufalsn\\commandevtdhi'))
def test_json_like_text_raises_only_client_errors(text: str) -> None:
    check_parse(text)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_values_raise_only_client_errors(value: object) -> None:
    check_parse(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(command_like)
def test_command_shaped_objects_raise_only_client_errors(value: dict[str, Any]) -> None:
    text = json.dumps(value)
    check_parse(text)
    command = value.get("command")
    event_ = value.get("event")
    if isinstance(command, str) and event_ is None and len(text) <= MAX_MESSAGE_BYTES:
        data = value.get("data")
        channel = data.get("channel") if isinstance(data, dict) else None
        if channel is None or isinstance(channel, str) and len(channel) <= 200:
            parsed = parse(text)
            assert parsed is not None and parsed.name == command.lower()
