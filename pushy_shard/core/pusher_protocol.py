"""Pusher Channels messages: client text -> a ClientMessage; server messages -> bytes.

PUSHER.md 2-7. The socket-free half of a Pusher connection: the shells check the size
(`too_large`, close 1009), `parse` each text frame, act on the message and send the bytes the
encoders here build. Server `data` is a JSON-encoded *string* (double encoding) except in
pusher:error, pusher:ping/pong, pusher:signin_success and pusher:subscription_error, whose
`data` is an object; pusher:cache_miss has none. Key order follows PUSHER.md's examples
(event, channel, data, user_id): pusher-js does not care, but tests compare bytes.

Pure: no I/O, no clock; randomness only in `new_socket_id`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pushy_shard.core.protocol import dumps, loads
from pushy_shard.errors import (
    FrameError,
    InvalidPusherMessage,
    NotEncodable,
    SubscriptionRefused,
)

__all__ = [
    "APP_UNKNOWN",
    "CLIENT_EVENT_MAX_DATA",
    "CLIENT_EVENT_MAX_NAME",
    "CLIENT_EVENT_RATE",
    "ClientEvent",
    "ClientMessage",
    "INVALID_AUTH",
    "INVALID_CHANNEL_DATA",
    "INVALID_MESSAGE",
    "INVALID_SIGNIN",
    "Ignored",
    "MAX_USER_ID",
    "MAX_USER_INFO",
    "Member",
    "OVER_CAPACITY",
    "OVER_QUOTA",
    "PONG_TIMEOUT",
    "PROTOCOL_MISSING",
    "PROTOCOL_UNSUPPORTED",
    "Ping",
    "Pong",
    "SHUTTING_DOWN",
    "Signin",
    "Subscribe",
    "UNAUTHORIZED",
    "Unsubscribe",
    "cache_miss",
    "client_event_too_large",
    "connection_established",
    "error",
    "event",
    "member_added",
    "member_removed",
    "new_socket_id",
    "parse",
    "ping",
    "pong",
    "presence_member",
    "presence_succeeded",
    "protocol_version_error",
    "signin_success",
    "signin_user",
    "subscription_count",
    "subscription_error",
    "subscription_succeeded",
    "too_large",
]

# -- close and error codes (PUSHER.md 7) -----------------------------------------------------
# Fatal ones go out as `pusher:error` with the code, then a close with the same code.
# errors.py's Close table references these; the reasons live there.

APP_UNKNOWN = 4001  # unknown app key
OVER_QUOTA = 4004  # app at max_connections (Choice: Soketi's 4100 is retried forever)
PROTOCOL_UNSUPPORTED = 4007  # `protocol` not 4-7
PROTOCOL_MISSING = 4008  # no `protocol` in the query
UNAUTHORIZED = 4009  # no signin in 30 s, failed required signin, terminate_connections
OVER_CAPACITY = 4100  # server capacity, never an app quota (Choice); pusher-js backs off
SHUTTING_DOWN = 4200  # graceful shutdown (Choice); pusher-js reconnects at once
PONG_TIMEOUT = 4201  # no activity after our pusher:ping
CLIENT_EVENT_RATE = 4301  # client-event rate: a pusher:error only, no close

_PROTOCOL_RE = re.compile(r"[0-9]{1,3}")


def protocol_version_error(query_value: str | None) -> int | None:
    """The close code for the `protocol` query parameter of a WebSocket or fallback request:
    PROTOCOL_MISSING when absent or empty, PROTOCOL_UNSUPPORTED unless a decimal integer 4-7,
    None when the connection may proceed."""
    if not query_value:
        return PROTOCOL_MISSING
    if not _PROTOCOL_RE.fullmatch(query_value) or not 4 <= int(query_value) <= 7:
        return PROTOCOL_UNSUPPORTED
    return None


# -- client messages (PUSHER.md 2, 3, 5, 6) --------------------------------------------------

CLIENT_EVENT_MAX_NAME = 200  # characters (PUSHER.md 5, rule 4)
CLIENT_EVENT_MAX_DATA = 10 * 1024  # UTF-8 bytes of the data string (PUSHER.md 5, rule 4)

INVALID_MESSAGE = "Invalid message"
INVALID_SIGNIN = "Invalid signin"  # the caller closes 4009 on it when user_authentication is on
INVALID_AUTH = "Invalid auth"
INVALID_CHANNEL_DATA = "Invalid channel_data"

# The subscription_error each Subscribe.problem stands for (PUSHER.md 7).
_PROBLEMS: dict[str, tuple[str, int]] = {
    INVALID_AUTH: ("AuthError", 401),
    INVALID_CHANNEL_DATA: ("BadRequest", 400),
}


@dataclass(frozen=True, slots=True)
class Subscribe:
    """`pusher:subscribe`. `auth` and `channel_data` are the strings received (None when
    absent or null): the signature covers them exactly. A field of another type is not
    dropped silently: it is None and `problem` names it; the caller validates the channel
    name first (BadChannelName), then answers `refusal()` as a subscription_error, whatever
    the channel's kind."""

    channel: str
    auth: str | None
    channel_data: str | None
    problem: str | None = None  # INVALID_AUTH or INVALID_CHANNEL_DATA

    def refusal(self) -> SubscriptionRefused | None:
        """The refusal `problem` calls for (AuthError 401 / BadRequest 400), or None."""
        if self.problem is None:
            return None
        kind, status = _PROBLEMS[self.problem]
        return SubscriptionRefused(kind, status, self.problem)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """`pusher:unsubscribe`: no reply, whether or not the connection was subscribed."""

    channel: str


