"""SockJS 0.3.3 conformance: the protocol as seen through the polling transports.
Grouped like sockjs-protocol-0.3.3.py: Protocol, XhrPolling, JsonPolling, JSONEncoding and
the polling half of HandlingClose. Pushy answers stand in for the suite's echo (wire.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import aiohttp

from tests.conformance.wire import (
    ANOTHER,
    BOGUS,
    CLOSED,
    assert_cors,
    assert_not_cached,
    assert_options,
    bogus_replies,
    closed_session,
    fetch,
    frame,
    new_session,
    open_polling,
)
from tests.integration.harness import Cluster


async def one_waiting_one_refused(url: str) -> tuple[aiohttp.ClientSession, asyncio.Task[bytes]]:
    """Two polls at once on an open session: whichever arrives second is refused with 2010
    at once, the other keeps waiting (its task is returned, with its client)."""
    http = aiohttp.ClientSession()

    async def poll() -> bytes:
        async with http.post(url + "/xhr") as response:
            assert response.status == 200
            return await response.read()

    polls = [asyncio.ensure_future(poll()) for _ in range(2)]
    done, pending = await asyncio.wait(polls, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and len(pending) == 1, "exactly one of two polls must be refused"
    assert done.pop().result() == (ANOTHER + "\n").encode()
    return http, pending.pop()


async def until_not_refused(url: str) -> str:
    """Poll until the server noticed an aborted receiver; the first other answer.

    The abort reaches the session when the server reads the dropped connection; a poll
    sent meanwhile is still refused with 2010, so this retries (bounded) on that answer only.
    """
    for _ in range(100):
        r = await fetch("POST", url + "/xhr")
        if r.text != ANOTHER + "\n":
            return r.text
        await asyncio.sleep(0.02)
    raise AssertionError("the aborted receiver still holds the session")


class TestProtocol:
    async def test_simple_session(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        r = await fetch("POST", url + "/xhr_send", body='["a"]')
        assert r.status == 204 and r.body == b""
        r = await fetch("POST", url + "/xhr")
        assert (r.status, r.text) == (200, bogus_replies(1) + "\n")
        # sending to a session that does not exist
        r = await fetch("POST", new_session(cluster) + "/xhr_send", body='["a"]')
        assert r.status == 404
        # one receiving request at a time: the second gets 2010, the first waits on
        http, first = await one_waiting_one_refused(url)
        try:
            r = await fetch("POST", url + "/xhr")
            assert (r.status, r.text) == (200, ANOTHER + "\n")
            assert not first.done()
        finally:
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await http.close()

    async def test_close_session(self, cluster: Cluster) -> None:
        url = await closed_session(cluster)
        for _ in range(3):  # until the session times out, every poll gets the close frame
            r = await fetch("POST", url + "/xhr")
            assert (r.status, r.text) == (200, CLOSED + "\n")


class TestXhrPolling:
    async def test_options(self, cluster: Cluster) -> None:
        for suffix in ("/xhr", "/xhr_send"):
            await assert_options(f"{cluster.base_url}{cluster.prefix}/abc/abc{suffix}",
                                 "OPTIONS, POST")

    async def test_transport(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        r = await fetch("POST", url + "/xhr", headers={"Origin": "http://app.test"})
        assert (r.status, r.text) == (200, "o\n")
        assert r.content_type == "application/javascript;charset=UTF-8"
        assert_cors(r, "http://app.test")
        assert_not_cached(r)  # iOS 6 caches POSTs
        r = await fetch("POST", url + "/xhr_send", body='["x"]')
        assert r.status == 204 and r.body == b""
        assert r.content_type == "text/plain;charset=UTF-8"  # even on 204 (Firefox)
        assert_cors(r)
        assert_not_cached(r)
        r = await fetch("POST", url + "/xhr")
        messages = [json.loads(m) for m in json.loads(r.text[1:])]
        assert messages[0]["event"] == "pushy:connect" and messages[1:] == [BOGUS]

    async def test_invalid_session(self, cluster: Cluster) -> None:
        r = await fetch("POST", new_session(cluster) + "/xhr_send", body='["x"]')
        assert r.status == 404

    async def test_invalid_json(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        r = await fetch("POST", url + "/xhr_send", body='["x')
        assert r.status == 500 and "Broken JSON encoding." in r.text
        r = await fetch("POST", url + "/xhr_send", body="")
        assert r.status == 500 and "Payload expected." in r.text
        r = await fetch("POST", url + "/xhr_send", body='["a"]')
        assert (r.status, r.body) == (204, b"")
        r = await fetch("POST", url + "/xhr")
        assert (r.status, r.text) == (200, bogus_replies(1) + "\n")

    async def test_content_types(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        types = ["text/plain", "T", "application/json", "application/xml", "",
                 "application/json; charset=utf-8", "text/xml; charset=utf-8", "text/xml"]
        for content_type in types:
            r = await fetch("POST", url + "/xhr_send", body='["a"]',
                            headers={"Content-Type": content_type})
            assert (r.status, r.body) == (204, b"")
        # every reply was queued; one poll takes them all, in one frame
        r = await fetch("POST", url + "/xhr")
        assert (r.status, r.text) == (200, bogus_replies(len(types)) + "\n")

    async def test_request_headers_cors(self, cluster: Cluster) -> None:
        for method in ("POST", "OPTIONS"):
            url = new_session(cluster)
            r = await fetch(method, url + "/xhr",
                            headers={"Access-Control-Request-Headers": "a, b, c"})
            assert_cors(r)
            assert r.header("Access-Control-Allow-Headers") == "a, b, c"
            for headers in ({"Access-Control-Request-Headers": ""}, {}):
                r = await fetch(method, new_session(cluster) + "/xhr", headers=headers)
                assert_cors(r)
                assert r.header("Access-Control-Allow-Headers") is None

    async def test_sending_empty_frame(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        assert (await fetch("POST", url + "/xhr_send", body="[]")).status == 204
        assert (await fetch("POST", url + "/xhr_send", body='["a"]')).status == 204
        assert (await fetch("POST", url + "/xhr")).text == bogus_replies(1) + "\n"

    async def test_oversized_send(self, cluster: Cluster) -> None:
        """Not in the suite: a send body is bounded like a WebSocket frame (1 MiB)."""
        url = new_session(cluster)
        await open_polling(url)
        r = await fetch("POST", url + "/xhr_send", body=json.dumps(["x" * (1 << 20)]))
        assert r.status == 413
        assert (await fetch("POST", url + "/xhr_send", body='["a"]')).status == 204

    async def test_payload_must_be_an_array_of_strings(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        for body in ('"a"', "{}", "[1]", '["a", null]'):
            r = await fetch("POST", url + "/xhr_send", body=body)
            assert r.status == 500 and "Payload expected." in r.text


def jsonp(callback: str, sockjs_frame: str) -> str:
    return f"/**/{callback}({json.dumps(sockjs_frame)});\r\n"


class TestJsonPolling:
    async def test_transport(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        r = await fetch("GET", url + "/jsonp?c=%63allback")
        assert r.status == 200
        assert r.content_type == "application/javascript;charset=UTF-8"
        assert_not_cached(r)
        assert r.header("X-Content-Type-Options") == "nosniff"
        assert r.text == jsonp("callback", "o")
        r = await fetch("GET", url + "/jsonp?c=callback")
        match = re.fullmatch(r'/\*\*/callback\((".*")\);\r\n', r.text)
        assert match and '\\"pushy:connect\\"' in json.loads(match.group(1))
        r = await fetch("POST", url + "/jsonp_send", body="d=%5B%22x%22%5D",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (r.status, r.text) == (200, "ok")  # not 204: Konqueror
        assert r.content_type == "text/plain;charset=UTF-8"
        assert_not_cached(r)
        r = await fetch("GET", url + "/jsonp?c=%63allback")
        assert (r.status, r.text) == (200, jsonp("callback", bogus_replies(1)))

    async def test_no_callback(self, cluster: Cluster) -> None:
        r = await fetch("GET", f"{cluster.base_url}{cluster.prefix}/a/a/jsonp")
        assert r.status == 500 and '"callback" parameter required' in r.text

    async def test_invalid_callback(self, cluster: Cluster) -> None:
        for callback in ("a%20b", "x()", "%3C%2Fscript%3E", "a" * 33):
            r = await fetch("GET", f"{cluster.base_url}{cluster.prefix}/a/a/jsonp?c={callback}")
            assert r.status == 500 and 'invalid "callback" parameter' in r.text

    async def test_invalid_json(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        assert (await fetch("GET", url + "/jsonp?c=x")).text == jsonp("x", "o")
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        r = await fetch("POST", url + "/jsonp_send", body="d=%5B%22x", headers=form)
        assert r.status == 500 and "Broken JSON encoding." in r.text
        for body in ("", "d=", "p=p"):
            r = await fetch("POST", url + "/jsonp_send", body=body, headers=form)
            assert r.status == 500 and "Payload expected." in r.text
        r = await fetch("POST", url + "/jsonp_send", body="d=%5B%22b%22%5D", headers=form)
        assert r.text == "ok"
        r = await fetch("GET", url + "/jsonp?c=x")
        assert r.text.startswith("/**/x(") and r.text.endswith(");\r\n")
        messages = [json.loads(m) for m in json.loads(json.loads(r.text[6:-4])[1:])]
        assert messages[0]["event"] == "pushy:connect" and messages[1:] == [BOGUS]

    async def test_content_types(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        assert (await fetch("GET", url + "/jsonp?c=x")).text == jsonp("x", "o")
        r = await fetch("GET", url + "/jsonp?c=x")
        assert "pushy:connect" in r.text
        r = await fetch("POST", url + "/jsonp_send", body="d=%5B%22abc%22%5D",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.text == "ok"
        r = await fetch("POST", url + "/jsonp_send", body='["%61bc"]',
                        headers={"Content-Type": "text/plain"})
        assert r.text == "ok"
        r = await fetch("GET", url + "/jsonp?c=x")
        assert (r.status, r.text) == (200, jsonp("x", bogus_replies(2)))

    async def test_close(self, cluster: Cluster) -> None:
        url = await closed_session(cluster)
        for _ in range(2):
            r = await fetch("GET", url + "/jsonp?c=x")
            assert r.text == jsonp("x", CLOSED)


# sockjs-protocol's escapable sets: what a server must escape, and what clients escape
ESCAPABLE_BY_SERVER = re.compile("[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f"
                                 "\ufff0-\uffff]")
ESCAPABLE_BY_CLIENT = re.compile(
    "[\\\\\"\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0604\u070f\u17b4\u17b5\u2000-\u20ff\ufeff"
    "\ufff0-\uffff\u0300-\u0333\u033d-\u0346\u034a-\u034c\u0350-\u0352\u0357-\u0358"
    "\u035c-\u0362\u0374\u037e\u0387\u0591-\u05af\u05c4\u0610-\u0617\u0653-\u0654"
    "\u0657-\u065b\u065d-\u065e\u06df-\u06e2\u06eb-\u06ec\u0730\u0732-\u0733\u0735-\u0736"
    "\u073a\u073d\u073f-\u0741\u0743\u0745\u0747\u07eb-\u07f1\u0951\u0958-\u095f"
    "\u09dc-\u09dd\u09df\u0a33\u0a36\u0a59-\u0a5b\u0a5e\u0b5c-\u0b5d\u0e38-\u0e39\u0f43"
    "\u0f4d\u0f52\u0f57\u0f5c\u0f69\u0f72-\u0f76\u0f78\u0f80-\u0f83\u0f93\u0f9d\u0fa2"
    "\u0fa7\u0fac\u0fb9\u1939-\u193a\u1a17\u1b6b\u1cda-\u1cdb\u1dc0-\u1dcf\u1dfc\u1dfe"
    "\u1f71\u1f73\u1f75\u1f77\u1f79\u1f7b\u1f7d\u1fbb\u1fbe\u1fc9\u1fcb\u1fd3\u1fdb\u1fe3"
    "\u1feb\u1fee-\u1fef\u1ff9\u1ffb\u1ffd\u2000-\u2001\u20d0-\u20d1\u20d4-\u20d7"
    "\u20e7-\u20e9\u2126\u212a-\u212b\u2329-\u232a\u2adc\u302b-\u302c\uaab2-\uaab3"
    "\uf900-\ufa0d\ufa10\ufa12\ufa15-\ufa1e\ufa20\ufa22\ufa25-\ufa26\ufa2a-\ufa2d"
    "\ufa30-\ufa6d\ufa70-\ufad9\ufb1d\ufb1f\ufb2a-\ufb36\ufb38-\ufb3c\ufb3e\ufb40-\ufb41"
    "\ufb43-\ufb44\ufb46-\ufb4e]")


def every_char(pattern: re.Pattern[str], start: int = 0) -> str:
    return "".join(chr(i) for i in range(start, 0x10000)
                   if not 0xD800 <= i <= 0xDFFF and pattern.match(chr(i)))


class TestJSONEncoding:
    async def test_xhr_server_encodes(self, cluster: Cluster) -> None:
        """Every character the server must escape arrives escaped (a trigger carries them)."""
        killer = every_char(ESCAPABLE_BY_SERVER)
        url = new_session(cluster)
        await open_polling(url)
        channel = f"enc-{uuid.uuid4().hex[:8]}"
        command = json.dumps({"command": "subscribe", "data": {"channel": channel}})
        await fetch("POST", url + "/xhr_send", body=json.dumps([command]))
        assert "subscription-success" in (await fetch("POST", url + "/xhr")).text
        status, _ = await cluster.trigger(channel, "k", {"s": killer})
        assert status == 201
        r = await fetch("POST", url + "/xhr")
        assert r.status == 200
        assert r.text.endswith("]\n")
        assert ESCAPABLE_BY_SERVER.search(r.text[:-1]) is None  # nothing of it raw on the wire
        for char in killer[32:]:  # past the controls (JSON escapes some as \n, \t...)
            assert f"\\u{ord(char):04x}" in r.text
        (message,) = json.loads(r.text[1:])
        assert json.loads(message)["data"] == {"s": killer}

    async def test_xhr_server_decodes(self, cluster: Cluster) -> None:
        """What clients escape is decoded: channel names made of those characters come back
        in subscription-success (names are at most 200 characters: several of them)."""
        chars = every_char(ESCAPABLE_BY_CLIENT).replace("\\", "").replace('"', "")
        names = [chars[i:i + 150] for i in range(0, len(chars), 150)]
        url = new_session(cluster)
        await open_polling(url)
        messages = [json.dumps({"command": "subscribe", "data": {"channel": name}},
                               ensure_ascii=False) for name in names]
        # the client escapes every one of those characters in the frame itself
        body = "[" + ",".join(
            '"' + "".join(f"\\u{ord(c):04x}" if ESCAPABLE_BY_CLIENT.match(c) else c
                          for c in m) + '"' for m in messages) + "]"
        assert body.isascii()
        assert (await fetch("POST", url + "/xhr_send", body=body)).status == 204
        seen: list[str] = []
        while len(seen) < len(names):
            r = await fetch("POST", url + "/xhr")
            for text in json.loads(r.text[1:]):
                reply = json.loads(text)
                assert reply["event"] == "pushy:subscription-success", reply
                seen.append(reply["data"]["channel"])
        assert sorted(seen) == sorted(names)


class TestHandlingClose:
    async def test_abort_xhr_polling(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        await open_polling(url)
        http, first = await one_waiting_one_refused(url)
        try:
            r = await fetch("POST", url + "/xhr")
            assert r.text == ANOTHER + "\n"
        finally:
            first.cancel()  # the network drops the waiting poll
            await asyncio.gather(first, return_exceptions=True)
            await http.close()
        # the session was closed and forgotten (or answers 1002): never 2010 again
        assert await until_not_refused(url) in ("o\n", 'c[1002,"Connection interrupted"]\n')


async def test_messages_wait_for_the_next_poll(cluster: Cluster) -> None:
    """Not in the suite: what arrives between polls is kept, in order, for the next one."""
    url = new_session(cluster)
    await open_polling(url)
    for n in range(5):
        command = json.dumps({"command": f"cmd{n}"})
        assert (await fetch("POST", url + "/xhr_send", body=json.dumps([command]))).status == 204
    r = await fetch("POST", url + "/xhr")
    unknown = {"event": "pushy:error", "data": {"message": "Unknown command", "code": "200"}}
    assert r.text == frame(*([unknown] * 5)) + "\n"
