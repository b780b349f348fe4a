"""SockJS 0.3.3 conformance: the service's static URLs, session URLs, the WebSocket URLs and
plain HTTP/1.0 and 1.1 behaviour. Grouped like sockjs-protocol-0.3.3.py (BaseUrlGreeting,
IframePage, InfoTest, SessionURLs, WebsocketHttpErrors, Websocket*, RawWebsocket,
Http10/Http11), written for a Pushy server (see wire.py for what replaces the echo service).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid

import aiohttp

from tests.conformance.wire import (
    BOGUS,
    UNKNOWN,
    RawHttp,
    assert_cacheable_for_long,
    assert_cors,
    assert_no_cookie,
    assert_not_cached,
    assert_options,
    bogus_replies,
    fetch,
    frame,
    new_session,
)
from tests.integration.harness import Cluster


def base(cluster: Cluster) -> str:
    return cluster.base_url + cluster.prefix


class TestBaseUrlGreeting:
    async def test_greeting(self, cluster: Cluster) -> None:
        for url in (base(cluster), base(cluster) + "/"):
            r = await fetch("GET", url)
            assert r.status == 200
            assert r.content_type == "text/plain;charset=UTF-8"
            assert r.text == "Welcome to SockJS!\n"
            assert_no_cookie(r)

    async def test_not_found(self, cluster: Cluster) -> None:
        for suffix in ("/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/"):
            assert (await fetch("GET", base(cluster) + suffix)).status == 404


IFRAME_BODY = re.compile(r"""
^<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function\(\){SockJS.bootstrap_iframe\(\);};
  </script>
  <script src="(?P<sockjs_url>[^"]*)"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>$""".strip())


class TestIframePage:
    async def verify(self, url: str) -> None:
        r = await fetch("GET", url)
        assert r.status == 200
        assert r.content_type == "text/html;charset=UTF-8"
        assert_cacheable_for_long(r)
        assert r.header("ETag") and r.header("Last-Modified") is None
        match = IFRAME_BODY.match(r.text.strip())
        assert match is not None, r.text
        # the client script configured as sockjs.sockjs_url (the default here: a CDN URL)
        assert match.group("sockjs_url").startswith(("http", "/"))
        assert_no_cookie(r)

    async def test_simple_url(self, cluster: Cluster) -> None:
        await self.verify(base(cluster) + "/iframe.html")

    async def test_versioned_url(self, cluster: Cluster) -> None:
        for suffix in ("/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html",
                       "/iframe-0.1.2abc-dirty.2144.html"):
            await self.verify(base(cluster) + suffix)

    async def test_queried_url(self, cluster: Cluster) -> None:
        for suffix in ("/iframe-a.html?t=1234", "/iframe-0.1.2.html?t=123414",
                       "/iframe-0.1.2abc-dirty.2144.html?t=qweqweq123"):
            await self.verify(base(cluster) + suffix)

    async def test_invalid_url(self, cluster: Cluster) -> None:
        for suffix in ("/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML",
                       "/iframe.xml", "/iframe-/.html"):
            assert (await fetch("GET", base(cluster) + suffix)).status == 404

    async def test_cacheability(self, cluster: Cluster) -> None:
        r1 = await fetch("GET", base(cluster) + "/iframe.html")
        r2 = await fetch("GET", base(cluster) + "/iframe.html")
        assert r1.header("ETag") and r1.header("ETag") == r2.header("ETag")  # every front too
        etag = r1.header("ETag")
        assert etag is not None
        r = await fetch("GET", base(cluster) + "/iframe.html", headers={"If-None-Match": etag})
        assert r.status == 304
        assert r.header("Content-Type") is None and r.body == b""