@dataclass(frozen=True, slots=True)
class Ping:
    """`pusher:ping`: answer `pong()`."""


@dataclass(frozen=True, slots=True)
class Pong:
    """`pusher:pong`, the answer to our `ping()`: activity only, nothing to send."""


@dataclass(frozen=True, slots=True)
class Signin:
    """`pusher:signin`: `auth` signs `user_data` exactly as received (PUSHER.md 3, 6); read
    the id with `signin_user` once the signature holds."""

    auth: str
    user_data: str


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """A `client-` event. `data` is what the others get: the JSON string as received, or the
    compact JSON of any other value. The caller applies PUSHER.md 5's checks in order
    (`client_event_too_large` is rule 4)."""

    event: str
    channel: str
    data: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Any other event (PUSHER.md 2): activity, nothing else."""


ClientMessage = Subscribe | Unsubscribe | Ping | Pong | Signin | ClientEvent | Ignored

# The field-less messages are values: one instance each, no allocation per frame.
_PING = Ping()
_PONG = Pong()
_IGNORED = Ignored()


def too_large(text: str, max_bytes: int) -> bool:
    """Whether `text` is over `max_bytes` UTF-8 bytes: close 1009 without parsing it
    (PUSHER.md 2). O(1) for ASCII text and for text short enough to fit in any case."""
    n = len(text)
    if n > max_bytes:
        return True
    if n * 4 <= max_bytes or text.isascii():
        return False
    return len(text.encode("utf-8", "surrogatepass")) > max_bytes


def parse(text: str, max_bytes: int) -> ClientMessage:
    """The message in one client text frame.

    Raises InvalidPusherMessage (answer `error(None, exc.message)`, keep the connection):
    "Invalid message" for a frame that is not a JSON object with a string `event`, or whose
    `data` has the wrong shape; "Invalid subscribe: no channel" / "Invalid unsubscribe: no
    channel" when there is no channel to name in a subscription_error; INVALID_SIGNIN for a
    pusher:signin without string `auth` and `user_data`. The caller checks `too_large`
    first (close 1009); should a text over `max_bytes` reach here anyway it is not decoded:
    FrameError(1009) is raised.
    """
    if too_large(text, max_bytes):
        raise FrameError(1009, "Message too big")
    try:
        message = loads(text)
    except ValueError:
        raise InvalidPusherMessage() from None
    if not isinstance(message, dict):
        raise InvalidPusherMessage()
    name = message.get("event")
    if not isinstance(name, str):
        raise InvalidPusherMessage()
    if name.startswith("client-"):
        return _client_event(name, message)
    if name == "pusher:ping":
        return _PING
    if name == "pusher:pong":
        return _PONG
    if name == "pusher:subscribe":
        return _subscribe(_object_data(message.get("data"), INVALID_MESSAGE))
    if name == "pusher:unsubscribe":
        channel = _object_data(message.get("data"), INVALID_MESSAGE).get("channel")
        if not isinstance(channel, str):
            raise InvalidPusherMessage("Invalid unsubscribe: no channel")
        return Unsubscribe(channel)
    if name == "pusher:signin":
        data = _object_data(message.get("data"), INVALID_SIGNIN)
        auth = data.get("auth")
        user_data = data.get("user_data")
        if not isinstance(auth, str) or not isinstance(user_data, str):
            raise InvalidPusherMessage(INVALID_SIGNIN)
        return Signin(auth, user_data)
    return _IGNORED


def _object_data(data: object, problem: str) -> dict[str, Any]:
    """A pusher: event's `data`: an object, or (some clients) a JSON string holding one."""
    if isinstance(data, str):
        try:
            data = loads(data)
        except ValueError:
            raise InvalidPusherMessage(problem) from None
    if not isinstance(data, dict):
        raise InvalidPusherMessage(problem)
    return data


