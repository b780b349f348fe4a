"""A plain ZeroMQ socket driven by the asyncio loop: batched reads, non-blocking writes.

ZeroMQ's FD is edge-triggered: after any send or receive the socket's EVENTS must be read
again, or a wake-up can be missed. `ZmqChannel` drains everything readable in one callback
(a bounded batch of frames per loop turn, so one busy link cannot starve the others and a
turn's output stays bounded) and re-checks
after every send. Each process makes its own context after it starts (STYLE.md).
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any

import zmq

from pushy_shard.errors import AddressInUse

log = logging.getLogger(__name__)

BATCH_FRAMES = 2048  # frames read per callback: a bounded batch per loop turn
HIGH_WATER_MARK = 100_000

# plain ints: pyzmq's enum flags cost an Enum construction per operation on the hot path
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# pyzmq's compiled socket, under its Python layer: send_multipart/recv_multipart combine
# enum flags per frame (an Enum built each time) and re-check every frame's type; ours are
# bytes, and these are the calls that layer ends in
_Base: Any = next(c for c in zmq.Socket.__mro__ if c.__module__.startswith("zmq.backend"))


class ZmqChannel:
    """Reads `sock` on the loop, calling `on_message(frames)` for each multipart message."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        on_message: Callable[[list[bytes]], None],
        name: str,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_message = on_message
        self.name = name
        self.dropped = 0
        self._scheduled = False
        self._send = _Base.send.__get__(sock)
        self._recv = _Base.recv.__get__(sock)
        self._option = _Base.get.__get__(sock)
        self._fd = int(sock.getsockopt(zmq.FD))
        loop.add_reader(self._fd, self._drain)
        self._schedule()

    def send(self, frames: list[bytes]) -> bool:
        """Queue one multipart message without blocking; False (logged, counted) if it can't."""
        send = self._send  # small frames: copying beats zero-copy
        try:
            for frame in frames[:-1]:
                send(frame, _MORE_NOBLOCK)  # once the first part is queued, all of it is
            send(frames[-1], _NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            log.warning("%s: link queue full, message dropped (%d so far)", self.name, self.dropped)
            return False
        except zmq.ZMQError as exc:
            self.dropped += 1
            # EHOSTUNREACH: a peer that just went away (a restarted front); expected
            level = logging.DEBUG if exc.errno == zmq.EHOSTUNREACH else logging.WARNING
            log.log(level, "%s: send failed: %s", self.name, exc)
            return False
        finally:
            self._schedule()
        return True

    def close(self, linger_ms: int = 0) -> None:
        """Stop reading and close; `linger_ms` lets queued messages leave for that long
        (bounded, so a peer that stopped reading cannot hold up the exit)."""
        self.loop.remove_reader(self._fd)
        self.sock.close(linger=linger_ms)

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        if self.sock.closed:
            return
        recv, option = self._recv, self._option
        budget = BATCH_FRAMES
        while budget > 0:
            if not option(_EVENTS) & _POLLIN:
                return
            try:  # a Frame says whether more follow (reading RCVMORE costs more than that)
                frame = recv(_NOBLOCK, copy=False)
                frames = [frame.bytes]
                while frame.more:
                    frame = recv(_NOBLOCK, copy=False)
                    frames.append(frame.bytes)
            except zmq.Again:
                return
            budget -= len(frames)
            try:
                self.on_message(frames)
            except Exception:  # one bad message must not stop the link
                log.exception("%s: message handler failed", self.name)
        self._schedule()  # more may be waiting: continue on the next loop turn


def tune(sock: zmq.Socket) -> None:
    """Options every link socket shares: no lingering, bounded queues."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
    sock.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)


def bind_router(context: zmq.Context, endpoint: str, name: str, *,
                handover: bool = False) -> zmq.Socket:
    """A tuned ROUTER bound to `endpoint` that refuses to send to an unknown peer (a send
    fails instead of vanishing); `handover`: a peer reconnecting with a known routing id
    takes it over at once. AddressInUse when another process has the endpoint."""
    sock = context.socket(zmq.ROUTER)
    tune(sock)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if handover:
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUse(f"{name}: {endpoint}: already in use by another process") from None
    return sock
