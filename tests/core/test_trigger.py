"""pushy_shard.core.trigger: form parsing (qs) and trigger verification, PROTOCOL.md 4.2 / 4.3."""

from __future__ import annotations

import hmac
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.auth import canonical_json, php_json, sha256_hex, trigger_key
from pushy_shard.core.trigger import Trigger, js_parse_int, parse_form, verify_trigger
from pushy_shard.errors import (
    BodyTooLarge,
    InvalidBody,
    InvalidCredentials,
    MissingParameters,
    TimestampOutOfBounds,
    TriggerError,
    UnsupportedContentType,
)

SECRET = "secret"
NOW = 1_700_000_000.0
TS = 1_700_000_000
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


def sign(channel: str, event: str, ts: int, body_canon: str) -> str:
    return trigger_key(channel, event, ts, body_canon, SECRET)


def query(auth_key: str, *, event: str = "test", ts: object = TS, **extra: str) -> dict[str, str]:
    return {"event": event, "timestamp": str(ts), "auth_key": auth_key, **extra}


def verify(
    q: dict[str, str],
    body: bytes = b"",
    content_type: str | None = None,
    *,
    channel: str = "hello",
    now: float = NOW,
    max_body: int = 65536,
) -> Trigger:
    return verify_trigger(
        channel=channel, query=q, body=body, content_type=content_type, secret=SECRET, now=now,
        max_body=max_body,
    )


# -- 4.2 form bodies: what qs made of them ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", {}),
        ("msg=hi&n=2", {"msg": "hi", "n": "2"}),
        ("a", {"a": ""}),  # no `=`: empty value
        ("a=", {"a": ""}),
        ("a=b=c", {"a": "b=c"}),
        ("a+b=c+d", {"a b": "c d"}),  # `+` is a space
        ("a%2Bb=%2B", {"a+b": "+"}),
        ("k=%C3%A9%E2%82%AC%F0%9F%98%80", {"k": "é€😀"}),
        ("k=%2f%2F", {"k": "//"}),
        ("k=100%", {"k": "100%"}),  # malformed escape: the whole text stays raw
        ("k=%zz+%41", {"k": "%zz+%41"}),
        ("k=%FF%41", {"k": "%FF%41"}),  # escapes that are not UTF-8: raw too
        ("&&a=1&", {"a": "1"}),  # empty keys are dropped
        ("=x", {}),
        ("a[b]=1", {"a": {"b": "1"}}),
        ("a[b][c]=1", {"a": {"b": {"c": "1"}}}),
        ("a%5Bb%5D=1", {"a": {"b": "1"}}),  # decoded before brackets are read
        ("a[b]=1&a[c]=2", {"a": {"b": "1", "c": "2"}}),
        ("a[]=1&a[]=2", {"a": ["1", "2"]}),
        ("a[]=", {"a": [""]}),
        ("a[0]=x&a[1]=y", {"a": ["x", "y"]}),
        ("a%5B0%5D=x&a%5B1%5D=y", {"a": ["x", "y"]}),  # PHP http_build_query
        ("a[1]=y&a[0]=x", {"a": ["x", "y"]}),
        ("a[3]=x&a[7]=y", {"a": ["x", "y"]}),  # sparse indices are compacted
        ("a[20]=x", {"a": ["x"]}),
        ("a[21]=x", {"a": {"21": "x"}}),  # past the array limit: an object
        ("a[0]=x&a[21]=y", {"a": {"0": "x", "21": "y"}}),
        ("a[00]=x", {"a": {"00": "x"}}),
        ("a[-1]=x", {"a": {"-1": "x"}}),
        ("a=1&a=2&a=3", {"a": ["1", "2", "3"]}),
        ("a[b]=1&a[b]=2", {"a": {"b": ["1", "2"]}}),
        ("a[b]=1&a[0]=2", {"a": {"b": "1", "0": "2"}}),  # array + object keys: an object
        ("a[0]=1&a[b]=2", {"a": {"0": "1", "b": "2"}}),
        ("a[]=x&a[0]=y", {"a": ["x", "y"]}),
        ("a=1&a[b]=2", {"a": ["1", {"b": "2"}]}),
        ("a[0][b]=1&a[0][c]=2&a[1][b]=3", {"a": [{"b": "1", "c": "2"}, {"b": "3"}]}),
        ("a[][b]=1", {"a": [{"b": "1"}]}),
        ("a[1][2][3][4][5]=x", {"a": [[[[["x"]]]]]}),
        ("a[b][c][d][e][f][g][h]=x", {"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "x"}}}}}}}),
        ("[a]=1", {"a": "1"}),
        ("a[b]c=1", {"a": {"b": "1"}}),  # text after the last bracket is dropped
        ("a[b=1", {"a[b": "1"}),
        ("a[=]=1", {"a": {"=": "1"}}),  # `]=` ends the key
        ("__proto__=1&b=2", {"b": "2"}),
        ("a[__proto__]=1&a[b]=2", {"a": {"b": "2"}}),
        ("constructor=1", {}),
        ("toString=1&hasOwnProperty[x]=2&a[valueOf]=3", {}),
        ("prototype=1", {"prototype": "1"}),  # not an Object.prototype property
        ("b=1&0=x", {"b": "1", "0": "x"}),
        ("0[a]=1&0=2", {"0": ["2", {"a": "1"}]}),  # qs reads "0" first (JS key order)
        ("a[b][c]=1&a[b]x=2", {"a": {"b": {"c": "1", "2": True}}}),  # qs merge quirk
    ],
)
def test_parse_form(body: str, expected: dict[str, object]) -> None:
    result = parse_form(body)
    assert result == expected
    assert list(result) == list(expected)


