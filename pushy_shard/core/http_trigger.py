"""Trigger requests the front answers itself (front/trigger_http.py), as it answers WebSocket
upgrades: the plain keep-alive POSTs an app server sends, both protocols' endpoints.

Pure functions of a parsed head. Anything that is not plain (another URL or method, HTTP/1.0,
chunked or unsized bodies, `Expect`, a body over the limit, an encoded `/` in a channel
name) is left to aiohttp, whose answers stay the reference for every other case.
"""

from __future__ import annotations

import email.utils
import functools
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

from pushy_shard.core.http_head import RequestHead, RequestLine

PUSHY_PATH = ("/pushy/channel/", "/trigger")


@dataclass(frozen=True, slots=True)
class TriggerRoute:
    """Which trigger endpoint a request line names."""

    protocol: str  # "pushy" or "pusher"
    path: str  # the decoded path (what a Pusher signature covers, with the prefix)
    query: tuple[tuple[str, str], ...]  # decoded, in order, blanks kept
    channel: str = ""  # Pushy: the decoded channel name
    app_id: str = ""  # Pusher: the path's app id
    batch: bool = False  # Pusher: batch_events


def trigger_route(line: RequestLine, pusher_prefix: str) -> TriggerRoute | None:
    """The trigger endpoint of a plain `POST ... HTTP/1.1`, or None."""
    if line.method != "POST" or line.version != "HTTP/1.1":
        return None
    raw_path, _, raw_query = line.target.partition("?")
    if "%2f" in raw_path.lower() or "//" in raw_path or "/." in raw_path:
        return None  # routing such a path is aiohttp's (normalized, or no route at all)
    path = unquote(raw_path)
    query = tuple(parse_qsl(raw_query, keep_blank_values=True))
    head, tail = PUSHY_PATH
    if path.startswith(head) and path.endswith(tail):
        channel = path[len(head):-len(tail)]
        if channel and "/" not in channel:
            return TriggerRoute("pushy", path, query, channel=channel)
        return None
    if not path.startswith(pusher_prefix + "/apps/"):
        return None
    parts = path[len(pusher_prefix) + len("/apps/"):].split("/")
    if len(parts) == 2 and parts[0] and parts[1] in ("events", "batch_events"):
        return TriggerRoute("pusher", path, query, app_id=parts[0],
                            batch=parts[1] == "batch_events")
    return None


def plain_body_length(head: RequestHead, limit: int) -> int | None:
    """The body's length when it is plain (one Content-Length of at most `limit`, nothing
    chunked or expected); None leaves the request to aiohttp (which answers 413 past the
    limit, as it always has)."""
    if head.get("transfer-encoding") is not None or head.get("expect") is not None:
        return None
    if head.count("content-length") != 1:
        return None
    value = head.get("content-length") or ""
    if not value.isdigit() or not value.isascii():
        return None
    size = int(value)
    return size if size <= limit else None


def keeps_alive(head: RequestHead) -> bool:
    """HTTP/1.1 keeps the connection unless the client said `Connection: close`."""
    tokens = {token.strip().lower() for token in (head.get("connection") or "").split(",")}
    return "close" not in tokens


@functools.lru_cache(maxsize=64)
def _status_line(status: int) -> str:
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"


@functools.lru_cache(maxsize=2)
def _date(second: int) -> str:
    return email.utils.formatdate(second, usegmt=True)


def response(status: int, body: bytes, headers: dict[str, str] | None, now: float,
             close: bool) -> bytes:
    """A JSON answer, with the headers aiohttp's json_response gives it."""
    lines = [_status_line(status),
             "Content-Type: application/json; charset=utf-8",
             f"Content-Length: {len(body)}",
             f"Date: {_date(int(now))}"]
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
