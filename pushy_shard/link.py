"""The front <-> shard link codec (ARCHITECTURE.md 3).

One DEALER (front) <-> ROUTER (shard) link per pair; every message is a short multipart:
an operation tag, then its frames. Event payloads travel as the bytes the shard encoded
once; only small control bodies are orjson. Per pair everything arrives in send order.

front -> shard                              shard -> front
  HELLO   {front}                             WELCOME {shard, incarnation[, replay]}
  PING    (liveness, once a second)           PONG    (a peer's PING answered)
  RESYNC  {incarnation, members}              DONE    rid, {result}
  COMMAND rid, {sid, name, data, channel}     REPLY   sid, message
  LEAVE   rid, {sid, keys}                    JOINED  member, message
  TRIGGER rid, {key, event, data, exclude}    LEFT    sid, key, message
  STATS   rid                                 DELIVER key, exclude, message
                                              (STATS is answered by DONE rid, {samples})
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from pushy_shard.core.protocol import dumps
from pushy_shard.errors import LinkError

# front -> shard
HELLO = b"H"
RESYNC = b"R"
PING = b"p"
COMMAND = b"C"
LEAVE = b"L"
TRIGGER = b"T"
STATS = b"S"  # a /metrics snapshot; answered whatever state the shard is in
# shard -> front
WELCOME = b"W"
DONE = b"K"
REPLY = b"r"
JOINED = b"j"
LEFT = b"l"
DELIVER = b"d"
PONG = b"P"
BATCH = b"B"  # several of the above in one multipart: [BATCH, [len, ...], frames...]

NONE = b""  # an absent sid / message


def body(value: Any) -> bytes:
    return dumps(value)


def load(frame: bytes) -> Any:
    try:
        return orjson.loads(frame)
    except orjson.JSONDecodeError:
        try:  # what orjson refuses to read but `dumps` may have written (ints past 64 bits)
            return json.loads(frame)
        except ValueError as exc:
            raise LinkError(f"undecodable link body: {exc}") from exc


def text(frame: bytes) -> str:
    try:
        return frame.decode()
    except UnicodeDecodeError as exc:
        raise LinkError("link frame is not UTF-8") from exc


def opt_text(frame: bytes) -> str | None:
    return text(frame) if frame else None


def opt_bytes(value: str | None) -> bytes:
    return value.encode() if value else NONE


def front_identity(index: int, incarnation: str) -> bytes:
    """DEALER routing id: a restarted front is a new peer, never confused with its past."""
    return f"f{index}.{incarnation}".encode()
