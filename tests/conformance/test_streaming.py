"""SockJS 0.3.3 conformance: the streaming transports. Grouped like
sockjs-protocol-0.3.3.py: XhrStreaming, EventSource, HtmlFile, the streaming half of
HandlingClose, and Http10/Http11 streaming. The server ends a streaming response after
4096 bytes of frames (RESPONSE_LIMIT), as the suite asks of its test server.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.conformance.conftest import RESPONSE_LIMIT
from tests.conformance.wire import (
    ANOTHER,
    CLOSED,
    RawHttp,
    Stream,
    assert_cors,
    assert_not_cached,
    assert_options,
    bogus_replies,
    closed_session,
    fetch,
    new_session,
)
from tests.integration.harness import Cluster

PRELUDE = b"h" * 2048 + b"\n"


async def subscribe(url: str) -> str:
    """Subscribe the session at `url` to a fresh channel; returns its name."""
    channel = f"ch-{uuid.uuid4().hex[:8]}"
    command = json.dumps({"command": "subscribe", "data": {"channel": channel}})
    assert (await fetch("POST", url + "/xhr_send", body=json.dumps([command]))).status == 204
    return channel


async def open_xhr_stream(url: str, headers: dict[str, str] | None = None) -> Stream:
    """xhr_streaming on a new session, read past its prelude, `o` and pushy:connect."""
    stream = await Stream.open("POST", url + "/xhr_streaming", headers)
    assert stream.status == 200
    assert await stream.read(len(PRELUDE)) == PRELUDE
    assert await stream.until(b"\n") == b"o\n"
    connect = await stream.until(b"\n")
    assert b'\\"pushy:connect\\"' in connect and b"xhr-streaming" in connect
    return stream


class TestXhrStreaming:
    async def test_options(self, cluster: Cluster) -> None:
        await assert_options(f"{cluster.base_url}{cluster.prefix}/abc/abc/xhr_streaming",
                             "OPTIONS, POST")

    async def test_transport(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("POST", url + "/xhr_streaming")
        try:
            r = stream.answer()
            assert r.status == 200
            assert r.content_type == "application/javascript;charset=UTF-8"
            assert_cors(r)
            assert_not_cached(r)
            assert await stream.read(2049) == PRELUDE  # 2 KiB first, for IE
            assert await stream.until(b"\n") == b"o\n"
            assert b"pushy:connect" in await stream.until(b"\n")
            r = await fetch("POST", url + "/xhr_send", body='["x"]')
            assert (r.status, r.body) == (204, b"")
            assert await stream.until(b"\n") == (bogus_replies(1) + "\n").encode()
        finally:
            await stream.close()

    async def test_response_limit(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("POST", url + "/xhr_streaming")
        try:
            assert await stream.read(2049) == PRELUDE  # the prelude does not count
            sent = len(await stream.until(b"\n")) + len(await stream.until(b"\n"))
            while sent < RESPONSE_LIMIT:  # one message at a time, each answered on the stream
                assert (await fetch("POST", url + "/xhr_send", body='["x"]')).status == 204
                line = await stream.until(b"\n")
                assert line == (bogus_replies(1) + "\n").encode()
                sent += len(line)
            assert await stream.rest() == b""  # ended once 4096 bytes of frames went out
        finally:
            await stream.close()
        # the session lives on: the next request takes what came meanwhile
        assert (await fetch("POST", url + "/xhr_send", body='["y"]')).status == 204
        assert (await fetch("POST", url + "/xhr")).text == bogus_replies(1) + "\n"


class TestEventSource:
    async def test_transport(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("GET", url + "/eventsource")
        try:
            r = stream.answer()
            assert r.status == 200
            assert r.content_type == "text/event-stream;charset=UTF-8"
            assert_not_cached(r)  # a GET: it must never be cached
            assert await stream.read(2) == b"\r\n"  # Opera wants a blank line first
            assert await stream.until(b"\r\n\r\n") == b"data: o\r\n\r\n"
            assert b"pushy:connect" in await stream.until(b"\r\n\r\n")
            r = await fetch("POST", url + "/xhr_send", body='["x"]')
            assert (r.status, r.body) == (204, b"")
            expected = f"data: {bogus_replies(1)}\r\n\r\n".encode()
            assert await stream.until(b"\r\n\r\n") == expected
            # leading spaces, CR, LF and NUL inside a message cannot break the event
            channel = await subscribe(url)
            assert b"subscription-success" in await stream.until(b"\r\n\r\n")
            status, _ = await cluster.trigger(channel, "e", {"s": "  \x00\n\r "})
            assert status == 201
            event = await stream.until(b"\r\n\r\n")
            assert event.startswith(b"data: a[") and event.count(b"\r\n") == 2
            assert b"\\\\u0000\\\\n\\\\r " in event and b"\n" not in event[:-4]
        finally:
            await stream.close()

    async def test_response_limit(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("GET", url + "/eventsource")
        try:
            assert await stream.read(2) == b"\r\n"
            assert await stream.until(b"\r\n\r\n") == b"data: o\r\n\r\n"
            await stream.until(b"\r\n\r\n")
            channel = await subscribe(url)
            await stream.until(b"\r\n\r\n")
            status, _ = await cluster.trigger(channel, "big", {"s": "x" * RESPONSE_LIMIT})
            assert status == 201
            event = await stream.until(b"\r\n\r\n")
            assert b"x" * RESPONSE_LIMIT in event
            assert await stream.rest() == b""
        finally:
            await stream.close()


HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.%s;
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"""