def _subscribe(data: dict[str, Any]) -> Subscribe:
    channel = data.get("channel")
    if not isinstance(channel, str):
        raise InvalidPusherMessage("Invalid subscribe: no channel")
    auth = data.get("auth")
    channel_data = data.get("channel_data")
    problem = None
    if auth is not None and not isinstance(auth, str):
        auth, problem = None, INVALID_AUTH
    if channel_data is not None and not isinstance(channel_data, str):
        channel_data = None
        problem = problem or INVALID_CHANNEL_DATA
    return Subscribe(channel, auth, channel_data, problem)


def _client_event(name: str, message: dict[str, Any]) -> ClientEvent:
    channel = message.get("channel")
    if not isinstance(channel, str):
        raise InvalidPusherMessage()
    data = message.get("data")  # absent (pusher-js `trigger(name)`) relays as "null"
    if not isinstance(data, str):
        try:
            data = dumps(data).decode()
        except NotEncodable:  # nesting orjson reads but cannot write back
            raise InvalidPusherMessage() from None
    return ClientEvent(name, channel, data)


def client_event_too_large(ev: ClientEvent) -> bool:
    """PUSHER.md 5 rule 4: name over 200 characters or data over 10 KB of UTF-8."""
    if len(ev.event) > CLIENT_EVENT_MAX_NAME:
        return True
    return too_large(ev.data, CLIENT_EVENT_MAX_DATA)


# -- presence and sign-in data (PUSHER.md 4, 6) ----------------------------------------------

MAX_USER_ID = 128  # characters of its text form
MAX_USER_INFO = 1024  # UTF-8 bytes of its compact JSON


@dataclass(frozen=True, slots=True)
class Member:
    """One presence member as its channel_data describes it. `user_id` is kept as written
    (Laravel sends integers) for the ids list and member events; `user_key`, its text, is
    the identity (1 and "1" are one user) and the key of the presence hash."""

    user_id: object  # str | int
    user_key: str
    user_info: object


def presence_member(channel_data: str) -> Member:
    """The member a presence subscription's (signed) channel_data names.

    Raises SubscriptionRefused: BadRequest 400 when it is not a JSON object or `user_id` is
    missing or not a non-empty string or integer; LimitReached 413 when `user_id` is over
    128 characters as text or `user_info` over 1 KB as compact JSON."""
    try:
        data = loads(channel_data)
    except ValueError:
        raise SubscriptionRefused("BadRequest", 400, INVALID_CHANNEL_DATA) from None
    if not isinstance(data, dict):
        raise SubscriptionRefused("BadRequest", 400, INVALID_CHANNEL_DATA)
    if "user_id" not in data:
        raise SubscriptionRefused("BadRequest", 400, "Missing user_id")
    user_id = data["user_id"]
    if isinstance(user_id, str) and user_id:
        user_key = user_id
    elif isinstance(user_id, int) and not isinstance(user_id, bool):
        user_key = str(user_id)  # loads refuses ints past str()'s digit limit
    else:
        raise SubscriptionRefused("BadRequest", 400, "Invalid user_id")
    if len(user_key) > MAX_USER_ID:
        raise SubscriptionRefused("LimitReached", 413,
                                  f"user_id longer than {MAX_USER_ID} characters")
    user_info = data.get("user_info", {})  # null stays null: only absence means {}
    try:
        info_size = len(dumps(user_info))
    except NotEncodable:  # nested past what can be written back: too big by any measure
        info_size = MAX_USER_INFO + 1
    if info_size > MAX_USER_INFO:
        raise SubscriptionRefused("LimitReached", 413, "user_info larger than 1 KB")
    return Member(user_id, user_key, user_info)


def signin_user(user_data: str) -> str:
    """The user id of a (signed) pusher:signin `user_data`: a JSON object whose `id` is a
    non-empty string (pusher-js drops others). Raises InvalidPusherMessage(INVALID_SIGNIN)."""
    try:
        data = loads(user_data)
    except ValueError:
        raise InvalidPusherMessage(INVALID_SIGNIN) from None
    user_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise InvalidPusherMessage(INVALID_SIGNIN)
    return user_id