def test_parse_form_parameter_limit() -> None:
    body = "&".join(f"k{i}=v" for i in range(1200))
    result = parse_form(body)
    assert len(result) == 1000
    assert "k999" in result and "k1000" not in result


def test_parse_form_php_lists_keep_php_signature() -> None:
    # PHP signs json_encode(['a' => [22 items]]) as a list; qs makes an object past index 20,
    # which php_json still writes as that list.
    body = "&".join(f"a%5B{i}%5D=v{i}" for i in range(22))
    data = parse_form(body)
    assert isinstance(data["a"], dict)
    assert php_json(data) == json.dumps({"a": [f"v{i}" for i in range(22)]}, separators=(",", ":"))


# -- 4.3 the order of checks -----------------------------------------------------------------


def test_success_with_json_body() -> None:
    body = b'{"msg": "hi", "n": 2}'
    key = sign("hello", "test", TS, '{"msg":"hi","n":2}')
    trigger = verify(query(key, socket_id="abc"), body, "application/json; charset=utf-8")
    assert trigger == Trigger("hello", "test", TS, {"msg": "hi", "n": 2}, "abc")


def test_worked_example_request() -> None:
    key = "fc7da7a7f1e50f242f6b57975ea4914aba1e6c31b56165948cd3d090b7ff0625"
    trigger = verify(query(key, ts=123456789), b"", None, now=123456789.0)
    assert trigger.data == {} and trigger.socket_id is None and trigger.timestamp == 123456789


def test_success_with_form_body() -> None:
    body = b"msg=hi&n=2&list%5B0%5D=a"
    key = sign("Hello", "test", TS, '{"msg":"hi","n":"2","list":["a"]}')
    trigger = verify(query(key), body, FORM, channel="Hello")
    assert trigger.channel == "Hello"
    assert trigger.data == {"msg": "hi", "n": "2", "list": ["a"]}


@pytest.mark.parametrize("ctype", [JSON_TYPE, "Application/JSON", "application/vnd.api+json"])
def test_json_content_types(ctype: str) -> None:
    key = sign("hello", "test", TS, '{"a":[1]}')
    assert verify(query(key), b'{"a":[1]}', ctype).data == {"a": [1]}


def test_json_array_body() -> None:
    key = sign("hello", "test", TS, "[1,2]")
    assert verify(query(key), b"[1, 2]", JSON_TYPE).data == [1, 2]


def test_php_variant_accepted() -> None:
    body = b"url=http%3A%2F%2Fx.io%2Fa&name=%C3%A9"
    data = {"url": "http://x.io/a", "name": "é"}
    php_key = sign("hello", "test", TS, '{"url":"http:\\/\\/x.io\\/a","name":"\\u00e9"}')
    assert verify(query(php_key), body, FORM).data == data
    js_key = sign("hello", "test", TS, canonical_json(data))
    assert verify(query(js_key), body, FORM).data == data


@pytest.mark.parametrize("ctype", [None, JSON_TYPE, FORM, "text/plain"])
def test_empty_body_signs_as_object_or_php_array(ctype: str | None) -> None:
    for canon in ("{}", "[]"):
        trigger = verify(query(sign("hello", "test", TS, canon)), b"", ctype)
        assert trigger.data == {}


