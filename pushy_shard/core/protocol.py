"""Pushy messages: client text -> a command (or a protocol error); server events -> bytes.

PROTOCOL.md 2 and 3.3. Encoding happens once per event, here, with orjson.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from pushy_shard.errors import BogusMessage, InvalidChannel, MessageTooLarge

CONNECT = "pushy:connect"
ERROR = "pushy:error"
NEEDAUTH = "pushy:subscription-needauth"
SUBSCRIPTION_FAILED = "pushy:subscription-failed"
SUBSCRIPTION_SUCCESS = "pushy:subscription-success"
SUBSCRIPTION_END = "pushy:subscription-end"
PRESENCE_ADD = "pushy:presence-add"
PRESENCE_QUIT = "pushy:presence-quit"

_SURROGATE = re.compile("[\ud800-\udfff]")

MAX_CHANNEL_LENGTH = 200
MAX_MESSAGE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """One client command. `channel` is the channel it names (routing), or None."""

    name: str
    data: dict[str, Any]
    channel: str | None


def parse_client_message(text: str, *, max_bytes: int = MAX_MESSAGE_BYTES) -> ClientCommand | None:
    """Parse one SockJS message (PROTOCOL.md 2, 3.3).

    Returns None for a message the protocol ignores (an object with `event` only, as the
    original did). Raises BogusMessage, InvalidChannel or MessageTooLarge.
    """
    if len(text) > max_bytes or (
        len(text) * 4 > max_bytes and len(text.encode("utf-8", "surrogatepass")) > max_bytes
    ):
        raise MessageTooLarge()
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:  # orjson refuses lone surrogates and big numbers that json accepts
            message = json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError):
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
    return ClientCommand(name=name.lower(), data=data, channel=channel_of(data))


def _not_json(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def channel_of(data: dict[str, Any]) -> str | None:
    """The channel a command names, or None. A falsy value names none (as in JavaScript)."""
    channel = data.get("channel")
    if channel is None or channel == "" or channel is False or channel == 0:
        return None
    if not isinstance(channel, str):
        raise InvalidChannel("Invalid channel name: expected a string")
    if len(channel) > MAX_CHANNEL_LENGTH:
        raise InvalidChannel(f"Invalid channel name: longer than {MAX_CHANNEL_LENGTH} characters")
    return channel


_ORJSON_BLOCK = 4096


def dumps(value: object) -> bytes:
    """orjson, falling back to the stdlib for what orjson refuses (ints beyond 64 bits)."""
    try:
        out = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
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
