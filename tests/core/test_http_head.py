"""The request head reader (RFC 9112 3-5) and the WebSocket handshake rules (RFC 6455 4)
the front's own connection layer applies before it decides who serves a connection."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pushy_shard.core.handshake import (
    Route,
    accept_value,
    error_response,
    fast_path_candidate,
    switching_protocols,
    upgrade_key,
    websocket_route,
)
from pushy_shard.core.http_head import (
    MAX_HEAD_BYTES,
    check_size,
    head_end,
    line_end,
    parse_head,
    parse_request_line,
)
from pushy_shard.errors import BadRequestHead, HeadTooLarge

PREFIX = "/pushy/socket"
KEY = base64.b64encode(b"0123456789abcdef").decode()


def upgrade_head(target: str = PREFIX + "/000/abc/websocket", **changes: str | None) -> bytes:
    headers = {"Host": "example.com", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": KEY}
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- RFC 9112 3: the request line --------------------------------------------------------------


class TestRequestLine:
    def test_parts(self) -> None:
        line = parse_request_line(b"GET /a?b=c HTTP/1.1\r\n")
        assert (line.method, line.target, line.version) == ("GET", "/a?b=c", "HTTP/1.1")

    @pytest.mark.parametrize("raw", [
        b"GET /a HTTP/1.1 extra", b"GET  /a HTTP/1.1", b"get /a HTTP/1.1", b"GET /a HTTP/x",
        b"GET /\xff HTTP/1.1", b"", b"GET /a", b"GET /a\tb HTTP/1.1",
    ])
    def test_refused(self, raw: bytes) -> None:
        with pytest.raises(BadRequestHead):
            parse_request_line(raw)

    def test_line_end(self) -> None:
        assert line_end(b"GET / HTTP/1.1") == -1
        assert line_end(b"GET / HTTP/1.1\r\nHost") == len(b"GET / HTTP/1.1\r\n")


# -- RFC 9112 5: header fields -------------------------------------------------------------------


class TestHead:
    def test_headers_lower_cased_in_order_with_repeats(self) -> None:
        head = parse_head(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a:  2 \r\n\r\n")
        assert head.headers == (("host", "a"), ("x-a", "1"), ("x-a", "2"))
        assert head.get("x-a") == "1, 2" and head.count("x-a") == 2
        assert head.get("missing") is None

    def test_bare_lf_line_ends(self) -> None:
        head = parse_head(b"GET / HTTP/1.1\nHost: a\n\n")
        assert head.get("host") == "a"

    def test_values_are_latin1(self) -> None:
        assert parse_head(b"GET / HTTP/1.1\r\nX: caf\xe9\r\n\r\n").get("x") == "caf\xe9"

    @pytest.mark.parametrize("line", [
        b" folded", b"No-Colon", b"Bad Name: x", b"Name : x", b"X: a\x00b", b": empty",
    ])
    def test_refused_header_lines(self, line: bytes) -> None:
        with pytest.raises(BadRequestHead):
            parse_head(b"GET / HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n")

    def test_head_end(self) -> None:
        head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
        assert head_end(head[:-1]) == -1
        assert head_end(head + b"body") == len(head)
        assert head_end(b"GET / HTTP/1.1\nHost: a\n\nrest") == len(b"GET / HTTP/1.1\nHost: a\n\n")

    def test_size_cap(self) -> None:
        check_size(b"x" * MAX_HEAD_BYTES, line_complete=False)  # at the cap: keep reading
        with pytest.raises(HeadTooLarge) as line:
            check_size(b"x" * (MAX_HEAD_BYTES + 1), line_complete=False)
        with pytest.raises(HeadTooLarge) as head:
            check_size(b"x" * (MAX_HEAD_BYTES + 1), line_complete=True)
        assert (line.value.status, head.value.status) == (414, 431)
        assert isinstance(head.value, BadRequestHead)

    def test_complete_but_oversized_heads_are_refused(self) -> None:
        big = b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
        with pytest.raises(HeadTooLarge) as head:
            parse_head(big)
        with pytest.raises(HeadTooLarge) as line:
            parse_request_line(b"GET /" + b"a" * MAX_HEAD_BYTES + b" HTTP/1.1")
        assert (line.value.status, head.value.status) == (414, 431)

    @settings(max_examples=300)
    @given(st.binary(max_size=300))
    def test_any_bytes_parse_or_raise_bad_request_head(self, data: bytes) -> None:
        try:
            parse_head(data)
        except BadRequestHead:
            pass

    @settings(max_examples=200)
    @given(st.lists(st.tuples(st.from_regex(r"[A-Za-z0-9\-]{1,20}", fullmatch=True),
                              st.from_regex(r"[ -~]{0,40}", fullmatch=True)), max_size=10))
    def test_well_formed_heads_round_trip(self, headers: list[tuple[str, str]]) -> None:
        raw = "GET /x HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        head = parse_head(raw.encode())
        assert head.headers == tuple((k.lower(), v.strip(" \t")) for k, v in headers)


# -- which URLs are WebSocket transports (PROTOCOL.md 1) ---------------------------------------


class TestRoute:
    @pytest.mark.parametrize(("target", "route"), [
        (PREFIX + "/websocket", Route.RAW),
        (PREFIX + "/websocket?x=1", Route.RAW),
        (PREFIX + "/000/abc/websocket", Route.SOCKJS),
        (PREFIX + "/a/b/websocket?t=1", Route.SOCKJS),
        (PREFIX + "//abc/websocket", None),
        (PREFIX + "/0.0/abc/websocket", None),  # aiohttp answers 404
        (PREFIX + "/000/a.b/websocket", None),
        (PREFIX + "/000/abc/websocket/", None),
        (PREFIX + "/000/a%62c/websocket", None),  # aiohttp decodes escapes
        (PREFIX + "/000/abc/xhr", None),
        (PREFIX + "websocket", None),
        ("/other/websocket", None),
        (PREFIX + "/x/y/z/websocket", None),
    ])
    def test_routes(self, target: str, route: Route | None) -> None:
        assert websocket_route(target, PREFIX) is route

    def test_only_http11_gets_are_candidates(self) -> None:
        target = PREFIX + "/websocket"
        assert fast_path_candidate(parse_request_line(f"GET {target} HTTP/1.1".encode()),
                                   PREFIX) is Route.RAW
        for line in (f"POST {target} HTTP/1.1", f"GET {target} HTTP/1.0"):
            assert fast_path_candidate(parse_request_line(line.encode()), PREFIX) is None


# -- RFC 6455 4.2: the opening handshake ---------------------------------------------------------


class TestUpgrade:
    def test_valid_upgrade_gives_its_key(self) -> None:
        assert upgrade_key(parse_head(upgrade_head())) == KEY

    def test_connection_token_lists_and_case(self) -> None:
        head = upgrade_head(Connection="keep-alive, Upgrade", Upgrade="WebSocket")
        assert upgrade_key(parse_head(head)) == KEY

    @pytest.mark.parametrize("changes", [
        {"Upgrade": None}, {"Upgrade": "h2c"}, {"Connection": "close"}, {"Connection": None},
        {"Connection": "upgrades"}, {"Sec-WebSocket-Version": "8"},
        {"Sec-WebSocket-Version": None}, {"Sec-WebSocket-Key": None},
        {"Sec-WebSocket-Key": "short"}, {"Sec-WebSocket-Key": base64.b64encode(b"x" * 15).decode()},
        {"Sec-WebSocket-Key": "!!!!!!!!!!!!!!!!!!!!!!!!"},
    ])
    def test_anything_else_is_not_ours(self, changes: dict[str, str | None]) -> None:
        assert upgrade_key(parse_head(upgrade_head(**changes))) is None

    def test_repeated_key_is_not_ours(self) -> None:
        raw = upgrade_head().replace(b"\r\n\r\n", f"\r\nSec-WebSocket-Key: {KEY}\r\n\r\n".encode())
        assert upgrade_key(parse_head(raw)) is None

    def test_accept_value_of_the_rfc_example(self) -> None:
        # RFC 6455 1.3
        assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

    def test_switching_protocols(self) -> None:
        answer = switching_protocols(KEY, (("X-Pushy-Front", "1"),))
        expected = base64.b64encode(hashlib.sha1(
            (KEY + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        head = parse_head(answer.replace(b"HTTP/1.1 101 Switching Protocols",
                                         b"GET / HTTP/1.1"))
        assert answer.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert answer.endswith(b"\r\n\r\n")
        assert head.get("sec-websocket-accept") == expected
        assert head.get("upgrade") == "websocket" and head.get("connection") == "upgrade"
        assert head.get("x-pushy-front") == "1"
        assert head.get("content-length") is None

    def test_error_response(self) -> None:
        answer = error_response(431, "Request Header Fields Too Large")
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"Connection: close" in head
        assert f"Content-Length: {len(body)}".encode() in head
