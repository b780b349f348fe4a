"""What each transport writes for an event: its kinds of wire bytes, built once per event.

A connection's `kind` says which bytes of an event it writes (ARCHITECTURE.md 4). A
`Delivery` is one encoded event; it builds each kind's bytes, and each kind's HTTP/1.1
chunk, on first use, and every member of that kind then writes the same object.
"""

from __future__ import annotations

from enum import IntEnum

from pushy_shard.core.sockjs import (
    eventsource_frame,
    htmlfile_frame,
    http_chunk,
    message_frame,
    quote_bytes,
    ws_text_frame,
    xhr_frame,
)


class Kind(IntEnum):
    """Which wire bytes of an event a connection writes."""

    SOCKJS_WS = 0  # a WebSocket frame carrying a SockJS `a[...]` frame
    RAW_WS = 1  # a WebSocket frame carrying the message itself
    XHR = 2  # `a[...]\n`: xhr-streaming and xhr-polling
    EVENTSOURCE = 3  # `data: a[...]\r\n\r\n`
    HTMLFILE = 4  # `<script>\np("a[...]");\n</script>\r\n`
    FRAME = 5  # the bare `a[...]`: jsonp wraps it in each request's own callback


_KINDS = len(Kind)


class Delivery:
    """One encoded event. Its JSON-string form, each kind's bytes and each kind's HTTP/1.1
    chunk are built on first use and then shared by every member (ARCHITECTURE.md 4)."""

    __slots__ = ("message", "_quoted", "_frames", "_chunks")

    def __init__(self, message: bytes) -> None:
        self.message = message
        self._quoted: bytes | None = None
        self._frames: list[bytes | None] = [None] * _KINDS
        self._chunks: list[bytes | None] = [None] * _KINDS

    @property
    def quoted(self) -> bytes:
        """The message as a JSON string: what a polling session queues between polls."""
        quoted = self._quoted
        if quoted is None:
            quoted = self._quoted = quote_bytes(self.message)
        return quoted

    def frame(self, kind: int) -> bytes:
        frame = self._frames[kind]
        if frame is None:
            frame = self._frames[kind] = self._build(kind)
        return frame

    def chunk(self, kind: int) -> bytes:
        """`frame(kind)` as one HTTP/1.1 chunk, for chunked streaming responses."""
        chunk = self._chunks[kind]
        if chunk is None:
            chunk = self._chunks[kind] = http_chunk(self.frame(kind))
        return chunk

    def _build(self, kind: int) -> bytes:
        if kind == Kind.RAW_WS:
            return ws_text_frame(self.message)
        if kind == Kind.FRAME:
            return message_frame((self.quoted,))
        return wrap_frame(kind, self.frame(Kind.FRAME))


def wrap_frame(kind: int, frame: bytes) -> bytes:
    """A SockJS frame (`o`, `h`, `a[...]`, `c[...]`) in the wire form of `kind`."""
    if kind == Kind.XHR:
        return xhr_frame(frame)
    if kind == Kind.EVENTSOURCE:
        return eventsource_frame(frame)
    if kind == Kind.HTMLFILE:
        return htmlfile_frame(frame)
    if kind == Kind.SOCKJS_WS or kind == Kind.RAW_WS:
        return ws_text_frame(frame)
    return frame


def batch_frame(kind: int, batch: list[Delivery]) -> bytes:
    """Several events for one WebSocket in one write: SockJS puts them in one `a[m1,m2,...]`
    frame (the protocol allows several messages per frame); the raw WebSocket writes its
    frames back to back."""
    if kind == Kind.SOCKJS_WS:
        return ws_text_frame(message_frame([d.quoted for d in batch]))
    return b"".join(d.frame(kind) for d in batch)
