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
from collections.abc import Mapping
from typing import Any

import orjson

from pushy_shard.core.protocol import dumps
from pushy_shard.errors import LinkError, RequestRefused

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


# The fields of each request body, checked by the shard before it changes anything. A type of
# None means "any JSON value"; a tuple allows several.
_TEXT_OR_NONE = (str, type(None))
COMMAND_FIELDS: Mapping[str, Any] = {"sid": str, "name": str, "data": dict, "channel": str,
                                     "address": _TEXT_OR_NONE}
LEAVE_FIELDS: Mapping[str, Any] = {"sid": str, "keys": list}
TRIGGER_FIELDS: Mapping[str, Any] = {"key": str, "event": str, "data": None,
                                     "exclude": _TEXT_OR_NONE, "sig": _TEXT_OR_NONE,
                                     "ts": (int, type(None))}
_OPTIONAL = {"address", "sig", "ts"}
_FRAME_TEXT = {"sid", "key", "channel", "keys", "exclude"}  # sent on as frames: UTF-8 only


def request(frame: bytes, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Decode a request body and check its fields (RequestRefused names the first bad one),
    so that a shard refuses a malformed request before it changes any state."""
    try:
        value = load(frame)
    except LinkError as exc:
        raise RequestRefused(str(exc)) from None
    if not isinstance(value, dict):
        raise RequestRefused(f"request body is {type(value).__name__}, not an object")
    for name, kind in fields.items():
        if name not in value:
            if name in _OPTIONAL:
                continue
            raise RequestRefused(f"request field {name!r} is missing")
        item = value[name]
        if kind is not None and not isinstance(item, kind):
            raise RequestRefused(f"request field {name!r} is {type(item).__name__}")
        if name in _FRAME_TEXT and item is not None:
            for text_ in item if name == "keys" else [item]:
                _check_text(name, text_)
    if value.get("sig") is not None and not isinstance(value.get("ts"), int):
        raise RequestRefused("request field 'ts' must come with 'sig'")
    return value


def _check_text(name: str, item: object) -> None:
    """A string that will travel in a frame: UTF-8 encodable (no lone surrogate)."""
    if not isinstance(item, str):
        raise RequestRefused(f"request field {name!r} holds {type(item).__name__}")
    try:
        item.encode()
    except UnicodeEncodeError:
        raise RequestRefused(f"request field {name!r} is not UTF-8 encodable") from None
