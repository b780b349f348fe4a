"""SockJS 0.3.3 conformance: the server options the suite tests through its other services
(`cookie_needed_echo`, `disabled_websocket_echo`), and the session clock: heartbeats every
`heartbeat_delay`, sessions kept between polls and forgotten after `disconnect_delay`.
One server (`tuned`, one front) with jsessionid on, websocket off and short delays.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.conformance.conftest import TUNED_DISCONNECT, TUNED_HEARTBEAT
from tests.conformance.wire import (
    Answer,
    Stream,
    assert_no_cookie,
    bogus_replies,
    fetch,
    new_session,
    open_polling,
)
from tests.integration.harness import Cluster


def assert_cookie(r: Answer, value: str = "dummy") -> None:
    cookie = r.header("Set-Cookie") or ""
    parts = [part.strip() for part in cookie.split(";")]
    assert parts[0] == f"JSESSIONID={value}"
    assert parts[1].lower() == "path=/"


class TestJsessionidCookie:
    async def test_basic(self, tuned: Cluster) -> None:
        r = await fetch("GET", tuned.base_url + tuned.prefix + "/info")
        assert r.status == 200
        assert_no_cookie(r)
        assert json.loads(r.body)["cookie_needed"] is True

    async def test_xhr(self, tuned: Cluster) -> None:
        r = await fetch("POST", new_session(tuned) + "/xhr")
        assert (r.status, r.text) == (200, "o\n")
        assert_cookie(r)
        # a cookie the client has is echoed back
        r = await fetch("POST", new_session(tuned) + "/xhr",
                        headers={"Cookie": "JSESSIONID=abcdef"})
        assert (r.status, r.text) == (200, "o\n")
        assert_cookie(r, "abcdef")

    @pytest.mark.parametrize(("method", "path"), [("POST", "/xhr_streaming"),
                                                  ("GET", "/eventsource"),
                                                  ("GET", "/htmlfile?c=%63allback")])
    async def test_streaming(self, tuned: Cluster, method: str, path: str) -> None:
        stream = await Stream.open(method, new_session(tuned) + path)
        try:
            assert stream.status == 200
            assert_cookie(stream.answer())
        finally:
            await stream.close()

    async def test_jsonp(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        r = await fetch("GET", url + "/jsonp?c=%63allback")
        assert (r.status, r.text) == (200, '/**/callback("o");\r\n')
        assert_cookie(r)
        r = await fetch("POST", url + "/jsonp_send", body="d=%5B%22x%22%5D",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (r.status, r.text) == (200, "ok")
        assert_cookie(r)

    async def test_xhr_send_and_options(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        await open_polling(url)
        assert_cookie(await fetch("POST", url + "/xhr_send", body='["x"]'))
        assert_cookie(await fetch("OPTIONS", url + "/xhr"))


class TestDisabledWebsocket:
    async def test_info(self, tuned: Cluster) -> None:
        r = await fetch("GET", tuned.base_url + tuned.prefix + "/info")
        assert json.loads(r.body)["websocket"] is False

    async def test_websocket_urls_are_not_found(self, tuned: Cluster) -> None:
        base = f"{tuned.base_url}{tuned.prefix}"
        for url in (base + "/000/abc/websocket", base + "/websocket"):
            r = await fetch("GET", url, headers={"Upgrade": "websocket",
                                                 "Connection": "Upgrade"})
            assert r.status == 404
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await http.ws_connect(f"ws://127.0.0.1:{tuned.port}{tuned.prefix}/websocket")

    async def test_http_transports_still_work(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        await open_polling(url)
        assert (await fetch("POST", url + "/xhr_send", body='["x"]')).status == 204
        assert (await fetch("POST", url + "/xhr")).text == bogus_replies(1) + "\n"


class TestHeartbeat:
    async def test_waiting_poll_is_answered_with_a_heartbeat(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        await open_polling(url)
        started = time.monotonic()
        r = await fetch("POST", url + "/xhr")
        assert (r.status, r.text) == (200, "h\n")
        assert time.monotonic() - started < TUNED_HEARTBEAT * 3 + 1

    @pytest.mark.parametrize(("method", "path", "prelude_end", "first", "beat", "end"), [
        ("POST", "/xhr_streaming", b"h\n", b"o\n", b"h\n", b"\n"),
        ("GET", "/eventsource", b"\r\n", b"data: o\r\n\r\n", b"data: h\r\n\r\n",
         b"\r\n\r\n"),
        ("GET", "/htmlfile?c=x", b"\r\n\r\n", b'<script>\np("o");\n</script>\r\n',
         b'<script>\np("h");\n</script>\r\n', b"</script>\r\n"),
    ])
    async def test_streams_get_heartbeats(self, tuned: Cluster, method: str, path: str,
                                          prelude_end: bytes, first: bytes, beat: bytes,
                                          end: bytes) -> None:
        stream = await Stream.open(method, new_session(tuned) + path)
        try:
            await stream.until(prelude_end)
            assert await stream.until(end) == first
            assert b"pushy:connect" in await stream.until(end)
            assert await stream.until(end) == beat
            assert await stream.until(end) == beat  # and again, every heartbeat_delay
        finally:
            await stream.close()


class TestDisconnectDelay:
    async def test_session_lives_while_polled(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        await open_polling(url)
        until = time.monotonic() + TUNED_DISCONNECT * 2.5
        while time.monotonic() < until:  # back-to-back polls, each ended by a heartbeat
            assert (await fetch("POST", url + "/xhr")).text == "h\n"
        assert (await fetch("POST", url + "/xhr_send", body='["x"]')).status == 204
        assert (await fetch("POST", url + "/xhr")).text == bogus_replies(1) + "\n"

    async def test_session_is_forgotten_when_not_polled(self, tuned: Cluster) -> None:
        url = new_session(tuned)
        await open_polling(url)
        stopped = time.monotonic()
        # the clock runs from the end of the last poll; sends do not stop it
        deadline = stopped + TUNED_DISCONNECT + 5
        status = 204
        while status == 204 and time.monotonic() < deadline:
            status = (await fetch("POST", url + "/xhr_send", body="[]")).status
            await asyncio.sleep(0.05)
        assert status == 404
        assert time.monotonic() - stopped >= TUNED_DISCONNECT * 0.9
        # the same id now starts a new session
        assert (await fetch("POST", url + "/xhr")).text == "o\n"
