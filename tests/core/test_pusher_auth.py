"""pushy_shard.core.pusher_auth against PUSHER.md 3, 6, 8, 9 and 10, and the official Python
SDK (`pusher`, in the test extras): the requests it signs must verify."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pushy_shard.core import pusher_auth
from pushy_shard.core.pusher_api import parse_batch, parse_events
from pushy_shard.core.pusher_auth import (
    SignedRequest,
    auth_matches,
    channel_string,
    check_path_app,
    request_string,
    sign,
    signin_string,
    verify,
    webhook_signature,
)
from pushy_shard.errors import ApiError

try:
    import pusher
except ImportError:  # reported by the `sdk` fixture, so the tests fail rather than skip
    pusher = None

KEY = "278d425bdf160c739803"
SECRET = "7ad3773142a6692b25b8"
SOCKET_ID = "1234.1234"


@dataclass(frozen=True)
class App:
    id: str
    key: str
    secret: str


APP = App("3", KEY, SECRET)
OTHER = App("4", "other-key", "other-secret")
APPS = {APP.key: APP, OTHER.key: OTHER}


# -- 10: test vectors ------------------------------------------------------------------------

PRIVATE_SIG = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
SIGNIN_SIG = "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba"
PRESENCE_SIG = "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80"
PRESENCE_DATA = '{"user_id":10,"user_info":{"name":"Mr. Channels"}}'
USER_DATA = '{"id":"12345"}'

HTTP_BODY = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
HTTP_MD5 = "ec365a775a4cd0599faeb73354201b6f"
HTTP_TIME = 1353088179
HTTP_SIG = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
HTTP_QUERY = (
    ("auth_key", KEY),
    ("auth_timestamp", str(HTTP_TIME)),
    ("auth_version", "1.0"),
    ("body_md5", HTTP_MD5),
)


def test_10_private_channel() -> None:
    text = channel_string(SOCKET_ID, "private-foobar")
    assert text == "1234.1234:private-foobar"
    assert sign(SECRET, text) == PRIVATE_SIG
    assert auth_matches(f"{KEY}:{PRIVATE_SIG}", KEY, SECRET, text)


def test_10_signin() -> None:
    text = signin_string(SOCKET_ID, USER_DATA)
    assert text == '1234.1234::user::{"id":"12345"}'
    assert sign(SECRET, text) == SIGNIN_SIG
    assert auth_matches(f"{KEY}:{SIGNIN_SIG}", KEY, SECRET, text)


def test_10_presence() -> None:
    text = channel_string(SOCKET_ID, "presence-foobar", PRESENCE_DATA)
    assert text == f"1234.1234:presence-foobar:{PRESENCE_DATA}"
    assert sign(SECRET, text) == PRESENCE_SIG
    assert auth_matches(f"{KEY}:{PRESENCE_SIG}", KEY, SECRET, text)


def test_10_http_request() -> None:
    assert hashlib.md5(HTTP_BODY).hexdigest() == HTTP_MD5
    assert request_string("POST", "/apps/3/events", HTTP_QUERY) == (
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    request = SignedRequest("POST", "/apps/3/events", (*HTTP_QUERY, ("auth_signature", HTTP_SIG)),
                            HTTP_BODY)
    assert verify(request, APPS, HTTP_TIME) is APP


# -- 3, 6: client auth -----------------------------------------------------------------------


def test_sign_is_lowercase_hex_hmac_sha256() -> None:
    expected = hmac.new(b"s", "é".encode(), hashlib.sha256).hexdigest()
    assert sign("s", "é") == expected == expected.lower()


def test_presence_string_keeps_channel_data_exactly() -> None:
    spaced = '{"user_id": 10, "user_info": {"name": "Mr. Channels"}}'  # as the Python SDK
    text = channel_string(SOCKET_ID, "presence-foobar", spaced)
    assert text.endswith(spaced)
    assert sign(SECRET, text) != PRESENCE_SIG


def test_encrypted_channel_signs_like_a_private_one() -> None:
    assert channel_string(SOCKET_ID, "private-encrypted-x") == "1234.1234:private-encrypted-x"


@pytest.mark.parametrize("auth", [
    f"{KEY}:{PRIVATE_SIG.upper()}",  # hex is compared as text: lowercase only
    f"other:{PRIVATE_SIG}",  # the key is part of the compare
    PRIVATE_SIG,  # no key
    f"{KEY}:{PRIVATE_SIG[:-1]}",  # short
    f"{KEY}:{PRIVATE_SIG}0",  # long
    f"{KEY}:{PRIVATE_SIG} ",
    f" {KEY}:{PRIVATE_SIG}",
    "",
    f"{KEY}:{SIGNIN_SIG}",  # another string's signature
])
def test_auth_refused(auth: str) -> None:
    assert not auth_matches(auth, KEY, SECRET, channel_string(SOCKET_ID, "private-foobar"))


@pytest.mark.parametrize("auth", [None, 1, b"x", [f"{KEY}:{PRIVATE_SIG}"], {}, True])
def test_auth_not_a_string_is_false(auth: object) -> None:
    assert auth_matches(auth, KEY, SECRET, "1234.1234:private-foobar") is False


def test_auth_with_lone_surrogate_is_false() -> None:
    assert auth_matches(f"{KEY}:\ud800{PRIVATE_SIG}", KEY, SECRET, "x") is False


def test_string_with_lone_surrogate_signs_without_raising() -> None:
    text = channel_string(SOCKET_ID, "presence-x", '{"user_id":"\ud800"}')
    assert auth_matches(f"{KEY}:{sign(SECRET, text)}", KEY, SECRET, text)
    assert sign(SECRET, text) != sign(SECRET, text.replace("\ud800", "\ufffd"))


def test_auth_is_compared_in_constant_time_on_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(pusher_auth.hmac, "compare_digest", spy)
    assert not auth_matches(f"{KEY}:abc", KEY, SECRET, "1234.1234:private-foobar")
    assert [(type(a), type(b)) for a, b in calls] == [(bytes, bytes)]
    assert len(calls[0][0]) != len(calls[0][1])  # a wrong length still goes through it


# -- 9: webhooks -----------------------------------------------------------------------------


def test_webhook_signature_over_raw_body() -> None:
    body = b'{"time_ms":1,"events":[{"name":"channel_occupied","channel":"a"}]}'
    assert webhook_signature(SECRET, body) == sign(SECRET, body.decode())
    assert webhook_signature(SECRET, body) == hmac.new(SECRET.encode(), body,
                                                       hashlib.sha256).hexdigest()


# -- 8: HTTP API requests --------------------------------------------------------------------

NOW = 1_700_000_000


def signed(method: str, path: str, params: list[tuple[str, str]], body: bytes = b"", *,
           app: App = APP, now: int = NOW, md5: bool | None = None) -> SignedRequest:
    """A request signed as an SDK would sign it; `md5` None: body_md5 iff a body."""
    query = [("auth_key", app.key), ("auth_timestamp", str(now)), ("auth_version", "1.0")]
    if md5 or (md5 is None and body):
        query.append(("body_md5", hashlib.md5(body).hexdigest()))
    query = [*params, *query]
    signature = sign(app.secret, request_string(method, path, query))
    return SignedRequest(method, path, (*query, ("auth_signature", signature)), body)


def refusal(request: SignedRequest, now: float = NOW) -> str:
    with pytest.raises(ApiError) as info:
        verify(request, APPS, now)
    assert info.value.status == 401
    assert SECRET not in info.value.message
    return info.value.message


def with_param(request: SignedRequest, name: str, value: str) -> SignedRequest:
    query = tuple((k, value if k == name else v) for k, v in request.query)
    return SignedRequest(request.method, request.path, query, request.body)


def test_signed_post_verifies() -> None:
    assert verify(signed("POST", "/apps/3/events", [], b"{}"), APPS, NOW) is APP


def test_app_found_by_auth_key() -> None:
    assert verify(signed("POST", "/apps/4/events", [], b"{}", app=OTHER), APPS, NOW) is OTHER


@pytest.mark.parametrize("name", ["auth_key", "auth_timestamp", "auth_version",
                                  "auth_signature"])
def test_missing_auth_param_refused(name: str) -> None:
    request = signed("GET", "/apps/3/channels", [])
    query = tuple(p for p in request.query if p[0] != name)
    assert refusal(SignedRequest("GET", request.path, query, b"")) == f"Missing {name}"


def test_auth_version_must_be_1_0() -> None:
    request = signed("GET", "/apps/3/channels", [])
    assert "auth_version" in refusal(with_param(request, "auth_version", "2.0"))


def test_unknown_key_refused_without_echo() -> None:
    request = signed("GET", "/apps/3/channels", [], app=App("3", "nobody", SECRET))
    message = refusal(request)
    assert message == "Unknown auth_key"
    assert "nobody" not in message


def test_wrong_secret_refused_without_echoing_the_expected_signature() -> None:
    request = signed("GET", "/apps/3/channels", [], app=App("3", KEY, "wrong"))
    message = refusal(request)
    assert message == "Invalid auth_signature"
    expected = sign(SECRET, request_string("GET", "/apps/3/channels", request.query))
    assert expected not in message


@pytest.mark.parametrize("skew", [0, 1, 599, 600, -600, -1])
def test_timestamp_window_accepts_600_s(skew: int) -> None:
    assert verify(signed("GET", "/apps/3/channels", []), APPS, NOW + skew) is APP


@pytest.mark.parametrize("skew", [601, -601, 600.5, 10**9])
def test_timestamp_window_refuses_past_600_s(skew: float) -> None:
    assert "600 s" in refusal(signed("GET", "/apps/3/channels", []), NOW + skew)


@pytest.mark.parametrize("stamp", ["", "1.5", "-1", "+1", "1e9", " 1", "abc", "١٢٣", "9" * 16])
def test_timestamp_must_be_integer_seconds(stamp: str) -> None:
    request = signed("GET", "/apps/3/channels", [])
    assert "integer" in refusal(with_param(request, "auth_timestamp", stamp))


def test_body_without_body_md5_refused() -> None:
    assert refusal(signed("POST", "/apps/3/events", [], b"{}", md5=False)) == "Missing body_md5"


def test_body_md5_must_match_body() -> None:
    request = signed("POST", "/apps/3/events", [], b"{}")
    tampered = SignedRequest(request.method, request.path, request.query, b"{ }")
    assert refusal(tampered) == "body_md5 does not match the body"


def test_get_with_body_md5_of_nothing_verifies() -> None:
    request = signed("GET", "/apps/3/channels", [], b"", md5=True)
    assert ("body_md5", "d41d8cd98f00b204e9800998ecf8427e") in request.query
    assert verify(request, APPS, NOW) is APP


def test_get_with_body_md5_of_something_refused() -> None:
    request = signed("GET", "/apps/3/channels", [], b"", md5=True)
    request = with_param(request, "body_md5", hashlib.md5(b"x").hexdigest())
    assert refusal(request) == "body_md5 does not match the body"


def test_body_md5_is_signed_never_dropped() -> None:
    request = signed("GET", "/apps/3/channels", [], b"", md5=True)
    stripped = tuple(p for p in request.query if p[0] != "body_md5")
    refused = SignedRequest(request.method, request.path, stripped, request.body)
    assert refusal(refused) == "Invalid auth_signature"


def test_method_and_path_are_signed() -> None:
    request = signed("POST", "/apps/3/events", [], b"{}")
    assert refusal(SignedRequest("PUT", request.path, request.query, request.body)) == (
        "Invalid auth_signature")
    assert refusal(SignedRequest("POST", "/apps/3/batch_events", request.query,
                                 request.body)) == "Invalid auth_signature"


def test_method_is_upper_cased() -> None:
    request = signed("GET", "/apps/3/channels", [])
    assert verify(SignedRequest("get", request.path, request.query, b""), APPS, NOW) is APP


def test_extra_params_are_signed() -> None:
    request = signed("GET", "/apps/3/channels", [("filter_by_prefix", "presence-"),
                                                   ("info", "user_count")])
    assert verify(request, APPS, NOW) is APP
    assert refusal(with_param(request, "info", "subscription_count")) == (
        "Invalid auth_signature")


def test_repeated_params_are_all_signed_sorted_by_value() -> None:
    query = [("info", "b"), ("x", "2"), ("info", "a"), ("x", "1")]
    text = request_string("GET", "/p", query)
    assert text == "GET\n/p\ninfo=a&info=b&x=1&x=2"
    request = signed("GET", "/apps/3/channels", query)
    assert verify(request, APPS, NOW) is APP
    dropped = SignedRequest("GET", request.path, request.query[1:], b"")
    assert refusal(dropped) == "Invalid auth_signature"


def test_params_signed_as_received_unescaped() -> None:
    query = [("filter_by_prefix", "presence-a b&c=d"), ("info", "é,ü")]
    assert request_string("GET", "/p", query).endswith("filter_by_prefix=presence-a b&c=d&info=é,ü")
    assert verify(signed("GET", "/apps/3/channels", query), APPS, NOW) is APP


def test_upper_case_keys_are_lower_cased() -> None:
    query = [("AUTH_KEY", KEY), ("Auth_Timestamp", str(NOW)), ("auth_VERSION", "1.0"),
             ("Info", "user_count"), ("Body_MD5", hashlib.md5(b"{}").hexdigest())]
    text = request_string("POST", "/apps/3/events", query)
    assert text == ("POST\n/apps/3/events\nauth_key=278d425bdf160c739803"
                    f"&auth_timestamp={NOW}&auth_version=1.0"
                    "&body_md5=99914b932bd37a50b983c5e7c90ae93b&info=user_count")
    request = SignedRequest("POST", "/apps/3/events",
                            (*query, ("AUTH_SIGNATURE", sign(SECRET, text))), b"{}")
    assert verify(request, APPS, NOW) is APP


@pytest.mark.parametrize("name", ["auth_key", "AUTH_KEY", "auth_timestamp", "body_md5",
                                  "auth_signature", "auth_version"])
def test_repeated_auth_param_refused(name: str) -> None:
    request = signed("POST", "/apps/3/events", [], b"{}")
    value = dict(request.query)[name.lower()]
    repeated = SignedRequest("POST", request.path, (*request.query, (name, value)), b"{}")
    assert refusal(repeated) == f"{name.lower()} given more than once"


def test_path_prefix_stripped_by_the_caller() -> None:
    # the SDK was pointed at /pusher/apps/3/events; the server strips "/pusher" first and
    # both sides sign what the Pusher path is
    request = signed("POST", "/apps/3/events", [], b"{}")
    assert verify(request, APPS, NOW) is APP
    prefixed = SignedRequest("POST", "/pusher/apps/3/events", request.query, b"{}")
    assert refusal(prefixed) == "Invalid auth_signature"


@pytest.mark.parametrize("signature", ["", "0", "ab" * 33, "x" * 64, "\ud800" * 64, "é" * 64])
def test_wrong_length_or_odd_signature_refused(signature: str) -> None:
    request = with_param(signed("GET", "/apps/3/channels", []), "auth_signature", signature)
    assert refusal(request) == "Invalid auth_signature"


def test_signature_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(pusher_auth.hmac, "compare_digest", spy)
    request = with_param(signed("GET", "/apps/3/channels", []), "auth_signature", "abc")
    refusal(request)
    assert [(type(a), type(b), len(a), len(b)) for a, b in calls] == [(bytes, bytes, 3, 64)]


def test_upper_case_hex_signature_refused() -> None:
    request = signed("GET", "/apps/3/channels", [])
    signature = dict(request.query)["auth_signature"]
    assert refusal(with_param(request, "auth_signature", signature.upper())) == (
        "Invalid auth_signature")


def test_check_path_app() -> None:
    check_path_app(APP, "3")
    with pytest.raises(ApiError) as info:
        check_path_app(APP, "4")
    assert info.value.status == 401
    with pytest.raises(ApiError):
        check_path_app(APP, "03")


_values = st.text(st.characters(codec="utf-8"), max_size=8)


@given(st.lists(st.tuples(st.text("abcXYZ_", min_size=1, max_size=4), _values), max_size=6),
       st.randoms(use_true_random=False))
def test_any_query_order_signs_the_same(params: list[tuple[str, str]], rnd: Any) -> None:
    request = signed("GET", "/apps/3/channels", params)
    shuffled = list(request.query)
    rnd.shuffle(shuffled)
    assert request_string("GET", request.path, shuffled) == request_string(
        "GET", request.path, request.query)
    assert verify(SignedRequest("GET", request.path, tuple(shuffled), b""), APPS, NOW) is APP


# -- the official Python SDK -----------------------------------------------------------------


class Capture:
    """A `pusher` HTTP backend that keeps each request instead of sending it."""

    def __init__(self, client: Any, sink: list[Any]) -> None:
        self.sink = sink

    def send_request(self, request: Any) -> dict[str, Any]:
        self.sink.append(request)
        return {}


@pytest.fixture
def sdk() -> tuple[Any, list[Any]]:
    if pusher is None:
        pytest.fail("the official Python SDK must be installed for these tests: "
                    "pip install pusher==3.3.4 (the project's test extras)")
    sink: list[Any] = []
    client = pusher.Pusher(app_id=APP.id, key=KEY, secret=SECRET, ssl=False, host="localhost",
                           port=8080, backend=Capture, sink=sink)
    return client, sink


def as_received(request: Any) -> SignedRequest:
    """What the server reads of the request the SDK would send: its URL's path and query."""
    url = urllib.parse.urlsplit(request.url)
    query = tuple(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    return SignedRequest(request.method, url.path, query, request.body)


def test_sdk_trigger_verifies(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.trigger(["presence-a", "b"], "my-event", {"message": "é"}, socket_id="1.2")
    (sent,) = sink
    received = as_received(sent)
    assert received.method == "POST"
    assert received.path == "/apps/3/events"
    assert verify(received, APPS, time.time()) is APP
    check_path_app(APP, received.path.split("/")[2])
    event = parse_events(received.body)
    assert (event.name, event.channels, event.socket_id) == ("my-event", ("presence-a", "b"),
                                                             "1.2")
    assert json.loads(event.data) == {"message": "é"}


def test_sdk_trigger_refused_by_another_app(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.trigger("a", "e", "x")
    received = as_received(sink[0])
    forged = {KEY: App("3", KEY, "not-the-secret")}
    with pytest.raises(ApiError) as info:
        verify(received, forged, time.time())
    assert info.value.status == 401


def test_sdk_trigger_batch_verifies(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.trigger_batch([{"channel": "a", "name": "e1", "data": {"x": 1}},
                          {"channel": "private-b", "name": "e2", "data": "text"}])
    received = as_received(sink[0])
    assert received.path == "/apps/3/batch_events"
    assert verify(received, APPS, time.time()) is APP
    events = parse_batch(received.body)
    assert [(e.name, e.channels, e.data) for e in events] == [
        ("e1", ("a",), '{"x": 1}'),  # the SDK encodes data itself, with spaces: kept
        ("e2", ("private-b",), "text"),
    ]


def test_sdk_send_to_user_verifies(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.send_to_user("12345", "e", {"a": 1})
    received = as_received(sink[0])
    assert verify(received, APPS, time.time()) is APP
    assert parse_events(received.body).channels == ("#server-to-user-12345",)


def test_sdk_channels_info_get_signs_md5_of_nothing(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.channels_info(prefix_filter="presence-", attributes=["user_count"])
    received = as_received(sink[0])
    assert received.method == "GET"
    assert received.body == b""
    assert ("body_md5", hashlib.md5(b"").hexdigest()) in received.query
    assert ("filter_by_prefix", "presence-") in received.query
    assert verify(received, APPS, time.time()) is APP


def test_sdk_channel_info_users_info_and_terminate_verify(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.channel_info("presence-a", attributes=["user_count", "subscription_count"])
    client.users_info("presence-a")
    client.terminate_user_connections("12345")
    paths = []
    for sent in sink:
        received = as_received(sent)
        assert verify(received, APPS, time.time()) is APP
        paths.append((received.method, received.path))
    assert paths == [("GET", "/apps/3/channels/presence-a"),
                     ("GET", "/apps/3/channels/presence-a/users"),
                     ("POST", "/users/12345/terminate_connections")]


def test_sdk_requests_outside_the_window_refused(sdk: tuple[Any, list[Any]]) -> None:
    client, sink = sdk
    client.channels_info()
    received = as_received(sink[0])
    stamp = int(dict(received.query)["auth_timestamp"])
    assert verify(received, APPS, stamp + 600) is APP
    with pytest.raises(ApiError):
        verify(received, APPS, stamp + 601)


def test_sdk_channel_auth_matches(sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    private = client.authenticate("private-foobar", SOCKET_ID)
    assert private["auth"] == f"{KEY}:{PRIVATE_SIG}"
    assert auth_matches(private["auth"], KEY, SECRET, channel_string(SOCKET_ID,
                                                                     "private-foobar"))
    presence = client.authenticate("presence-foobar", SOCKET_ID,
                                   {"user_id": 10, "user_info": {"name": "Mr. Channels"}})
    text = channel_string(SOCKET_ID, "presence-foobar", presence["channel_data"])
    assert " " in presence["channel_data"]  # the SDK's spaces, signed as they are
    assert auth_matches(presence["auth"], KEY, SECRET, text)


def test_sdk_signin_matches(sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    signin = client.authenticate_user(SOCKET_ID, {"id": "12345"})
    assert auth_matches(signin["auth"], KEY, SECRET, signin_string(SOCKET_ID,
                                                                   signin["user_data"]))


def test_sdk_accepts_our_webhook_signature(sdk: tuple[Any, list[Any]]) -> None:
    client, _ = sdk
    body = json.dumps({"time_ms": int(time.time() * 1000),
                       "events": [{"name": "channel_occupied", "channel": "a"}]},
                      separators=(",", ":")).encode()
    assert client.validate_webhook(KEY, webhook_signature(SECRET, body), body) is not None
    assert client.validate_webhook(KEY, webhook_signature("wrong", body), body) is None