def test_empty_list_not_accepted_for_non_empty_body() -> None:
    with pytest.raises(InvalidCredentials):
        verify(query(sign("hello", "test", TS, "[]")), b"a=1", FORM)


def test_missing_content_type() -> None:
    key = sign("hello", "test", TS, '{"a":"1"}')
    assert verify(query(key), b"a=1", None).data == {"a": "1"}
    key = sign("hello", "test", TS, '{"a":1}')
    assert verify(query(key), b' {"a":1}', None).data == {"a": 1}
    assert verify(query(key), b'{"a":1}', "").data == {"a": 1}


@pytest.mark.parametrize("missing", ["event", "timestamp", "auth_key"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_parameters(missing: str, how: str) -> None:
    q = query("k")
    if how == "absent":
        del q[missing]
    else:
        q[missing] = ""
    with pytest.raises(MissingParameters) as info:
        verify(q)
    assert (info.value.status, info.value.code) == (400, "400")


def test_empty_channel_is_missing_parameter() -> None:
    with pytest.raises(MissingParameters):
        verify(query("k"), channel="")


def test_missing_parameters_wins_over_everything() -> None:
    with pytest.raises(MissingParameters):
        verify({"timestamp": "0", "auth_key": "k"}, b"x" * 100, "text/plain", max_body=1)


@pytest.mark.parametrize("offset", [599, -599, 0])
def test_window_accepts(offset: int) -> None:
    key = sign("hello", "test", TS + offset, "{}")
    assert verify(query(key, ts=TS + offset)).timestamp == TS + offset


@pytest.mark.parametrize("offset", [600, -600, 10**6])
def test_window_refuses(offset: int) -> None:
    key = sign("hello", "test", TS + offset, "{}")
    with pytest.raises(TimestampOutOfBounds) as info:
        verify(query(key, ts=TS + offset))
    assert (info.value.status, info.value.code) == (403, "501")
    assert info.value.message == "Timestamp out of bounds (600 seconds)"


@pytest.mark.parametrize("raw", ["abc", "-", " ", "0x", "+-1", "\u00a0x"])
def test_timestamp_without_digits(raw: str) -> None:
    with pytest.raises(TimestampOutOfBounds):
        verify(query("k", ts=raw))


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("1700000000abc", TS),
        ("01700000000", TS),
        ("  +1700000000", TS),
        ("\u00a0\ufeff\n1700000000.9", TS),
        ("0x6553F100", TS),  # parseInt without a radix reads hex
        ("-1700000000", -TS),
        ("1e3", 1),
        ("00012", 12),
        ("0" * 500 + "7", 7),
        ("9" * 5000, None),
    ],
)
def test_js_parse_int(raw: str, value: int | None) -> None:
    parsed = js_parse_int(raw)
    if value is None:
        assert parsed is not None and parsed > 10**300
    else:
        assert parsed == value


def test_signature_uses_the_parsed_timestamp() -> None:
    key = sign("hello", "test", TS, "{}")
    assert verify(query(key, ts=f"0{TS}xyz")).timestamp == TS
    raw_key = sha256_hex(f"hello:test:0{TS}xyz:{{}}:{SECRET}")
    with pytest.raises(InvalidCredentials):
        verify(query(raw_key, ts=f"0{TS}xyz"))


def test_timestamp_wins_over_body_errors() -> None:
    with pytest.raises(TimestampOutOfBounds):
        verify(query("k", ts=0), b"x" * 10, "text/plain", max_body=1)


def test_body_too_large() -> None:
    key = sign("hello", "test", TS, '{"a":"1"}')
    assert verify(query(key), b"a=1", FORM, max_body=3).data == {"a": "1"}
    with pytest.raises(BodyTooLarge) as info:
        verify(query(key), b"a=1", FORM, max_body=2)
    assert info.value.status == 413


def test_body_too_large_wins_over_content_type() -> None:
    with pytest.raises(BodyTooLarge):
        verify(query("k"), b"xx", "text/plain", max_body=1)


@pytest.mark.parametrize("ctype", ["text/plain", "multipart/form-data; boundary=x", "x/y"])
def test_unsupported_content_type(ctype: str) -> None:
    with pytest.raises(UnsupportedContentType) as info:
        verify(query("bad"), b"a=1", ctype)
    assert info.value.status == 415


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{", JSON_TYPE),
        (b"   ", JSON_TYPE),
        (b"{'a':1}", JSON_TYPE),
        (b'{"a":NaN}', JSON_TYPE),
        (b'{"a":"\xff"}', JSON_TYPE),
        (b"[1,]", None),
        (b"a=\xff", FORM),
        (b"[" * 50_000, JSON_TYPE),
    ],
)
def test_invalid_body(body: bytes, ctype: str | None) -> None:
    with pytest.raises(InvalidBody) as info:
        verify(query("bad"), body, ctype)
    assert info.value.status == 400


