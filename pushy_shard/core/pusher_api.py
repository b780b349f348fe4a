"""Bodies of the Pusher HTTP API's triggers (PUSHER.md 8): POST /apps/{id}/events and
/apps/{id}/batch_events -> `Event`s to deliver, or ApiError with the status to answer.

Run after pusher_auth.verify; the shell refuses a body over MAX_BODY before reading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pushy_shard.core.protocol import dumps, loads
from pushy_shard.core.pusher_names import Kind, parse_channel
from pushy_shard.errors import ApiError, PushyError

__all__ = [
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_CHANNELS",
    "MAX_DATA_BYTES",
    "MAX_EVENT_NAME",
    "RESERVED_PREFIXES",
    "TRIGGER_INFO",
    "Event",
    "parse_batch",
    "parse_events",
    "parse_info",
]

MAX_BODY = 256 * 1024  # bytes of a request body (413), applied by the caller
MAX_CHANNELS = 100  # channels per event (400)
MAX_BATCH = 10  # events per batch (400)
MAX_DATA_BYTES = 10 * 1024  # UTF-8 bytes of `data` (413)
MAX_EVENT_NAME = 200  # characters of an event name (400)
RESERVED_PREFIXES = ("pusher:", "pusher_internal:")  # the protocol's own events
TRIGGER_INFO = ("user_count", "subscription_count")  # what a trigger can answer; others ignored

_SOCKET_ID_RE = re.compile(r"[0-9]+\.[0-9]+", re.ASCII)
_SHOWN = 100  # characters of a client's channel name echoed in an error


@dataclass(frozen=True, slots=True)
class Event:
    """One event to deliver: `{"event": name, "channel": C, "data": data}` to every
    subscriber of each channel but the connection `socket_id`. `info` names the attributes
    to answer per channel, from TRIGGER_INFO, where they apply."""

    name: str
    channels: tuple[str, ...]
    data: str
    socket_id: str | None
    info: tuple[str, ...]


def parse_info(text: str | None) -> tuple[str, ...]:
    """The attribute names of an `info` parameter ("user_count,subscription_count"), in
    order, without blanks or repeats. Which apply is the caller's business (PUSHER.md 8)."""
    if not text:
        return ()
    names = (name.strip() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


def parse_events(body: bytes) -> Event:
    """POST /apps/{id}/events: `{name, data, channels: [..] | channel, socket_id?, info?}`."""
    fields = _object(body)
    if "channels" in fields and "channel" in fields:
        raise ApiError(400, "Give channels or channel, not both")
    if "channels" in fields:
        names = fields["channels"]
        if not isinstance(names, list):
            raise ApiError(400, "channels must be a list of channel names")
    elif "channel" in fields:
        names = [fields["channel"]]
    else:
        raise ApiError(400, "Missing channels")
    return _event(fields, names)


def parse_batch(body: bytes) -> list[Event]:
    """POST /apps/{id}/batch_events: `{"batch": [{name, data, channel, socket_id?, info?}]}`.
    All or nothing: a bad event refuses the batch, its index in the message."""
    batch = _object(body).get("batch")
    if not isinstance(batch, list):
        raise ApiError(400, "batch must be a list of events")
    if len(batch) > MAX_BATCH:
        raise ApiError(400, f"Too many events in a batch (at most {MAX_BATCH})")
    events = []
    for index, item in enumerate(batch):
        try:
            if not isinstance(item, dict):
                raise ApiError(400, "an event must be an object")
            if "channels" in item:
                raise ApiError(400, "a batch event names one channel, not channels")
            if "channel" not in item:
                raise ApiError(400, "Missing channel")
            events.append(_event(item, [item["channel"]]))
        except ApiError as exc:
            raise ApiError(exc.status, f"batch[{index}]: {exc.message}") from None
    return events


def _object(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY:  # the caller's check, repeated so that parsing stays bounded
        raise ApiError(413, f"Request body too large (at most {MAX_BODY} bytes)")
    try:
        value = loads(body)
    except ValueError:
        raise ApiError(400, "The body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "The body must be a JSON object")
    return value


def _event(fields: dict[str, Any], names: list[Any]) -> Event:
    return Event(
        name=_name(fields.get("name")),
        channels=_channels(names),
        data=_data(fields),
        socket_id=_socket_id(fields.get("socket_id")),
        info=_trigger_info(fields.get("info")),
    )


def _name(name: object) -> str:
    if name is None:
        raise ApiError(400, "Missing name")
    if not isinstance(name, str):
        raise ApiError(400, "name must be a string")
    if not 1 <= len(name) <= MAX_EVENT_NAME:
        raise ApiError(400, f"name must be 1-{MAX_EVENT_NAME} characters")
    if name.startswith(RESERVED_PREFIXES):
        raise ApiError(400, "name must not start with pusher: or pusher_internal:")
    return name


def _channels(names: list[Any]) -> tuple[str, ...]:
    if not names:
        raise ApiError(400, "At least one channel is needed")
    if len(names) > MAX_CHANNELS:
        raise ApiError(400, f"Too many channels (at most {MAX_CHANNELS})")
    kinds: dict[str, Kind] = {}
    for name in names:
        if not isinstance(name, str):
            raise ApiError(400, "Channel names must be strings")
        try:
            kinds[name] = parse_channel(name).kind
        except PushyError:
            raise ApiError(400, f"Invalid channel name {_shown(name)}") from None
    # a repeated name is one channel: its subscribers get the event once
    if len(kinds) > 1 and Kind.ENCRYPTED in kinds.values():
        raise ApiError(400, "An event to an encrypted channel must name only that channel")
    return tuple(kinds)


def _data(fields: dict[str, Any]) -> str:
    if "data" not in fields:
        raise ApiError(400, "Missing data")
    data = fields["data"]
    if not isinstance(data, str):
        try:
            data = dumps(data).decode()
        except PushyError:
            raise ApiError(400, "data is not JSON") from None
    size = len(data)
    if size * 4 > MAX_DATA_BYTES:  # only then can the UTF-8 length pass the limit
        size = len(data.encode("utf-8", "surrogatepass"))
    if size > MAX_DATA_BYTES:
        raise ApiError(413, f"data too large (at most {MAX_DATA_BYTES} bytes)")
    return data


def _socket_id(socket_id: object) -> str | None:
    if socket_id is None:
        return None  # as absent
    if not isinstance(socket_id, str) or _SOCKET_ID_RE.fullmatch(socket_id) is None:
        raise ApiError(400, "Invalid socket_id")
    return socket_id


def _trigger_info(info: object) -> tuple[str, ...]:
    if info is not None and not isinstance(info, str):
        raise ApiError(400, "info must be a comma-separated string")
    return tuple(name for name in parse_info(info) if name in TRIGGER_INFO)


def _shown(name: str) -> str:
    """A client's name quoted for a message, cut short: a body may hold 256 KB of it."""
    if len(name) <= _SHOWN:
        return f'"{name}"'
    return f'"{name[:_SHOWN]}..."'