class TestInfo:
    async def test_basic(self, cluster: Cluster) -> None:
        r = await fetch("GET", base(cluster) + "/info")
        assert r.status == 200
        assert r.content_type == "application/json;charset=UTF-8"
        assert_no_cookie(r)
        assert_not_cached(r)
        assert_cors(r)
        data = json.loads(r.body)
        assert data["websocket"] is True
        assert data["cookie_needed"] is False
        assert data["origins"] == ["*:*"]
        assert isinstance(data["entropy"], int) and 0 <= data["entropy"] < 2**32
        # compact, as PROTOCOL.md 1 shows it (and as the original's JSON.stringify wrote it)
        assert r.body == ('{"websocket":true,"origins":["*:*"],"cookie_needed":false,'
                          f'"entropy":{data["entropy"]}}}').encode()

    async def test_entropy(self, cluster: Cluster) -> None:
        values = {json.loads((await fetch("GET", base(cluster) + "/info")).body)["entropy"]
                  for _ in range(3)}
        assert len(values) > 1

    async def test_cors_origin(self, cluster: Cluster) -> None:
        r = await fetch("GET", base(cluster) + "/info", headers={"Origin": "http://app.test"})
        assert_cors(r, "http://app.test")

    async def test_options(self, cluster: Cluster) -> None:
        await assert_options(base(cluster) + "/info", "OPTIONS, GET")

    async def test_options_null_origin(self, cluster: Cluster) -> None:
        # file:// pages send `Origin: null`; echoing it would be read as a refusal
        r = await fetch("OPTIONS", base(cluster) + "/info", headers={"Origin": "null"})
        assert r.status == 204 and r.body == b""
        assert r.header("Access-Control-Allow-Origin") == "*"


class TestSessionURLs:
    async def verify(self, url: str) -> None:
        r = await fetch("POST", url + "/xhr")
        assert (r.status, r.text) == (200, "o\n")

    async def test_any_value(self, cluster: Cluster) -> None:
        tail = secrets.token_hex(4)  # fresh sessions on every run
        for part in ("/a/a", "/_/_", "/1/1", "/abcdefgh_i-j%20/abcdefg_i-j%20"):
            await self.verify(base(cluster) + part + tail)

    async def test_invalid_paths(self, cluster: Cluster) -> None:
        # not empty, no dots, exactly two parts
        for part in ("//", "/a./a", "/a/a.", "/./.", "/", "///"):
            for method in ("GET", "POST"):
                assert (await fetch(method, base(cluster) + part + "/xhr")).status == 404

    async def test_ignoring_server_id(self, cluster: Cluster) -> None:
        session = str(uuid.uuid4())
        await self.verify(f"{base(cluster)}/000/{session}")
        r = await fetch("POST", f"{base(cluster)}/000/{session}/xhr_send", body='["a"]')
        assert r.status == 204 and r.body == b""
        # the same session: pushy:connect and the reply to "a", queued since, in one frame
        r = await fetch("POST", f"{base(cluster)}/999/{session}/xhr")
        assert r.status == 200 and r.text.endswith("]\n")
        connect, reply = [json.loads(m) for m in json.loads(r.text[1:])]
        assert connect["event"] == "pushy:connect" and reply == BOGUS


class TestWebsocketHttpErrors:
    async def test_http_method(self, cluster: Cluster) -> None:
        r = await fetch("GET", base(cluster) + "/0/0/websocket")
        assert r.status == 400
        assert 'Can "Upgrade" only to "WebSocket".' in r.text

    async def test_invalid_connection_header(self, cluster: Cluster) -> None:
        r = await fetch("GET", base(cluster) + "/0/0/websocket",
                        headers={"Upgrade": "WebSocket", "Connection": "close"})
        assert r.status == 400
        assert '"Connection" must be "Upgrade".' in r.text

    async def test_invalid_method(self, cluster: Cluster) -> None:
        for headers in ({"Upgrade": "WebSocket", "Connection": "Upgrade"}, {}):
            r = await fetch("POST", base(cluster) + "/0/0/websocket", headers=headers)
            assert r.status == 405
            assert r.header("Content-Type") is None
            assert r.header("Allow")
            assert r.body == b""


async def ws_open(url: str, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url)
    assert (await ws.receive(timeout=10)).data == "o"
    connect = (await ws.receive(timeout=10)).data
    assert json.loads(json.loads(connect[1:])[0])["event"] == "pushy:connect"
    return ws


