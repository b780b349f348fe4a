"""Triggers answered by the front's own HTTP layer (front/trigger_http.py): kept-alive and
pipelined requests in order, `Connection: close`, and the hand-over to aiohttp of what is
not a plain trigger, on the same connection. The server's fan-out runs without its
compiled loop in one module of its own (PUSHY_SHARD_PURE_PYTHON)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import Cluster, sign


def trigger_request(channel: str, n: int, extra: str = "", chunked: bool = False) -> bytes:
    body = json.dumps({"n": n}, separators=(",", ":"))
    ts = int(time.time())
    query = urllib.parse.urlencode({"event": "e", "timestamp": ts,
                                    "auth_key": sign(f"{channel}:e:{ts}:{body}:secret")})
    head = f"POST /pushy/channel/{channel}/trigger?{query} HTTP/1.1\r\nHost: x\r\n" + extra
    if chunked:
        payload = f"{len(body):x}\r\n{body}\r\n0\r\n\r\n"
        return (head + "Transfer-Encoding: chunked\r\n\r\n" + payload).encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            + body).encode()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length (or to EOF)."""
    status_line = await asyncio.wait_for(reader.readline(), 10)
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    else:
        body = await asyncio.wait_for(reader.read(), 10)
    return int(status_line.split()[1]), headers, body


async def test_pipelined_triggers_then_other_requests_on_one_connection(cluster: Cluster
                                                                        ) -> None:
    member = await cluster.client()
    try:
        await member.subscribe("kept")
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        writer.write(b"".join(trigger_request("kept", n) for n in range(3)))
        for _ in range(3):
            status, headers, body = await answer(reader)
            # compact, as the original wrote it (PROTOCOL.md 4.3)
            assert (status, body) == (201, b'{"status":{"code":201,"message":"Ok"}}')
            assert headers["content-type"] == "application/json; charset=utf-8"
        # not a trigger: aiohttp serves the connection from here on, triggers included
        writer.write(b"GET /pushy/socket/info HTTP/1.1\r\nHost: x\r\n\r\n"
                     + trigger_request("kept", 3, chunked=True) + trigger_request("kept", 4))
        status, _, body = await answer(reader)
        assert status == 200 and json.loads(body)["websocket"] is True
        for _ in range(2):
            status, _, body = await answer(reader)
            assert status == 201, body
        writer.close()
        for n in range(5):
            assert await member.next() == {"event": "e", "channel": "kept", "data": {"n": n}}
    finally:
        await member.close()


async def test_a_long_pipeline_is_read_as_it_is_answered(cluster: Cluster) -> None:
    """More pipelined bytes than one request may take (head + body limit): the connection
    stops reading while a trigger is answered, and every one is answered, in order."""
    member = await cluster.client()
    try:
        await member.subscribe("piped")
        reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
        requests = b"".join(trigger_request("piped", n) for n in range(400))
        assert len(requests) > 16 * 1024 + 64 * 1024
        writer.write(requests)
        for _ in range(400):
            status, _, body = await answer(reader)
            assert status == 201, body
        writer.close()
        for n in range(400):
            assert (await member.next())["data"] == {"n": n}
    finally:
        await member.close()


async def test_a_chunked_trigger_first_goes_to_aiohttp(cluster: Cluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    writer.write(trigger_request("nobody", 0, chunked=True))
    status, headers, body = await answer(reader)
    # aiohttp's answer has the same bytes as the front's own
    assert (status, body) == (200, b'{"status":{"code":200,"message":"Ok"}}')
    assert headers["content-type"] == "application/json; charset=utf-8"
    writer.close()


async def test_connection_close_is_honoured(cluster: Cluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    writer.write(trigger_request("nobody", 7, "Connection: close\r\n"))
    status, headers, _ = await answer(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the answer
    writer.close()


async def test_refusals_are_the_routes_refusals(cluster: Cluster) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.port)
    request = trigger_request("nobody", 8).replace(b"auth_key=", b"auth_key=0")
    writer.write(request)
    status, _, body = await answer(reader)
    assert (status, body) == (403, b'{"error":{"code":"403","message":"Invalid credentials"}}')
    writer.write(trigger_request("nobody", 9))  # the connection still serves
    assert (await answer(reader))[0] == 200
    writer.close()


@pytest.fixture(scope="module")
def pure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUSHY_SHARD_PURE_PYTHON", "1")
        server = Cluster(Path(tmp_path_factory.mktemp("pure")))
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


async def test_the_python_fan_out_loop_delivers_the_same(pure_cluster: Cluster) -> None:
    members = [await pure_cluster.client(front=k % 2) for k in range(4)]
    try:
        for client in members:
            await client.subscribe("pure")
            await client.subscribe("pure-other")
        statuses = await asyncio.gather(*(pure_cluster.trigger(
            "pure" if n % 2 else "pure-other", "e", {"n": n}) for n in range(20)))
        assert {status for status, _ in statuses} == {201}
        for client in members:
            got = [await client.next() for _ in range(20)]
            for channel in ("pure", "pure-other"):
                ns = [e["data"]["n"] for e in got if e["channel"] == channel]
                assert sorted(ns) == [n for n in range(20) if (n % 2 == 1) == (channel
                                                                                 == "pure")]
    finally:
        for client in members:
            await client.close()