def script(sockjs_frame: str) -> bytes:
    return f"<script>\np({json.dumps(sockjs_frame)});\n</script>\r\n".encode()


class TestHtmlFile:
    async def test_transport(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("GET", url + "/htmlfile?c=%63allback")
        try:
            r = stream.answer()
            assert r.status == 200
            assert r.content_type == "text/html;charset=UTF-8"
            assert_not_cached(r)
            head = await stream.until(b"\r\n\r\n")
            assert head.decode().strip() == HTMLFILE_HEAD % "callback"
            assert len(head) > 1024  # Safari shows nothing of a page before 1 KiB
            assert await stream.until(b"</script>\r\n") == script("o")
            assert b"pushy:connect" in await stream.until(b"</script>\r\n")
            r = await fetch("POST", url + "/xhr_send", body='["x"]')
            assert (r.status, r.body) == (204, b"")
            assert await stream.until(b"</script>\r\n") == script(bogus_replies(1))
        finally:
            await stream.close()

    async def test_no_callback(self, cluster: Cluster) -> None:
        r = await fetch("GET", f"{cluster.base_url}{cluster.prefix}/a/a/htmlfile")
        assert r.status == 500 and '"callback" parameter required' in r.text

    async def test_invalid_callback(self, cluster: Cluster) -> None:
        r = await fetch("GET", f"{cluster.base_url}{cluster.prefix}/a/a/htmlfile?c=a%3Bb")
        assert r.status == 500 and 'invalid "callback" parameter' in r.text

    async def test_response_limit(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        stream = await Stream.open("GET", url + "/htmlfile?c=callback")
        try:
            await stream.until(b"\r\n\r\n")
            assert await stream.until(b"</script>\r\n") == script("o")
            await stream.until(b"</script>\r\n")
            channel = await subscribe(url)
            await stream.until(b"</script>\r\n")
            status, _ = await cluster.trigger(channel, "big", {"s": "x" * RESPONSE_LIMIT})
            assert status == 201
            assert b"x" * RESPONSE_LIMIT in await stream.until(b"</script>\r\n")
            assert await stream.rest() == b""
        finally:
            await stream.close()


class TestHandlingClose:
    async def test_close_frame(self, cluster: Cluster) -> None:
        url = await closed_session(cluster)
        for _ in range(2):  # every receiver gets the close frame, then its response ends
            stream = await Stream.open("POST", url + "/xhr_streaming")
            try:
                assert await stream.rest() == PRELUDE + (CLOSED + "\n").encode()
            finally:
                await stream.close()

    async def test_close_request(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        first = await open_xhr_stream(url)
        try:
            second = await Stream.open("POST", url + "/xhr_streaming")
            try:
                assert await second.rest() == PRELUDE + (ANOTHER + "\n").encode()
            finally:
                await second.close()
            assert (await fetch("POST", url + "/xhr_send", body='["x"]')).status == 204
            assert await first.until(b"\n") == (bogus_replies(1) + "\n").encode()
        finally:
            await first.close()

    async def test_abort_xhr_streaming(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        first = await open_xhr_stream(url)
        second = await Stream.open("POST", url + "/xhr_streaming")
        try:
            assert await second.rest() == PRELUDE + (ANOTHER + "\n").encode()
        finally:
            await second.close()
        await first.close()  # a network error ends the receiver
        for _ in range(100):  # until the server has read the dropped connection
            third = await Stream.open("POST", url + "/xhr_streaming")
            try:
                assert await third.read(len(PRELUDE)) == PRELUDE
                answer = await third.until(b"\n")
            finally:
                await third.close()
            if answer != (ANOTHER + "\n").encode():
                break
            await asyncio.sleep(0.02)
        assert answer in (b"o\n", b'c[1002,"Connection interrupted"]\n')


class TestHttp10:
    async def test_streaming(self, cluster: Cluster) -> None:
        path = (await closed_session(cluster)).removeprefix(cluster.base_url)
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("POST", path + "/xhr_streaming", "1.0",
                                  {"Connection": "Keep-Alive"})
            assert r.status == 200
            assert "transfer-encoding" not in r.headers  # not allowed in HTTP/1.0
            assert "content-length" not in r.headers  # not known yet
            assert r.headers.get("connection", "close").lower() in ("close", "keep-alive")
            assert (await raw.read(2049))[:1] == b"h"
            assert await raw.read(len(CLOSED) + 1) == (CLOSED + "\n").encode()
            assert await raw.closed()  # the end of the body is the end of the connection
        finally:
            await raw.close()

    async def test_streaming_to_the_response_limit(self, cluster: Cluster) -> None:
        url = new_session(cluster)
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("POST", url.removeprefix(cluster.base_url) + "/xhr_streaming",
                                  "1.0")
            assert r.status == 200 and "transfer-encoding" not in r.headers
            assert await raw.read(2049) == PRELUDE
            assert await raw.read(2) == b"o\n"
            messages = json.dumps(["x"] * 60)  # 60 replies: past 4096 bytes
            assert (await fetch("POST", url + "/xhr_send", body=messages)).status == 204
            body = await asyncio.wait_for(raw.reader.read(), 10)  # up to the server's close
            lines = body.split(b"\n")
            assert lines.pop() == b""
            assert b"pushy:connect" in lines[0]
            sizes = [2] + [len(line) + 1 for line in lines]
            assert sum(sizes) >= RESPONSE_LIMIT > sum(sizes[:-1])
        finally:
            await raw.close()


class TestHttp11:
    async def test_streaming(self, cluster: Cluster) -> None:
        path = (await closed_session(cluster)).removeprefix(cluster.base_url)
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("POST", path + "/xhr_streaming", "1.1",
                                  {"Connection": "Keep-Alive"})
            assert r.status == 200
            assert r.headers["transfer-encoding"].lower() == "chunked"
            assert "content-length" not in r.headers
            body = await raw.read_chunked_until((CLOSED + "\n").encode())
            assert body == PRELUDE + (CLOSED + "\n").encode()
            assert await raw.read_chunk() == b""  # the last chunk: the response ended cleanly
            r = await raw.request("GET", cluster.prefix, "1.1")  # and the connection lives on
            assert r.status == 200
        finally:
            await raw.close()

    async def test_open_session_is_chunked(self, cluster: Cluster) -> None:
        # (a front relaying the session may join frames into fewer chunks: HTTP allows it)
        url = new_session(cluster)
        raw = await RawHttp.connect(cluster)
        try:
            r = await raw.request("POST", url.removeprefix(cluster.base_url) + "/xhr_streaming")
            assert r.headers["transfer-encoding"].lower() == "chunked"
            body = await raw.read_chunked_until(b"\n")
            while body.count(b"\n") < 3:  # the prelude, `o`, pushy:connect
                body += await raw.read_chunked_until(b"\n")
            prelude, opening, connect, rest = body.split(b"\n", 3)
            assert (prelude + b"\n", opening, rest) == (PRELUDE, b"o", b"")
            assert b"pushy:connect" in connect
            assert (await fetch("POST", url + "/xhr_send", body='["x"]')).status == 204
            assert await raw.read_chunked_until(b"\n") == (bogus_replies(1) + "\n").encode()
        finally:
            await raw.close()