# -- server messages (PUSHER.md 2-7) ---------------------------------------------------------


def _string(value: object) -> str:
    """`value` as the JSON string a double-encoded `data` holds."""
    return dumps(value).decode()


def connection_established(socket_id: str, activity_timeout: int) -> bytes:
    """The first frame of every connection (PUSHER.md 2)."""
    inner = _string({"socket_id": socket_id, "activity_timeout": activity_timeout})
    return dumps({"event": "pusher:connection_established", "data": inner})


def error(code: int | None, message: str) -> bytes:
    """`pusher:error`: code None for a refusal that keeps the connection; a fatal one is
    followed by a close with the same code (PUSHER.md 7)."""
    return dumps({"event": "pusher:error", "data": {"code": code, "message": message}})


_PING_BYTES = dumps({"event": "pusher:ping", "data": {}})
_PONG_BYTES = dumps({"event": "pusher:pong", "data": {}})


def ping() -> bytes:
    """What the server sends after activity_timeout of silence (PUSHER.md 2)."""
    return _PING_BYTES


def pong() -> bytes:
    """The answer to a client's pusher:ping."""
    return _PONG_BYTES


def subscription_succeeded(channel: str) -> bytes:
    """A joined public, private or user channel (presence: `presence_succeeded`)."""
    return dumps({"event": "pusher_internal:subscription_succeeded", "channel": channel,
                  "data": "{}"})


def presence_succeeded(channel: str, ids: list[object], hash: Mapping[str, object]) -> bytes:
    """A joined presence channel: the distinct users in join order, the joiner included;
    `ids` as written, `hash` keyed by their text (PUSHER.md 4)."""
    members = hash if isinstance(hash, dict) else dict(hash)
    inner = _string({"presence": {"ids": ids, "hash": members, "count": len(ids)}})
    return dumps({"event": "pusher_internal:subscription_succeeded", "channel": channel,
                  "data": inner})


def subscription_error(channel: str, kind: str, message: str, status: int) -> bytes:
    """A refused subscription in Soketi's per-channel form (PUSHER.md 7, Choice): pass a
    SubscriptionRefused's kind, message and status."""
    return dumps({"event": "pusher:subscription_error", "channel": channel,
                  "data": {"type": kind, "error": message, "status": status}})


def member_added(channel: str, user_id: object, user_info: object) -> bytes:
    """To the channel's other connections when a user's first connection joins."""
    inner = _string({"user_id": user_id, "user_info": user_info})
    return dumps({"event": "pusher_internal:member_added", "channel": channel, "data": inner})


def member_removed(channel: str, user_id: object) -> bytes:
    """To the channel's connections when a user's last connection leaves."""
    inner = _string({"user_id": user_id})
    return dumps({"event": "pusher_internal:member_removed", "channel": channel,
                  "data": inner})


def signin_success(user_data: str) -> bytes:
    """A signin that holds: the user_data string echoed back (PUSHER.md 6)."""
    return dumps({"event": "pusher:signin_success", "data": {"user_data": user_data}})


def cache_miss(channel: str) -> bytes:
    """After a cache channel's success frame when it holds no event (PUSHER.md 3)."""
    return dumps({"event": "pusher:cache_miss", "channel": channel})


def subscription_count(channel: str, count: int) -> bytes:
    """The channel's connection count, to each subscriber (opt-in, PUSHER.md 3)."""
    inner = _string({"subscription_count": count})
    return dumps({"event": "pusher_internal:subscription_count", "channel": channel,
                  "data": inner})


def event(name: str, channel: str, data: str, user_id: object = None) -> bytes:
    """An event for a channel's subscribers: HTTP-triggered, or a client event relayed (on a
    presence channel with the sender's `user_id`, as written). Built once per event."""
    if user_id is None:
        return dumps({"event": name, "channel": channel, "data": data})
    return dumps({"event": name, "channel": channel, "data": data, "user_id": user_id})


# -- socket ids (PUSHER.md 2) ----------------------------------------------------------------

_SOCKET_ID_PART = 10**10  # two parts of up to 10 digits: about 66 random bits


def new_socket_id() -> str:
    """A fresh socket id `^\\d+\\.\\d+$` (the SDKs check the shape). Random, not counted, so
    that processes need not coordinate and no client can guess another's (it is signed in
    every channel auth)."""
    return f"{secrets.randbelow(_SOCKET_ID_PART)}.{secrets.randbelow(_SOCKET_ID_PART)}"
