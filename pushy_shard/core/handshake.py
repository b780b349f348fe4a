"""Which requests the front's own WebSocket layer takes, and its HTTP answers (RFC 6455 4).

The fast path takes only plain, valid upgrades on the two WebSocket URLs of PROTOCOL.md 1;
every other request (including refused ones) goes to aiohttp, so clients see one set of
answers. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from enum import Enum

from pushy_shard.core.http_head import RequestHead, RequestLine

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


class Route(Enum):
    """The WebSocket transports (PROTOCOL.md 1, PUSHER.md 1)."""

    SOCKJS = "sockjs"  # <prefix>/<server>/<session>/websocket, SockJS framing
    RAW = "raw"  # <prefix>/websocket, one message per text frame
    PUSHER = "pusher"  # <pusher prefix>/app/<key>, one Pusher message per text frame


def pusher_app_key(target: str, pusher_prefix: str) -> str | None:
    """The app key of a Pusher WebSocket URL (`/app/<key>?protocol=7...`), or None."""
    path = target.partition("?")[0]
    start = pusher_prefix + "/app/"
    if "%" in path or not path.startswith(start):
        return None
    key = path[len(start):]
    return key if key and "/" not in key else None


def websocket_route(target: str, prefix: str, pusher_prefix: str | None = None
                    ) -> Route | None:
    """The transport a request target names, or None. Percent-escapes, dots and odd shapes
    are left to aiohttp's router (it decodes them and answers 404 where it must)."""
    if pusher_prefix is not None and pusher_app_key(target, pusher_prefix) is not None:
        return Route.PUSHER
    path = target.partition("?")[0]
    if "%" in path or not path.startswith(prefix + "/"):
        return None
    rest = path[len(prefix) + 1:]
    if rest == "websocket":
        return Route.RAW
    parts = rest.split("/")
    if (len(parts) == 3 and parts[2] == "websocket" and all(parts[:2])
            and "." not in parts[0] and "." not in parts[1]):
        return Route.SOCKJS
    return None


def fast_path_candidate(line: RequestLine, prefix: str | None,
                        pusher_prefix: str | None = None) -> Route | None:
    """From the request line alone: could this be an upgrade the fast path takes? A None
    `prefix` leaves the SockJS routes out (`sockjs.websocket` false)."""
    if line.method != "GET" or line.version != "HTTP/1.1":
        return None
    if prefix is None:
        if pusher_prefix is not None and pusher_app_key(line.target, pusher_prefix):
            return Route.PUSHER
        return None
    return websocket_route(line.target, prefix, pusher_prefix)


def _tokens(value: str | None) -> set[str]:
    return {token.strip().lower() for token in (value or "").split(",")}


def upgrade_key(head: RequestHead) -> str | None:
    """The Sec-WebSocket-Key of a complete, valid version 13 upgrade (RFC 6455 4.2.1), or
    None: the request is then not ours to answer."""
    if head.line.method != "GET" or head.line.version != "HTTP/1.1":
        return None
    if (head.get("upgrade") or "").strip().lower() != "websocket":
        return None
    if "upgrade" not in _tokens(head.get("connection")):
        return None
    if head.get("sec-websocket-version") != "13" or head.count("sec-websocket-key") != 1:
        return None
    key = head.get("sec-websocket-key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return key


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for `key` (RFC 6455 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def switching_protocols(key: str, headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The 101 answer that opens a WebSocket, with `headers` added."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def error_response(status: int, reason: str) -> bytes:
    """A plain-text answer after which the server closes the connection."""
    body = (reason + "\n").encode("latin-1")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1") + body
