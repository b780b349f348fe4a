"""SockJS 0.3.3 framing and the wire bytes each transport writes.

Frames: `o` open, `h` heartbeat, `a[...]` messages (each a JSON string), `c[code,"reason"]`
close. The fan-out path builds these once per event and writes the same bytes to every
member (ARCHITECTURE.md 4).
"""

from __future__ import annotations

import json
import re
import struct

import orjson

OPEN_FRAME = b"o"
HEARTBEAT_FRAME = b"h"

# Characters SockJS servers escape inside JSON strings so that every transport (and every
# browser's JSON parser) passes them through intact (sockjs-protocol, JsonEncoding tests).
_ESCAPABLE = re.compile(
    "[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]"
)


class SockJSFrameError(ValueError):
    """A client frame that is not a JSON string or array of strings; SockJS closes on it."""


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


def quote(message: str) -> bytes:
    """`message` as a JSON string literal, with the extra SockJS escapes."""
    try:
        text = orjson.dumps(message).decode()
    except orjson.JSONEncodeError:  # lone surrogates: orjson only writes valid UTF-8
        text = json.dumps(message, ensure_ascii=False)
    if _ESCAPABLE.search(text) is None:
        return text.encode()
    return _ESCAPABLE.sub(_escape_char, text).encode("utf-8", "surrogatepass")


def quote_bytes(message: bytes) -> bytes:
    """Like `quote` for a UTF-8 encoded message (what the shards send)."""
    return quote(message.decode("utf-8", "surrogatepass"))


def message_frame(quoted: list[bytes] | tuple[bytes, ...]) -> bytes:
    """`a[...]` carrying already quoted messages (several may share one frame)."""
    return b"a[" + b",".join(quoted) + b"]"


def close_frame(code: int, reason: str) -> bytes:
    return b"c[" + str(code).encode() + b"," + quote(reason) + b"]"


GO_AWAY = close_frame(3000, "Go away!")
ANOTHER_CONNECTION = close_frame(2010, "Another connection still open")


def decode_client_frame(payload: str | bytes) -> list[str]:
    """The messages in one client frame: a JSON array of strings, or a single JSON string.

    An empty frame carries no message. Anything else raises SockJSFrameError.
    """
    if not payload:
        return []
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise SockJSFrameError("broken JSON encoding") from exc
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise SockJSFrameError("payload expected to be a JSON array of strings")


def ws_text_frame(payload: bytes) -> bytes:
    """A complete unmasked server-to-client WebSocket text frame (RFC 6455 5.2)."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
