"""WebSocket frames (RFC 6455 5): the server's encoder and an incremental reader of client
frames that reassembles fragmented messages and checks every rule a server must enforce.

Pure: bytes in, events out. A frame that breaks the protocol raises `FrameError` carrying the
close code to send (1002 protocol error, 1007 invalid UTF-8, 1009 too big); the caller then
sends that close frame and drops the connection (RFC 6455 7.1.7).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from pushy_shard.errors import FrameError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_CONTINUATION, OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009


def _valid_close_code(code: int) -> bool:
    """Codes a peer may send (RFC 6455 7.4.1 and the IANA registry): not 1004-1006, 1015."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    data: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame; `code` is None when it carried no payload."""

    code: int | None
    reason: str


Event = Text | Binary | Ping | Pong | Close


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR `data` with the 4-byte `mask` (RFC 6455 5.3); masking and unmasking are the same."""
    size = len(data)
    if not size:
        return b""
    key = (mask * ((size + 3) // 4))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size,
                                                                                     "little")


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None,
                 rsv: int = 0) -> bytes:
    """One frame; a server sends unmasked frames, a client passes its 4-byte `mask`.
    `rsv` (0-7) is there so tests can build frames a server must refuse."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode
    size = len(payload)
    masked = 0x80 if mask is not None else 0
    if size < 126:
        header = bytes((first, masked | size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, masked | 126, size)
    else:
        header = struct.pack("!BBQ", first, masked | 127, size)
    if mask is None:
        return header + payload
    return header + mask + apply_mask(payload, mask)


def close_frame(code: int, reason: str = "") -> bytes:
    """A server close frame; the reason is cut to fit a control frame."""
    payload = struct.pack("!H", code) + reason.encode("utf-8")[:MAX_CONTROL_PAYLOAD - 2]
    return encode_frame(OP_CLOSE, payload)


def close_reply(event: Close) -> bytes:
    """The close frame answering the peer's: its code echoed, or empty (RFC 6455 5.5.1)."""
    return encode_frame(OP_CLOSE, b"" if event.code is None else struct.pack("!H", event.code))


def _decode_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(CLOSE_INVALID_DATA, "Invalid UTF-8 text") from None


def _close_event(payload: bytes) -> Close:
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise FrameError(CLOSE_PROTOCOL_ERROR, "Close payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not _valid_close_code(code):
        raise FrameError(CLOSE_PROTOCOL_ERROR, "Invalid close code")
    return Close(code, _decode_text(payload[2:]))


class FrameReader:
    """Client-to-server frames of one connection, fed as they arrive in any chunking.

    Idle, it holds no buffers (fields stay None), which keeps an idle connection small."""

    __slots__ = ("max_size", "_chunks", "_have", "_needed", "_fragments", "_fragment_size",
                 "_fragment_opcode", "_closed")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size  # largest frame or reassembled message (1009 above it)
        self._chunks: list[bytes] | None = None  # bytes of an incomplete frame
        self._have = 0
        self._needed = 0  # bytes the incomplete frame needs before it can be read further
        self._fragments: list[bytes] | None = None  # payloads of an unfinished message
        self._fragment_size = 0
        self._fragment_opcode = OP_TEXT
        self._closed = False

    def feed(self, data: bytes) -> Iterator[Event]:
        """The events completed by `data`, in order. Raises FrameError at the first frame
        that breaks the protocol (after yielding the events before it); the connection must
        then close, the reader is of no further use. Iterate to the end unless you are
        closing the connection: bytes after a break are not kept."""
        if self._closed or not data:
            return
        if self._chunks is not None:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._needed:
                return
            data = b"".join(self._chunks)
            self._chunks = None
        pos = 0
        end = len(data)
        while pos < end:
            needed, event = self._frame(data, pos, end)
            if event is None and needed > end:  # incomplete: keep the rest for later
                self._chunks = [data[pos:]]
                self._have = end - pos
                self._needed = needed - pos
                return
            pos = needed
            if event is not None:
                if type(event) is Close:
                    self._closed = True
                    yield event
                    return
                yield event

    def _frame(self, data: bytes, pos: int, end: int) -> tuple[int, Event | None]:
        """Read the frame at `pos`: (offset just past it, its event or None for a fragment)
        or, when incomplete, (offset the data must reach, None)."""
        if end - pos < 2:
            return pos + 2, None
        first, second = data[pos], data[pos + 1]
        fin = first & 0x80
        opcode = first & 0x0F
        if first & 0x70:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "Reserved bits set")
        if not second & 0x80:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "Client frames must be masked")
        size = second & 0x7F
        if opcode in _CONTROL_OPCODES:
            if not fin:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "Fragmented control frame")
            if size > MAX_CONTROL_PAYLOAD:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "Control frame too long")
        elif opcode not in _DATA_OPCODES:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "Reserved opcode")
        elif opcode == OP_CONTINUATION and self._fragments is None:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "Continuation without a message")
        elif opcode != OP_CONTINUATION and self._fragments is not None:
            raise FrameError(CLOSE_PROTOCOL_ERROR, "Expected a continuation frame")
        start = pos + 2
        if size == 126:
            start += 2
            if end < start:
                return start, None
            size = int.from_bytes(data[pos + 2:start], "big")
        elif size == 127:
            start += 8
            if end < start:
                return start, None
            size = int.from_bytes(data[pos + 2:start], "big")
            if size >> 63:
                raise FrameError(CLOSE_PROTOCOL_ERROR, "Frame length out of range")
        if opcode in _DATA_OPCODES and self._fragment_size + size > self.max_size:
            raise FrameError(CLOSE_TOO_BIG, "Message too big")
        stop = start + 4 + size
        if end < stop:
            return stop, None
        payload = apply_mask(data[start + 4:stop], data[start:start + 4])
        return stop, self._event(fin, opcode, payload)

    def _event(self, fin: int, opcode: int, payload: bytes) -> Event | None:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        if opcode == OP_CLOSE:
            return _close_event(payload)
        if opcode != OP_CONTINUATION:
            if fin:
                return Text(_decode_text(payload)) if opcode == OP_TEXT else Binary(payload)
            self._fragments = [payload]
            self._fragment_size = len(payload)
            self._fragment_opcode = opcode
            return None
        assert self._fragments is not None  # checked in _frame
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if not fin:
            return None
        message = b"".join(self._fragments)
        self._fragments = None
        self._fragment_size = 0
        if self._fragment_opcode == OP_TEXT:
            return Text(_decode_text(message))
        return Binary(message)
