"""The trigger requests the front answers itself (core/http_trigger.py): which are plain
enough, and the answer's bytes."""

from __future__ import annotations

from pushy_shard.core.http_head import parse_head, parse_request_line
from pushy_shard.core.http_trigger import (
    keeps_alive,
    plain_body_length,
    response,
    trigger_route,
)


def line(text: str):  # type: ignore[no-untyped-def]
    return parse_request_line(text.encode())


def head(*headers: str):  # type: ignore[no-untyped-def]
    text = "POST /pushy/channel/a/trigger HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers)
    return parse_head((text + "\r\n").encode())


def test_pushy_route_decodes_the_channel_and_the_query() -> None:
    route = trigger_route(
        line("POST /pushy/channel/a%20b/trigger?event=x&auth_key=k&e=&x=+ HTTP/1.1"), "")
    assert route is not None
    assert (route.protocol, route.channel, route.path) == ("pushy", "a b",
                                                           "/pushy/channel/a b/trigger")
    assert route.query == (("event", "x"), ("auth_key", "k"), ("e", ""), ("x", " "))


def test_pusher_routes_with_and_without_a_prefix() -> None:
    route = trigger_route(line("POST /apps/7/events?auth_key=k HTTP/1.1"), "")
    assert route is not None and (route.protocol, route.app_id, route.batch) == ("pusher", "7",
                                                                                 False)
    route = trigger_route(line("POST /p/apps/7/batch_events HTTP/1.1"), "/p")
    assert route is not None and (route.path, route.batch) == ("/p/apps/7/batch_events", True)
    assert trigger_route(line("POST /apps/7/events HTTP/1.1"), "/p") is None


def test_anything_else_is_left_to_aiohttp() -> None:
    for text in ("GET /pushy/channel/a/trigger HTTP/1.1",
                 "POST /pushy/channel/a/trigger HTTP/1.0",
                 "POST /pushy/channel/a%2Fb/trigger HTTP/1.1",  # an encoded /
                 "POST /pushy/channel//trigger HTTP/1.1",
                 "POST //pushy/channel/a/trigger HTTP/1.1",
                 "POST /pushy/channel/./trigger HTTP/1.1",
                 "POST /pushy/channel/a/b/trigger HTTP/1.1",
                 "POST /apps/7/channels HTTP/1.1",
                 "POST /apps//events HTTP/1.1",
                 "POST /apps/7/events/x HTTP/1.1"):
        assert trigger_route(line(text), "") is None, text


def test_only_plain_sized_bodies() -> None:
    assert plain_body_length(head("Content-Length: 12"), 100) == 12
    assert plain_body_length(head("Content-Length: 0"), 100) == 0
    assert plain_body_length(head("Content-Length: 101"), 100) is None  # aiohttp's 413
    assert plain_body_length(head(), 100) is None
    assert plain_body_length(head("Content-Length: 1", "Content-Length: 1"), 100) is None
    assert plain_body_length(head("Content-Length: +1"), 100) is None
    assert plain_body_length(head("Content-Length: ١"), 100) is None  # not ASCII digits
    assert plain_body_length(head("Transfer-Encoding: chunked"), 100) is None
    assert plain_body_length(head("Content-Length: 1", "Expect: 100-continue"), 100) is None


def test_keep_alive_unless_asked_to_close() -> None:
    assert keeps_alive(head())
    assert keeps_alive(head("Connection: keep-alive"))
    assert not keeps_alive(head("Connection: Close"))
    assert not keeps_alive(head("Connection: keep-alive, close"))


def test_response_bytes() -> None:
    out = response(201, b'{"a": 1}', {"Retry-After": "1"}, 0.0, close=True)
    assert out == (b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
                   b"Content-Length: 8\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n"
                   b"Retry-After: 1\r\nConnection: close\r\n\r\n{\"a\": 1}")
    assert response(503, b"{}", None, 0.0, close=False).startswith(
        b"HTTP/1.1 503 Service Unavailable\r\n")