class TestWebsocket:
    def url(self, cluster: Cluster, session: str | None = None) -> str:
        session = session or str(uuid.uuid4())
        return f"ws://127.0.0.1:{cluster.port}{cluster.prefix}/000/{session}/websocket"

    async def test_transport(self, cluster: Cluster) -> None:
        async with aiohttp.ClientSession() as http:
            ws = await ws_open(self.url(cluster), http)
            await ws.send_str("")  # empty frames are ignored
            await ws.send_str("[]")  # and so are frames with no messages
            await ws.send_str('["a"]')
            assert (await ws.receive(timeout=10)).data == bogus_replies(1)
            await ws.close()

    async def test_reuse_session_id(self, cluster: Cluster) -> None:
        # a WebSocket session lives as long as its connection; ids may be shared
        url = self.url(cluster)
        async with aiohttp.ClientSession() as http:
            ws1 = await ws_open(url, http)
            ws2 = await ws_open(url, http)
            await ws1.send_str('["a"]')
            assert (await ws1.receive(timeout=10)).data == bogus_replies(1)
            await ws2.send_str('["b", "c"]')
            replies = (await ws2.receive(timeout=10)).data
            assert replies in (bogus_replies(2), bogus_replies(1))
            await ws1.close()
            await ws2.close()
            ws3 = await ws_open(url, http)
            await ws3.close()

    async def test_headers_sanity(self, cluster: Cluster) -> None:
        key = base64.b64encode(b"0123456789abcdef").decode()
        accept = base64.b64encode(hashlib.sha1(
            (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("GET", f"{cluster.prefix}/000/{uuid.uuid4()}/websocket",
                                  headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                           "Sec-WebSocket-Version": "13",
                                           "Sec-WebSocket-Key": key, "Origin": "http://asd"})
            assert r.status == 101
            assert r.headers["sec-websocket-accept"] == accept
            assert r.headers["connection"].lower() == "upgrade"
            assert r.headers["upgrade"].lower() == "websocket"
            assert "content-length" not in r.headers
        finally:
            await raw.close()

    async def test_broken_json(self, cluster: Cluster) -> None:
        async with aiohttp.ClientSession() as http:
            ws = await ws_open(self.url(cluster), http)
            await ws.send_str('["a')
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    async def test_firefox_connection_header(self, cluster: Cluster) -> None:
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(self.url(cluster),
                                       headers={"Connection": "keep-alive, Upgrade"})
            assert (await ws.receive(timeout=10)).data == "o"
            await ws.close()


class TestRawWebsocket:
    async def test_transport(self, cluster: Cluster) -> None:
        # no SockJS framing at all: the first message is pushy:connect itself
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"ws://127.0.0.1:{cluster.port}{cluster.prefix}/websocket")
            connect = json.loads((await ws.receive(timeout=10)).data)
            assert connect["event"] == "pushy:connect"
            assert connect["data"]["protocol"] == "websocket"
            await ws.send_str('{"command":"Hello world!\uffff"}')
            assert json.loads((await ws.receive(timeout=10)).data) == UNKNOWN
            await ws.send_str("Hello world!\uffff")
            assert json.loads((await ws.receive(timeout=10)).data) == BOGUS
            await ws.close()


class TestHttp10:
    async def test_synchronous(self, cluster: Cluster) -> None:
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("GET", cluster.prefix, "1.0", {"Connection": "Keep-Alive"})
            assert r.status == 200 and r.version in ("1.0", "1.1")
            assert "transfer-encoding" not in r.headers  # no chunking in HTTP/1.0
            assert int(r.headers["content-length"]) == 19
            assert await raw.read(19) == b"Welcome to SockJS!\n"
            connection = r.headers.get("connection", "").lower()
            if connection in ("close", ""):
                assert await raw.closed()
            else:
                assert connection == "keep-alive"
                r = await raw.request("GET", cluster.prefix, "1.0", {"Connection": "Keep-Alive"})
                assert r.status == 200
        finally:
            await raw.close()


class TestHttp11:
    async def test_synchronous(self, cluster: Cluster) -> None:
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("GET", cluster.prefix, "1.1", {"Connection": "Keep-Alive"})
            assert r.version == "1.1"
            assert r.headers.get("connection", "").lower() in ("keep-alive", "")
            assert int(r.headers["content-length"]) == 19
            assert "transfer-encoding" not in r.headers
            assert await raw.read(19) == b"Welcome to SockJS!\n"
            r = await raw.request("GET", cluster.prefix, "1.1", {"Connection": "Keep-Alive"})
            assert r.status == 200  # the same connection serves another request
        finally:
            await raw.close()


async def test_unknown_command_is_answered_on_every_transport_url(cluster: Cluster) -> None:
    """Not in the suite: the Pushy reply replacing its echo, in one frame per poll."""
    url = new_session(cluster)
    assert (await fetch("POST", url + "/xhr")).text == "o\n"
    await fetch("POST", url + "/xhr")  # pushy:connect
    r = await fetch("POST", url + "/xhr_send", body=json.dumps(['{"command":"nope"}']))
    assert r.status == 204
    assert (await fetch("POST", url + "/xhr")).text == frame(UNKNOWN) + "\n"
