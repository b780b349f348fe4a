"""The C load generator against scripted fake servers: the awkward wire cases a real server
rarely produces on demand (frames split byte by byte, several messages per SockJS frame,
64-bit lengths, fragmented messages, pings, chunked HTTP answers, closed keep-alives)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pushy_shard.bench import native
from pushy_shard.bench.drivers import ClientProc
from pushy_shard.bench.wire import write_records

pytestmark = pytest.mark.skipif(
    native.find_compiler() is None,
    reason="no C compiler (cc, gcc or clang): the bench's load generator is C built at first use",
)


def frame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    if len(payload) < 126:
        head += bytes([len(payload)])
    elif len(payload) < 65536:
        head += bytes([126]) + struct.pack("!H", len(payload))
    else:
        head += bytes([127]) + struct.pack("!Q", len(payload))
    return head + payload


def sockjs(*messages: dict[str, object]) -> bytes:
    return b"a" + json.dumps([json.dumps(m) for m in messages]).encode()


def read_client_frame(conn: socket.socket) -> bytes:
    """One masked client frame's payload."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            assert chunk, "client closed"
            data += chunk
        return data

    b0, b1 = exactly(2)
    assert b1 & 0x80, "client frames must be masked"
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    mask = exactly(4)
    return bytes(b ^ mask[i % 4] for i, b in enumerate(exactly(length)))


def serve_once(handler: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                handler(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def dribble(conn: socket.socket, data: bytes) -> None:
    """Byte by byte, so the client sees every possible split."""
    for i in range(len(data)):
        conn.sendall(data[i:i + 1])
        time.sleep(0.0005)


def test_subscriber_survives_splits_batches_big_and_fragmented_frames() -> None:
    armed, extra, checked = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, object] = {}

    def handler(conn: socket.socket) -> None:
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        seen["request"] = request.decode()
        dribble(conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      b"Connection: Upgrade\r\nX-Pushy-Front: 3\r\n\r\n" + frame(b"o")
                + frame(sockjs({"event": "pushy:connect",
                                "data": {"socketId": "sid-1", "protocol": "websocket"}})))
        seen["subscribe"] = json.loads(json.loads(read_client_frame(conn))[0])
        conn.sendall(frame(sockjs({"event": "pushy:subscription-success",
                                   "data": {"channel": "c", "memberId": "00000001"}})))
        assert armed.wait(10)
        event = {"event": "bench", "channel": "c", "data": {"n": 1}}
        big = {"event": "bench", "channel": "c", "data": {"pad": "x" * 100_000}}
        timed = {"event": "bench", "channel": "c", "data": {"bt": 0}}
        first, second = sockjs(event)[:5], sockjs(event)[5:]
        dribble(conn, frame(sockjs(event, event, event)) + frame(b"h"))  # 3 in one frame
        conn.sendall(frame(sockjs(big)))  # 64-bit length
        conn.sendall(frame(first, fin=False) + frame(b"ping", opcode=9)
                     + frame(second, opcode=0))  # fragmented, a ping in between
        conn.sendall(frame(sockjs(timed)))
        seen["pong"] = read_client_frame(conn)
        assert extra.wait(10)
        conn.sendall(frame(sockjs(event)))  # one more than expected: a duplicate
        assert checked.wait(10)  # the connection stays open until the client counted it

    port, thread = serve_once(handler)
    exe = native.loadclient()
    client = ClientProc([str(exe), "sub", "127.0.0.1", str(port), "/p", "1", "1", "5000", "0"])
    try:
        connected = client.wait("connected", 10)
        assert connected["sids"] == ["sid-1"] and connected["fronts"] == {"3": 1}
        assert "GET /p/" in str(seen["request"]) and "/websocket HTTP/1.1" in str(seen["request"])
        client.send("plan\n1\t" + json.dumps([json.dumps({"command": "subscribe",
                                                          "data": {"channel": "c"}})]) + "\n")
        assert client.wait("subscribed", 10)["ok"] == 1
        assert seen["subscribe"] == {"command": "subscribe", "data": {"channel": "c"}}
        client.send(f"expect {time.monotonic_ns()} 5000 6\n")
        client.wait("armed", 5)
        armed.set()
        done = client.wait("done", 10)
        assert done["timeout"] is False
        assert done["total"] == done["expected"] == 6
        assert done["latency"]["n"] == 1
        extra.set()
        deadline = time.monotonic() + 10
        while True:  # until the client has read the duplicate
            client.send("check\n")
            check = client.wait("check", 5)
            if check["total"] == 7 or time.monotonic() > deadline:
                break
        checked.set()
        assert (check["total"], check["expected"], check["over"], check["under"]) == (7, 6, 1, 0)
        assert check["mismatch"] == [[0, 7, 6]]
        thread.join(5)
        assert seen["pong"] == b"ping"
    finally:
        client.close()


def test_publisher_reads_chunked_and_sized_answers_and_counts_lost_ones(tmp_path: Path) -> None:
    answers = [
        b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nConnection: close\r\n\r\n",
    ]
    requests: list[bytes] = []

    def handler(conn: socket.socket) -> None:
        buffer = b""
        for answer in answers:
            while b"\r\n\r\n" not in buffer:
                buffer += conn.recv(4096)
            head, buffer = buffer.split(b"\r\n\r\n", 1)
            requests.append(head)
            dribble(conn, answer)

    port, thread = serve_once(handler)
    records = tmp_path / "requests"
    write_records(records, [b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"])
    exe = native.loadclient()
    client = ClientProc([str(exe), "pub", "127.0.0.1", str(port), str(records), "3", "1", "0",
                         "0", "1", "5000"])
    try:
        published = client.wait("published", 10)
    finally:
        client.close()
    thread.join(5)
    assert published["status"] == {"200": 1, "201": 1, "403": 1}
    assert published["completed"] == 3 and published["failed"] == 0
    assert len(requests) == 3
