"""The head of one HTTP/1.x request (RFC 9112 3-5), read by the front before it decides who
serves the connection: its own WebSocket layer, or aiohttp.

Pure functions of bytes. Anything unusual raises `BadRequestHead`; the caller hands such a
connection to aiohttp, whose answers stay the reference for everything but the fast path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pushy_shard.errors import BadRequestHead, HeadTooLarge

MAX_HEAD_BYTES = 16 * 1024  # a head not complete by then is answered 431 (RFC 6585 5)

_METHOD = re.compile(rb"[A-Z]{1,20}")
_VERSION = re.compile(rb"HTTP/[0-9]\.[0-9]")
_TARGET = re.compile(rb"[\x21-\x7e]+")  # visible ASCII, no spaces (RFC 9112 3.2)
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 5.1)
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # controls other than tab


@dataclass(frozen=True, slots=True)
class RequestLine:
    method: str
    target: str
    version: str  # "HTTP/1.1"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed head: header names lower-cased, in received order, repeats kept."""

    line: RequestLine
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The value of header `name` (lower case); repeats joined by ", " (RFC 9110 5.3)."""
        values = [value for key, value in self.headers if key == name]
        if not values:
            return None
        return values[0] if len(values) == 1 else ", ".join(values)

    def count(self, name: str) -> int:
        return sum(1 for key, _ in self.headers if key == name)


def line_end(buffer: bytes) -> int:
    """Where the request line ends (just past its LF), or -1 while it is incomplete."""
    end = buffer.find(b"\n")
    return -1 if end < 0 else end + 1


def head_end(buffer: bytes) -> int:
    """Where the head ends (just past its blank line), or -1 while it is incomplete. Bare LF
    line ends are found too; `parse_head` decides whether they are acceptable."""
    ends = [i + len(mark) for mark in (b"\n\r\n", b"\n\n") if (i := buffer.find(mark)) >= 0]
    return min(ends) if ends else -1


def check_size(buffer: bytes, line_complete: bool) -> None:
    """Raises HeadTooLarge once a request line (414) or head (431), complete or not, passed
    MAX_HEAD_BYTES."""
    if len(buffer) > MAX_HEAD_BYTES:
        if line_complete:
            raise HeadTooLarge()
        raise HeadTooLarge(414, "URI Too Long")


def parse_request_line(line: bytes) -> RequestLine:
    """`METHOD SP TARGET SP HTTP/x.y`, with or without its line end."""
    check_size(line, line_complete=False)
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) != 3:
        raise BadRequestHead("Bad request line")
    method, target, version = parts
    if (_METHOD.fullmatch(method) is None or _TARGET.fullmatch(target) is None
            or _VERSION.fullmatch(version) is None):
        raise BadRequestHead("Bad request line")
    return RequestLine(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"))


def parse_head(head: bytes) -> RequestHead:
    """The request line and headers of `head` (up to and including its blank line).

    Refuses obsolete line folding, header names that are not tokens, whitespace before the
    colon and control characters in values (RFC 9112 5), and heads over MAX_HEAD_BYTES."""
    check_size(head, line_complete=True)
    lines = head.split(b"\n")
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    if not lines:
        raise BadRequestHead("Empty request")
    request_line = parse_request_line(lines[0])
    headers = []
    for raw in lines[1:]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:
            raise BadRequestHead("Bad header line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value) is not None:
            raise BadRequestHead("Bad header value")
        headers.append((name.decode("ascii").lower(), value.decode("latin-1")))
    return RequestHead(request_line, tuple(headers))
