"""pushy_shard.core.pusher_api against PUSHER.md 8: trigger bodies, their limits, `info`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushy_shard.core.pusher_api import (
    MAX_BATCH,
    MAX_BODY,
    MAX_CHANNELS,
    MAX_DATA_BYTES,
    MAX_EVENT_NAME,
    Event,
    parse_batch,
    parse_events,
    parse_info,
)
from pushy_shard.errors import ApiError


def body(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def event(**fields: Any) -> bytes:
    base: dict[str, Any] = {"name": "my-event", "channels": ["a"], "data": "hello"}
    base.update(fields)
    return body({k: v for k, v in base.items() if v is not ...})


def refused(raw: bytes, status: int = 400, *, batch: bool = False) -> str:
    with pytest.raises(ApiError) as info:
        (parse_batch if batch else parse_events)(raw)
    assert info.value.status == status
    return info.value.message


def test_limits_are_pushers() -> None:
    assert (MAX_CHANNELS, MAX_BATCH, MAX_DATA_BYTES, MAX_EVENT_NAME, MAX_BODY) == (
        100, 10, 10240, 200, 262144)


# -- POST /apps/{id}/events ------------------------------------------------------------------


def test_event_parsed() -> None:
    parsed = parse_events(event(channels=["a", "private-b"], socket_id="123.456"))
    assert parsed == Event("my-event", ("a", "private-b"), "hello", "123.456", ())


def test_pusher_docs_example() -> None:
    raw = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
    assert parse_events(raw) == Event("foo", ("project-3",), '{"some":"data"}', None, ())


def test_channel_instead_of_channels() -> None:
    parsed = parse_events(event(channels=..., channel="presence-x"))
    assert parsed.channels == ("presence-x",)


def test_channel_and_channels_together_refused() -> None:
    assert "not both" in refused(event(channel="a"))


def test_no_channel_refused() -> None:
    assert refused(event(channels=...)) == "Missing channels"


def test_channels_must_be_a_list() -> None:
    assert "list" in refused(event(channels="a"))
    assert "list" in refused(event(channels={"a": 1}))


def test_zero_channels_refused() -> None:
    assert "At least one" in refused(event(channels=[]))


def test_100_channels_ok_101_refused() -> None:
    names = [f"c{i}" for i in range(101)]
    assert len(parse_events(event(channels=names[:100])).channels) == 100
    assert "Too many channels" in refused(event(channels=names))


def test_repeated_channel_is_one() -> None:
    assert parse_events(event(channels=["a", "b", "a"])).channels == ("a", "b")


@pytest.mark.parametrize("name", ["", "a b", "x" * 201, "a#b", "é", "#server-to-user-"])
def test_invalid_channel_named(name: str) -> None:
    message = refused(event(channels=["ok", name]))
    assert message.startswith("Invalid channel name")
    assert f'"{name}"' in message or f'"{name[:100]}..."' in message


def test_long_invalid_channel_name_is_cut_in_the_message() -> None:
    message = refused(event(channels=["!" * 50_000]))
    assert len(message) < 200
    assert message.endswith('..."')


@pytest.mark.parametrize("name", [1, None, ["a"], {"a": 1}, True])
def test_channel_not_a_string_refused(name: Any) -> None:
    assert "strings" in refused(event(channels=[name]))
    assert "strings" in refused(event(channels=..., channel=name))


def test_every_kind_of_channel_accepted() -> None:
    names = ["a", "cache-a", "private-a", "private-cache-a", "presence-a", "presence-cache-a",
             "#server-to-user-12345", "A-z_=@,.;"]
    assert parse_events(event(channels=names)).channels == tuple(names)


def test_encrypted_channel_alone_ok() -> None:
    assert parse_events(event(channels=["private-encrypted-a"])).channels == (
        "private-encrypted-a",)


@pytest.mark.parametrize("names", [["private-encrypted-a", "b"], ["a", "private-encrypted-b"],
                                   ["private-encrypted-a", "private-encrypted-b"]])
def test_encrypted_channel_with_others_refused(names: list[str]) -> None:
    assert "encrypted" in refused(event(channels=names))


def test_encrypted_channel_repeated_is_one_channel() -> None:
    names = ["private-encrypted-a", "private-encrypted-a"]
    assert parse_events(event(channels=names)).channels == ("private-encrypted-a",)


# -- name --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["e", "x" * 200, "client-x", "pusher", "Pusher:x", "pusherx",
                                  "é" * 200, "pusher-internal:x"])
def test_event_name_accepted(name: str) -> None:
    assert parse_events(event(name=name)).name == name


@pytest.mark.parametrize("name", ["", "x" * 201, "pusher:subscribe", "pusher:",
                                  "pusher_internal:member_added", "pusher_internal:"])
def test_event_name_refused(name: str) -> None:
    assert "name" in refused(event(name=name))


def test_event_name_missing_or_not_a_string() -> None:
    assert refused(event(name=...)) == "Missing name"
    assert refused(event(name=None)) == "Missing name"
    assert refused(event(name=1)) == "name must be a string"


# -- data --------------------------------------------------------------------------------------


def test_string_data_kept_as_is() -> None:
    data = '{"a": 1,  "b":[ ]}'
    assert parse_events(event(data=data)).data == data


@pytest.mark.parametrize(("value", "text"), [
    ({"a": 1, "b": [1, 2, {"c": None}]}, '{"a":1,"b":[1,2,{"c":null}]}'),
    ([1, "x"], '[1,"x"]'),
    (1, "1"),
    (1.5, "1.5"),
    (True, "true"),
    (None, "null"),
    ({"é": "ü"}, '{"é":"ü"}'),
    (2**64 - 1, str(2**64 - 1)),
])
def test_non_string_data_encoded_compactly(value: Any, text: str) -> None:
    assert parse_events(event(data=value)).data == text


def test_non_string_data_from_spaced_json_is_compacted() -> None:
    raw = b'{"name":"e","channel":"a","data": { "a" : [ 1 , 2 ] } }'
    assert parse_events(raw).data == '{"a":[1,2]}'


def test_missing_data_refused() -> None:
    assert refused(event(data=...)) == "Missing data"


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_data_limit_in_utf8_bytes(char: str) -> None:
    width = len(char.encode())
    fits = char * (MAX_DATA_BYTES // width) + "x" * (MAX_DATA_BYTES % width)
    assert len(fits.encode()) == 10240
    assert parse_events(event(data=fits)).data == fits
    over = fits + "x"
    assert len(over.encode()) == 10241
    assert "data too large" in refused(event(data=over), 413)


def test_data_limit_counts_a_multibyte_character_that_crosses_it() -> None:
    data = "x" * 10238 + "€"  # 10241 bytes in 10239 characters
    assert "data too large" in refused(event(data=data), 413)


def test_non_string_data_limit_measures_its_compact_json() -> None:
    data = {"k": "x" * (MAX_DATA_BYTES - 8)}  # {"k":"..."} is 8 bytes more
    assert len(parse_events(event(data=data)).data) == MAX_DATA_BYTES
    data = {"k": "x" * (MAX_DATA_BYTES - 7)}
    assert "data too large" in refused(event(data=data), 413)


def test_data_with_lone_surrogate_is_measured_not_refused() -> None:
    raw = b'{"name":"e","channel":"a","data":"\\ud800"}'
    assert parse_events(raw).data == "\ud800"


# -- socket_id ---------------------------------------------------------------------------------


@pytest.mark.parametrize("socket_id", ["1.2", "123.456", "0.0", "1" * 30 + "." + "2" * 30])
def test_socket_id_accepted(socket_id: str) -> None:
    assert parse_events(event(socket_id=socket_id)).socket_id == socket_id


@pytest.mark.parametrize("socket_id", ["", "1", "1.", ".1", "1.2.3", "a.b", "1.2\n", " 1.2",
                                       "-1.2", "١.٢", 1.2, 12, ["1.2"], True])
def test_socket_id_refused(socket_id: Any) -> None:
    assert refused(event(socket_id=socket_id)) == "Invalid socket_id"


def test_socket_id_null_is_absent() -> None:
    assert parse_events(event(socket_id=None)).socket_id is None
    assert parse_events(event()).socket_id is None


# -- info --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "names"), [
    (None, ()),
    ("", ()),
    ("user_count", ("user_count",)),
    ("user_count,subscription_count", ("user_count", "subscription_count")),
    ("subscription_count,user_count", ("subscription_count", "user_count")),
    (" user_count , cache ,", ("user_count", "cache")),
    ("cache,cache,user_count,cache", ("cache", "user_count")),
    (",,", ()),
    ("whatever", ("whatever",)),
])
def test_parse_info(text: str | None, names: tuple[str, ...]) -> None:
    assert parse_info(text) == names


def test_trigger_info_keeps_what_triggers_answer() -> None:
    parsed = parse_events(event(info="cache,subscription_count,bogus,user_count"))
    assert parsed.info == ("subscription_count", "user_count")


def test_trigger_info_unknown_names_ignored() -> None:
    assert parse_events(event(info="bogus,cache")).info == ()
    assert parse_events(event(info=None)).info == ()


@pytest.mark.parametrize("info", [["user_count"], 1, {"user_count": True}])
def test_trigger_info_not_a_string_refused(info: Any) -> None:
    assert "info" in refused(event(info=info))


# -- the body --------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe", b'{"a":NaN}',
                                 b'{"name":"e"} x', b"[" * 100_000])
def test_bad_json_refused(raw: bytes) -> None:
    assert refused(raw) == "The body is not JSON"
    assert refused(raw, batch=True) == "The body is not JSON"


@pytest.mark.parametrize("raw", [b"[]", b'"x"', b"1", b"null", b"true"])
def test_non_object_body_refused(raw: bytes) -> None:
    assert refused(raw) == "The body must be a JSON object"
    assert refused(raw, batch=True) == "The body must be a JSON object"


def test_body_over_256_kb_refused() -> None:
    raw = event(data="x" * 100)
    padded = raw[:-1] + b" " * (MAX_BODY - len(raw)) + b"}"
    assert len(padded) == MAX_BODY
    assert parse_events(padded).data == "x" * 100
    assert "too large" in refused(padded + b" ", 413)


def test_extra_fields_ignored() -> None:
    assert parse_events(event(extra={"x": 1})).name == "my-event"


# -- POST /apps/{id}/batch_events ------------------------------------------------------------


def item(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "e", "channel": "a", "data": "d"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def test_batch_parsed_in_order() -> None:
    raw = body({"batch": [item(name="e1", channel="a", data={"x": 1}),
                          item(name="e2", channel="presence-b", socket_id="1.2",
                               info="user_count,cache")]})
    assert parse_batch(raw) == [
        Event("e1", ("a",), '{"x":1}', None, ()),
        Event("e2", ("presence-b",), "d", "1.2", ("user_count",)),
    ]


def test_batch_of_10_ok_11_refused() -> None:
    assert len(parse_batch(body({"batch": [item()] * 10}))) == 10
    assert "Too many events" in refused(body({"batch": [item()] * 11}), batch=True)


def test_empty_batch_is_nothing_to_do() -> None:
    assert parse_batch(body({"batch": []})) == []


@pytest.mark.parametrize("value", [..., None, {}, "x", 1])
def test_batch_must_be_a_list(value: Any) -> None:
    raw = body({} if value is ... else {"batch": value})
    assert "batch must be a list" in refused(raw, batch=True)


@pytest.mark.parametrize(("bad", "status", "words"), [
    (item(channel="a b"), 400, 'Invalid channel name "a b"'),
    (item(channel=...), 400, "Missing channel"),
    (item(channel=..., channels=["a"]), 400, "one channel"),
    (item(channels=["a"]), 400, "one channel"),
    (item(channel=1), 400, "strings"),
    (item(name="pusher:x"), 400, "name"),
    (item(name=...), 400, "Missing name"),
    (item(data=...), 400, "Missing data"),
    (item(data="x" * 10241), 413, "data too large"),
    (item(socket_id="x"), 400, "Invalid socket_id"),
    (item(info=[1]), 400, "info"),
    ("not an object", 400, "an event must be an object"),
    ([item()], 400, "an event must be an object"),
])
def test_bad_batch_item_refuses_the_batch_naming_its_index(bad: Any, status: int,
                                                           words: str) -> None:
    raw = body({"batch": [item(), item(), bad, item()]})
    message = refused(raw, status, batch=True)
    assert message.startswith("batch[2]: ")
    assert words in message


def test_first_bad_item_is_named() -> None:
    raw = body({"batch": [item(), item(channel="!"), item(name="")]})
    assert refused(raw, batch=True).startswith("batch[1]: ")


def test_batch_data_limit_per_item() -> None:
    fits = "é" * (MAX_DATA_BYTES // 2)
    assert len(parse_batch(body({"batch": [item(data=fits)] * 10}))) == 10


# -- never anything but ApiError -------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=20,
)
_field_names = st.sampled_from(["name", "data", "channel", "channels", "socket_id", "info",
                                "batch", "x"])
_bodyish = st.dictionaries(_field_names, _json | st.lists(
    st.dictionaries(_field_names, _json, max_size=6), max_size=3), max_size=6)


def _parse_all(raw: bytes) -> None:
    for parse in (parse_events, parse_batch):
        try:
            result = parse(raw)
        except ApiError as exc:
            assert exc.status in (400, 413)
            assert isinstance(exc.message, str) and exc.message
        else:
            events = result if isinstance(result, list) else [result]
            for parsed in events:
                assert isinstance(parsed, Event)
                assert 1 <= len(parsed.channels) <= MAX_CHANNELS
                assert isinstance(parsed.data, str)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_api_error(raw: bytes) -> None:
    _parse_all(raw)


@given(_bodyish)
def test_arbitrary_json_objects_raise_only_api_error(value: dict[str, Any]) -> None:
    _parse_all(json.dumps(value).encode())


@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_api_error(text: str) -> None:
    _parse_all(text.encode("utf-8", "surrogatepass"))
    _parse_all(json.dumps({"name": text, "channel": text, "data": text, "socket_id": text,
                           "info": text}).encode())


@given(st.text(max_size=60))
def test_parse_info_never_raises(text: str) -> None:
    names = parse_info(text)
    assert all(name and "," not in name and name == name.strip() for name in names)
    assert len(set(names)) == len(names)
