"""Pushy messages: client text -> a command (or a protocol error); server events -> bytes.

PROTOCOL.md 2 and 3.3. Encoding happens once per event, here, with orjson.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from pushy_shard.core.config import Limits
from pushy_shard.errors import (
    BogusMessage,
    ChannelNameRefused,
    InvalidChannel,
    MessageTooLarge,
    NotEncodable,
)

CONNECT = "pushy:connect"
ERROR = "pushy:error"
NEEDAUTH = "pushy:subscription-needauth"
SUBSCRIPTION_FAILED = "pushy:subscription-failed"
SUBSCRIPTION_SUCCESS = "pushy:subscription-success"
SUBSCRIPTION_END = "pushy:subscription-end"
PRESENCE_ADD = "pushy:presence-add"
PRESENCE_QUIT = "pushy:presence-quit"

_SURROGATE = re.compile("[\ud800-\udfff]")

# Defaults of config.limits.max_channel_length / max_message_bytes (the shells pass the
# configured values on every call).
MAX_CHANNEL_LENGTH = Limits().max_channel_length
MAX_MESSAGE_BYTES = Limits().max_message_bytes


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """One client command. `channel` is the channel it names (routing), or None."""

    name: str
    data: dict[str, Any]
    channel: str | None


def parse_client_message(
    text: str,
    *,
    max_bytes: int = MAX_MESSAGE_BYTES,
    max_channel_length: int = MAX_CHANNEL_LENGTH,
    channel_pattern: str | None = None,
) -> ClientCommand | None:
    """Parse one SockJS message (PROTOCOL.md 2, 3.3).

    Returns None for a message the protocol ignores (an object with `event` only, as the
    original did). Raises BogusMessage, InvalidChannel or MessageTooLarge. The limits are
    config.limits' (README, Limits).
    """
    if len(text) > max_bytes or (
        len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise MessageTooLarge()
    try:
        message = loads(text)
    except ValueError:
        raise BogusMessage() from None
    if not isinstance(message, dict):
        raise BogusMessage()
    has_command = message.get("command") is not None
    has_event = message.get("event") is not None
    if has_command == has_event:
        raise BogusMessage()
    if not has_command:
        return None
    name = message["command"]
    if not isinstance(name, str):
        raise BogusMessage()
    data = message.get("data")
    if not isinstance(data, dict):
        data = {}  # the Pushy client sends `data || []`: no fields, not an error
    channel = channel_of(data, max_length=max_channel_length, pattern=channel_pattern)
    return ClientCommand(name=name.lower(), data=data, channel=channel)


def loads(data: bytes | str) -> Any:
    """JSON as clients and our processes write it: orjson, or the stdlib for what orjson
    refuses but JavaScript and `dumps` write (lone surrogates). Integers past 64 bits
    become floats, as JavaScript reads them. NaN and Infinity are not JSON. Raises
    ValueError (nesting too deep included)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes) else data
    try:
        return json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def channel_of(data: dict[str, Any], *, max_length: int = MAX_CHANNEL_LENGTH,
               pattern: str | None = None) -> str | None:
    """The channel a command names, or None. A falsy value names none (as in JavaScript)."""
    channel = data.get("channel")
    if channel is None or channel == "" or channel is False or channel == 0:
        return None
    if not isinstance(channel, str):
        raise InvalidChannel("Invalid channel name: expected a string")
    problem = channel_problem(channel, max_length, pattern)
    if problem is not None:
        raise ChannelNameRefused(f"Invalid channel name: {problem}")
    return channel


def channel_problem(name: str, max_length: int, pattern: str | None) -> str | None:
    """Why `name` is not an acceptable channel name, or None. One rule for subscribes and
    triggers: at most `max_length` characters, no lone surrogate and, when set, a full match
    of `pattern`."""
    if len(name) > max_length:
        return f"longer than {max_length} characters"
    if _SURROGATE.search(name):
        # not UTF-8 encodable: a link frame naming it could not be sent, and a shard that
        # had already applied the change would leave fronts and clients behind
        return "lone surrogate"
    if pattern is not None and _compiled(pattern).fullmatch(name) is None:
        return "not allowed by the channel name pattern"
    return None


@lru_cache(maxsize=8)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_ORJSON_BLOCK = 4096


def dumps(value: object) -> bytes:
    """orjson, falling back to the stdlib for what orjson refuses (ints beyond 64 bits).

    Raises NotEncodable for what neither can write; callers encode before they change state.
    """
    try:
        out = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        except (TypeError, ValueError, RecursionError) as exc:
            raise NotEncodable(f"not JSON: {type(exc).__name__}: {str(exc)[:100]}") from None
        # lone surrogates as \udxxx escapes, as JSON.stringify writes them: valid UTF-8
        return _SURROGATE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text).encode()
    # orjson leaves a small result in a 4 KiB allocation: an exact copy keeps the messages a
    # subscribe storm queues (thousands at once) from costing 4 KiB each and fragmenting
    # the heap, which an idle server's memory would show long after (bench `idle`).
    return memoryview(out).tobytes() if len(out) < _ORJSON_BLOCK else out


def event(name: str, data: object, channel: str | None = None) -> bytes:
    """A server event: `{"event","data"}` or `{"event","channel","data"}` (PROTOCOL.md 2)."""
    if channel is None:
        return dumps({"event": name, "data": data})
    return dumps({"event": name, "channel": channel, "data": data})


def error_event(payload: dict[str, str]) -> bytes:
    return event(ERROR, payload)
