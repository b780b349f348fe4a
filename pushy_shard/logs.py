"""Log lines of every process, plain or JSON (config `log_format`), each naming its process.

    2026-11-27T20:00:00.123Z front-0 INFO front 1/2 ready: linked to 3 shards
    {"ts":"2026-11-27T20:00:00.123Z","role":"front","index":0,"pid":4242,"level":"info",
     "logger":"pushy_shard.front.server","msg":"front 1/2 ready: linked to 3 shards"}

The supervisor and its children share one stderr, so without the role a line would not say
which process wrote it. One line per record: a traceback goes into the line (`exc`), never
onto lines of its own, so JSON log collectors see one object per event.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

import orjson

__all__ = ["JsonFormatter", "PlainFormatter", "process_name", "setup"]


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
    return handler
