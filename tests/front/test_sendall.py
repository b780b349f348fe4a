"""The compiled fan-out loop (front/_sendall.c) on real sockets: what it sends itself, and
what it leaves to the connection's own write, in order."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from pushy_shard.core.frames import Delivery, Kind

if os.environ.get("CI"):  # the install builds it where a compiler is at hand: CI has one
    from pushy_shard.front import _sendall
else:
    _sendall = pytest.importorskip("pushy_shard.front._sendall")


class Conn:
    """What the loop reads of a connection (fanout.SocketConnection's attributes)."""

    __slots__ = ("_fd", "closed", "kind")

    def __init__(self, fd: int, kind: int = Kind.SOCKJS_WS, closed: bool = False) -> None:
        self._fd, self.kind, self.closed = fd, kind, closed


class CountingDelivery(Delivery):
    __slots__ = ("built",)

    def __init__(self, message: bytes) -> None:
        super().__init__(message)
        self.built: list[int] = []

    def frame(self, kind: int) -> bytes:
        self.built.append(kind)
        return super().frame(kind)


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(4)]
    for ours, _ in made:
        ours.setblocking(False)
    yield made
    for ours, theirs in made:
        ours.close()
        theirs.close()


def received(sock: socket.socket) -> bytes:
    sock.setblocking(False)
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def test_sends_to_idle_plain_members_and_leaves_the_rest(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    raw = Conn(pairs[0][0].fileno(), Kind.RAW_WS)
    sockjs = Conn(pairs[1][0].fileno())
    busy = Conn(-1)  # its transport holds bytes (or TLS): only its own write writes
    closed = Conn(pairs[2][0].fileno(), closed=True)
    excluded = Conn(pairs[3][0].fileno())
    other = object()  # no _fd at all (an HTTP session)
    members = {"r": raw, "s": sockjs, "b": busy, "c": closed, "x": excluded, "o": other}
    delivery = CountingDelivery(b'{"event":"e"}')
    left = _sendall.send_each(members, "x", delivery)
    assert left == [(busy, 0), (closed, 0), (other, 0)]  # in the members' order
    assert received(pairs[0][1]) == delivery.frame(Kind.RAW_WS)
    assert received(pairs[1][1]) == delivery.frame(Kind.SOCKJS_WS)
    assert received(pairs[2][1]) == b"" and received(pairs[3][1]) == b""
    assert sorted(delivery.built[:2]) == [Kind.SOCKJS_WS, Kind.RAW_WS]  # each kind once


def test_a_full_socket_reports_what_it_took(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    ours, theirs = pairs[0]
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    conn = Conn(ours.fileno(), Kind.RAW_WS)
    big = Delivery(b"x" * (1 << 21))
    (left,) = _sendall.send_each({"a": conn}, None, big)
    assert left[0] is conn and 0 < left[1] < len(big.frame(Kind.RAW_WS))
    (left,) = _sendall.send_each({"a": conn}, None, big)  # nothing more fits: 0 taken
    assert left == (conn, 0)
    got = b""
    while chunk := received(theirs):
        got += chunk
    assert got == big.frame(Kind.RAW_WS)[:len(got)]  # a prefix, whole bytes, in order


def test_bad_arguments_are_errors() -> None:
    with pytest.raises(TypeError):
        _sendall.send_each([], None, Delivery(b"{}"))
    conn = Conn(0)
    conn.kind = "x"  # type: ignore[assignment]
    with pytest.raises(TypeError):
        _sendall.send_each({"a": conn}, None, Delivery(b"{}"))


class PropertyConn:
    """The same attributes as properties and a plain attribute: read by name, not by slot."""

    def __init__(self, fd: int, closed: bool) -> None:
        self._fd_value, self._closed, self.kind = fd, closed, Kind.SOCKJS_WS

    @property
    def _fd(self) -> int:
        return self._fd_value

    @property
    def closed(self) -> bool:
        return self._closed


def test_connection_types_mixed_in_one_channel_are_each_read_their_own_way(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    unset = Conn(pairs[2][0].fileno())
    del unset._fd  # a slot never set: not a socket connection, left to Python
    members = {
        "a": Conn(pairs[0][0].fileno()),
        "b": PropertyConn(pairs[1][0].fileno(), closed=False),
        "c": unset,
        "d": PropertyConn(pairs[3][0].fileno(), closed=True),
    }
    delivery = Delivery(b'{"x":1}')
    left = _sendall.send_each(members, None, delivery)
    assert left == [(unset, 0), (members["d"], 0)]
    frame = delivery.frame(Kind.SOCKJS_WS)
    assert received(pairs[0][1]) == frame
    assert received(pairs[1][1]) == frame
    assert received(pairs[2][1]) == b""
    assert received(pairs[3][1]) == b""
