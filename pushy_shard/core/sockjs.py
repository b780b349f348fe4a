"""SockJS 0.3.3 framing and the wire bytes each transport writes.

Frames: `o` open, `h` heartbeat, `a[...]` messages (each a JSON string), `c[code,"reason"]`
close. Each transport wraps a frame its own way (xhr `frame\n`, eventsource `data: ...`,
htmlfile a `<script>`, jsonp a callback call); HTTP/1.1 streaming responses put each wrapped
frame in one chunk. The fan-out path builds these once per event and writes the same bytes
to every member (ARCHITECTURE.md 4). The request-side parsing of xhr_send / jsonp_send
bodies and callback names lives here too, with the error each one answers.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import orjson

from pushy_shard import errors
from pushy_shard.core.protocol import loads
from pushy_shard.core.rfc6455 import OP_TEXT, encode_frame
from pushy_shard.errors import (
    SESSION_CLOSED,
    STOPPING,
    BrokenJSON,
    CallbackRequired,
    Close,
    InvalidCallback,
    PayloadExpected,
    SockJSFrameError,
)

OPEN_FRAME = b"o"
HEARTBEAT_FRAME = b"h"

# Characters SockJS servers escape inside JSON strings so that every transport (and every
# browser's JSON parser) passes them through intact (sockjs-protocol, JsonEncoding tests).
_ESCAPABLE = re.compile(
    "[\x00-\x1f\u200c-\u200f\u2028-\u202f\u2060-\u206f\ufff0-\uffff\ud800-\udfff]"
)


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group(0)):04x}"


def quote(message: str) -> bytes:
    """`message` as a JSON string literal, with the extra SockJS escapes."""
    try:
        raw = orjson.dumps(message)
    except orjson.JSONEncodeError:  # lone surrogates: orjson only writes valid UTF-8
        text = json.dumps(message, ensure_ascii=False)
    else:
        if raw.isascii():  # JSON escaped every control character: nothing else to escape
            return raw
        text = raw.decode()
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


def session_close(why: Close) -> bytes:
    """The `c[code,"reason"]` frame a SockJS session gets when the server closes it for
    `why` (a row of errors.Close that has one)."""
    if why.sockjs is None:
        raise ValueError(f"close {why.code} has no SockJS frame")
    return close_frame(*why.sockjs)


GO_AWAY = session_close(SESSION_CLOSED)
# the server is stopping (SIGTERM): the session ends here, the client should open a new one,
# which the kernel gives to a front still serving (README, Operations)
SHUTTING_DOWN = session_close(STOPPING)
ANOTHER_CONNECTION = session_close(errors.ANOTHER_CONNECTION)


def decode_client_frame(payload: str | bytes) -> list[str]:
    """The messages in one client frame: a JSON array of strings, or a single JSON string.

    An empty frame carries no message. Anything else raises SockJSFrameError.
    """
    if not payload:
        return []
    try:
        value = loads(payload)
    except ValueError:
        raise SockJSFrameError("broken JSON encoding") from None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise SockJSFrameError("payload expected to be a JSON array of strings")


def ws_text_frame(payload: bytes) -> bytes:
    """A complete unmasked server-to-client WebSocket text frame (RFC 6455 5.2)."""
    return encode_frame(OP_TEXT, payload)


# -- what each HTTP transport writes ---------------------------------------------------------

# Before its first frame: IE needs 2 KiB before it shows a streamed XHR; Opera needs a blank
# line before the first event.
XHR_STREAMING_PRELUDE = b"h" * 2048 + b"\n"
EVENTSOURCE_PRELUDE = b"\r\n"

_HTMLFILE_HEAD = """<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {{c.message(d);}};
    window.onload = function() {{c.stop();}};
  </script>
"""
HTMLFILE_MIN_PRELUDE = 1024  # Safari renders nothing of a streamed page before 1 KiB

_CALLBACK = re.compile(r"[A-Za-z0-9_.\-]{1,32}", re.ASCII)


def callback_name(value: str | None) -> str:
    """The htmlfile / jsonp callback, checked: it is written into a script unescaped."""
    if value is None or value == "":
        raise CallbackRequired()
    if _CALLBACK.fullmatch(value) is None:
        raise InvalidCallback()
    return value


def xhr_frame(frame: bytes) -> bytes:
    """xhr-streaming and xhr-polling: one frame per line."""
    return frame + b"\n"


def eventsource_frame(frame: bytes) -> bytes:
    """An EventSource event. Our frames never hold a raw CR, LF or NUL (quote escapes them)."""
    return b"data: " + frame + b"\r\n\r\n"


def js_string(frame: bytes) -> bytes:
    """`frame` as a JavaScript string literal that is also safe inside an HTML <script>."""
    return orjson.dumps(frame.decode("utf-8")).replace(b"<", b"\\u003c")


def htmlfile_frame(frame: bytes) -> bytes:
    """One frame for the htmlfile page: a script calling `p` (defined by the prelude)."""
    return b"<script>\np(" + js_string(frame) + b");\n</script>\r\n"


def jsonp_frame(callback: str, frame: bytes) -> bytes:
    """A jsonp-polling answer; `/**/` stops it being read as a Flash file (sockjs-node #163)."""
    return b"/**/" + callback.encode("ascii") + b"(" + js_string(frame) + b");\r\n"


def htmlfile_prelude(callback: str) -> bytes:
    """The htmlfile page head for a checked `callback`, padded past 1 KiB."""
    head = _HTMLFILE_HEAD.format(callback=callback).encode("ascii")
    padding = b" " * max(0, HTMLFILE_MIN_PRELUDE - len(head))
    return head + padding + b"\r\n\r\n"


def http_chunk(data: bytes) -> bytes:
    """`data` as one HTTP/1.1 chunk (RFC 9112 7.1), for writing past aiohttp's writer."""
    return b"%x\r\n" % len(data) + data + b"\r\n"


# -- what clients send over HTTP -------------------------------------------------------------


def decode_send_payload(body: bytes | str) -> list[str]:
    """The messages of an xhr_send body: a JSON array of strings (`[]` carries none).

    Raises PayloadExpected (empty, or not an array of strings) or BrokenJSON.
    """
    if not body:
        raise PayloadExpected()
    try:
        value = loads(body)
    except ValueError:
        raise BrokenJSON() from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise PayloadExpected()
    return value


def decode_jsonp_send(body: bytes, form: bool) -> list[str]:
    """The messages of a jsonp_send body: form field `d`, or the raw body when not a form."""
    if form:
        try:
            fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise BrokenJSON() from None
        values = fields.get("d")
        if not values or not values[0]:
            raise PayloadExpected()
        return decode_send_payload(values[0])
    return decode_send_payload(body)
