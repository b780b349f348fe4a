"""Log lines of every process, plain or JSON (config `log_format`), each naming its process.

    2026-11-27T20:00:00.123Z front-0 INFO front 1/2 ready: linked to 3 shards
    {"ts":"2026-11-27T20:00:00.123Z","role":"front","index":0,"pid":4242,"level":"info",
     "logger":"pushy_shard.front.server","msg":"front 1/2 ready: linked to 3 shards"}

The supervisor and its children share one stderr, so without the role a line would not say
which process wrote it. One line per record: a traceback goes into the line (`exc`), never
onto lines of its own, so JSON log collectors see one object per event.

aiohttp logs what a client did wrong (a request its HTTP parser refused, a client gone before
its answer was written) at ERROR with a traceback and the raw bytes; `ClientNoise` turns each
into one short, throttled line and counts it, so a scanner cannot flood the log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO

import orjson

from pushy_shard.core.ratelimit import BreachLog

__all__ = ["CLIENT_NOISE", "ClientNoise", "JsonFormatter", "PlainFormatter", "process_name",
           "setup"]

# the loggers aiohttp reports client mistakes on (web_protocol logs through aiohttp.server)
AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.websocket")
MAX_REASON = 160  # characters of a client's mistake that reach the log line


def _timestamp(record: logging.LogRecord) -> str:
    """UTC, ISO 8601 with milliseconds: sorts as text and needs no time zone to read."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def process_name(role: str, index: int | None) -> str:
    return role if index is None else f"{role}-{index}"


class PlainFormatter(logging.Formatter):
    """`TIMESTAMP ROLE-INDEX LEVEL message`, a traceback folded onto the same line."""

    def __init__(self, role: str, index: int | None) -> None:
        super().__init__()
        self.name = process_name(role, index)

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {self.name} {record.levelname} {record.getMessage()}"
        extra = self._exception(record)
        if extra:
            line += " | " + extra.replace("\n", " | ")
        return line

    def _exception(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        parts = [text for text in (record.exc_text, record.stack_info) if text]
        return "\n".join(parts)


class JsonFormatter(PlainFormatter):
    """One JSON object per line: ts, role, index (absent for the supervisor), pid, level,
    logger, msg, and exc when there is a traceback."""

    def __init__(self, role: str, index: int | None) -> None:
        super().__init__(role, index)
        self.role = role
        self.index = index

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {"ts": _timestamp(record), "role": self.role}
        if self.index is not None:
            line["index"] = self.index
        line.update(pid=record.process, level=record.levelname.lower(), logger=record.name,
                    msg=record.getMessage())
        extra = self._exception(record)
        if extra:
            line["exc"] = extra
        return orjson.dumps(line, default=str).decode()


class ClientNoise(logging.Filter):
    """Rewrites aiohttp's records of a client's mistake into one short line; others pass.

    `malformed`: a request aiohttp's parser refused (it answered 400), logged at INFO.
    `dropped`: the client left before its answer was written, logged at DEBUG. Neither is a
    fault here, so no traceback and no raw bytes (beyond a short escaped excerpt), at most
    one line per kind per `interval` seconds (the line says how many it left out).
    Exceptions of our own handlers keep their ERROR line and traceback. `counts` feeds
    /metrics (`pushy_bad_requests_total{kind}`).
    """

    KINDS = ("malformed", "dropped")

    def __init__(self, interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.counts = dict.fromkeys(self.KINDS, 0)
        self._throttle = BreachLog(interval)
        self._clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        kind = _client_mistake(exc)
        if kind is None or exc is None:
            return _enabled(record.levelno)
        self.counts[kind] += 1
        if kind == "malformed":
            text = f"bad HTTP request from {_peer(record)}: {_reason(exc)}"
            level = logging.INFO
        else:
            text = f"client {_peer(record)} left before its answer was written: {_reason(exc)}"
            level = logging.DEBUG
        line = self._throttle.line(kind, self._clock(), text)
        if line is None:
            return False
        record.msg, record.args = "%s", (line,)
        record.levelno, record.levelname = level, logging.getLevelName(level)
        record.exc_info = record.exc_text = record.stack_info = None
        return _enabled(record.levelno)


def _enabled(level: int) -> bool:
    """The process's level (`log_level`, reloadable) applied here: `setup` opens the aiohttp
    loggers to DEBUG so that what aiohttp reports at debug is counted too."""
    return level >= logging.getLogger().getEffectiveLevel()


def _client_mistake(exc: BaseException | None) -> str | None:
    """'malformed', 'dropped', or None for an exception that is our fault (or none)."""
    if exc is None:
        return None
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return "dropped"  # aiohttp's ClientConnectionResetError is a ConnectionResetError
    from aiohttp.http_exceptions import HttpProcessingError  # loaded: aiohttp logged this

    return "malformed" if isinstance(exc, HttpProcessingError) else None


def _peer(record: logging.LogRecord) -> str:
    """The client address of aiohttp's "Error handling request from %s", else '?'."""
    args = record.args
    if isinstance(args, tuple) and len(args) == 1 and "from %s" in str(record.msg):
        return str(args[0])
    return "?"


def _reason(exc: BaseException) -> str:
    """The first line of the exception's message, printable ASCII, at most MAX_REASON."""
    text = str(getattr(exc, "message", "") or exc or type(exc).__name__)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0].rstrip(":") if lines else type(exc).__name__
    if len(lines) > 1 and lines[0].endswith(":"):  # the parser's excerpt of the bytes
        reason += " " + lines[1]
    escaped = reason.encode("ascii", "backslashreplace").decode("ascii")
    escaped = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)
    if len(escaped) > MAX_REASON:
        escaped = escaped[: MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {escaped}"


CLIENT_NOISE = ClientNoise()  # one per process: the front reads its counts for /metrics


def setup(role: str, index: int | None = None, *, level: str = "info", fmt: str = "plain",
          stream: IO[str] | None = None) -> logging.Handler:
    """Route every logger of this process (aiohttp's too) to one handler on stderr.

    Call once, first thing in a process; returns the handler (tests swap the stream).
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    formatter = JsonFormatter(role, index) if fmt == "json" else PlainFormatter(role, index)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name in AIOHTTP_LOGGERS:
        aiohttp_logger = logging.getLogger(name)
        if CLIENT_NOISE not in aiohttp_logger.filters:
            aiohttp_logger.addFilter(CLIENT_NOISE)
    # aiohttp logs a first request that is not HTTP at all at debug: let it reach the filter
    # to be counted; the filter applies the process's level itself
    logging.getLogger("aiohttp.server").setLevel(logging.DEBUG)
    return handler