@pytest.mark.parametrize("body", [b'"text"', b"1", b"null", b"true"])
def test_json_scalar_body_refused(body: bytes) -> None:
    with pytest.raises(InvalidBody) as info:
        verify(query("bad"), body, JSON_TYPE)
    assert info.value.message == "JSON body must be an object or array"


def test_body_errors_win_over_signature() -> None:
    with pytest.raises(InvalidBody):
        verify(query("bad"), b"{", JSON_TYPE)


def test_invalid_credentials_never_echo_the_key() -> None:
    key = "deadbeef" * 8
    with pytest.raises(InvalidCredentials) as info:
        verify(query(key))
    err = info.value
    assert (err.status, err.code, err.message) == (403, "403", "Invalid credentials")
    assert key not in str(err) and key not in json.dumps(err.body())


@pytest.mark.parametrize("mutate", ["channel", "event", "ts", "body", "secret", "upper"])
def test_any_change_breaks_the_signature(mutate: str) -> None:
    key = sign("hello", "test", TS, '{"a":"1"}')
    q, body, channel = query(key), b"a=1", "hello"
    if mutate == "channel":
        channel = "hello2"
    elif mutate == "event":
        q["event"] = "Test"
    elif mutate == "ts":
        q["timestamp"] = str(TS + 1)
    elif mutate == "body":
        body = b"a=2"
    elif mutate == "secret":
        q["auth_key"] = trigger_key("hello", "test", TS, '{"a":"1"}', "other")
    else:
        q["auth_key"] = key.upper()
    with pytest.raises(InvalidCredentials):
        verify(q, body, FORM, channel=channel)


def test_channel_case_does_not_matter_for_signature() -> None:
    key = sign("hello", "test", TS, "{}")
    assert verify(query(key), channel="HeLLo").channel == "HeLLo"


def test_socket_id() -> None:
    key = sign("hello", "test", TS, "{}")
    assert verify(query(key, socket_id="")).socket_id is None
    assert verify(query(key)).socket_id is None
    assert verify(query(key, socket_id="s1")).socket_id == "s1"


def test_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key = sign("hello", "test", TS, "{}")
    verify(query(key))
    assert calls and all(a == key.encode() for a, _ in calls)
    calls.clear()
    with pytest.raises(InvalidCredentials):
        verify(query("0" * 64))
    assert len(calls) == 2  # both the JS ({}) and PHP ([]) variants were compared


# -- invariant: only TriggerError escapes ----------------------------------------------------

_keys = st.sampled_from(["event", "timestamp", "auth_key", "socket_id", "x"])
_values = st.one_of(
    st.text(max_size=12),
    st.just(str(TS)),
    st.integers(TS - 700, TS + 700).map(str),
    st.text(alphabet="0123456789abcdefx+- \t", max_size=14),
)
_content_types = st.one_of(
    st.none(),
    st.sampled_from([JSON_TYPE, FORM, "text/plain", "application/x+json", "", ";", "multipart/x"]),
    st.text(max_size=20),
)
_form_text = st.text(alphabet=string.ascii_letters[:4] + "0129[]=&%+_é", max_size=40)
_bodies = st.one_of(
    st.binary(max_size=64),
    _form_text.map(str.encode),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=12,
    ).map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None)
@given(
    q=st.dictionaries(_keys, _values, max_size=5),
    body=_bodies,
    content_type=_content_types,
    channel=st.text(max_size=8),
)
def test_only_trigger_errors_escape(
    q: dict[str, str], body: bytes, content_type: str | None, channel: str
) -> None:
    try:
        trigger = verify(q, body, content_type, channel=channel, max_body=48)
    except TriggerError:
        return
    assert isinstance(trigger, Trigger)


@settings(max_examples=300, deadline=None)
@given(body=_form_text)
def test_parse_form_returns_plain_values(body: str) -> None:
    def plain(v: object) -> bool:
        if isinstance(v, dict):
            return all(isinstance(k, str) and plain(x) for k, x in v.items())
        if isinstance(v, list):
            return all(plain(x) for x in v)
        return isinstance(v, str) or v is True

    result = parse_form(body)
    assert isinstance(result, dict) and plain(result)
    canonical_json(result)
    php_json(result)
