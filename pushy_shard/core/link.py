"""The front <-> shard link: every message one frozen type with its encoding (ARCHITECTURE.md 3).

One DEALER (front) <-> ROUTER (shard) link per pair; every message is a short multipart: an
operation tag, then its frames. Event payloads travel as the bytes the shard encoded once;
small control bodies are orjson. Per pair everything arrives in send order.

    front -> shard                              shard -> front
      Hello   {front}                             Welcome {shard, incarnation[, replay]}
      Ping    (liveness, once a second)           Pong    (a Ping answered)
      Resync  {front, incarnation, members}       Done    rid, {result}
      Command rid, {sid, name, data, channel}     Reply   sid, message
      Leave   rid, {sid, keys}                    Joined  member, message
      Trigger rid, {key, event, data, exclude}    Left    sid, key, message
      Join    rid, {sid, key, channel, member}
      Query   rid, {app, what, name, prefix, info}
      Stats   rid                                 Deliver key, exclude, message
                                                  Batch   [sizes], the frames of several

Requests (Command, Leave, Trigger, Join, Query, Stats) carry the id the front's links give
them and are answered by exactly one Done. `decode_request` checks a request's every field before a
shard changes anything: a malformed one decodes to `Malformed`, which the shard answers
with an error rather than dropping, so the front never waits it out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pushy_shard.core.channels import MemberState
from pushy_shard.core.protocol import dumps, loads
from pushy_shard.errors import LinkError, NotEncodable, RequestRefused

NONE = b""  # an absent sid / message frame
REDIS_DOWN = b"redis-down"  # a Pong's flag


def body(value: Any) -> bytes:
    """A control body: compact JSON (NotEncodable for what JSON cannot carry)."""
    return dumps(value)


def load(frame: bytes) -> Any:
    """A control body back (LinkError when it is not JSON)."""
    try:
        return loads(frame)
    except ValueError as exc:
        raise LinkError(f"undecodable link body: {exc}") from exc


def _text(frame: bytes) -> str:
    try:
        return frame.decode()
    except UnicodeDecodeError as exc:
        raise LinkError("link frame is not UTF-8") from exc


def front_identity(index: int, incarnation: str) -> bytes:
    """DEALER routing id: a restarted front is a new peer, never confused with its past."""
    return f"f{index}.{incarnation}".encode()


# -- front -> shard ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    """A front's link (re)connected: the shard answers Welcome with its incarnation."""

    OP: ClassVar[bytes] = b"H"
    front: int

    def encode(self) -> list[bytes]:
        return [self.OP, body({"front": self.front})]


@dataclass(frozen=True, slots=True)
class Ping:
    """Liveness, once a second: a shard drops a front silent for `timeouts.front_silence`."""

    OP: ClassVar[bytes] = b"p"

    def encode(self) -> list[bytes]:
        return [self.OP]


@dataclass(frozen=True, slots=True)
class Resync:
    """A front's members of a shard's channels, replayed to a (re)started incarnation."""

    OP: ClassVar[bytes] = b"R"
    front: int
    incarnation: str
    members: tuple[MemberState, ...]

    def encode(self) -> list[bytes]:
        members = [m.to_wire() for m in self.members]
        return [self.OP, body({"front": self.front, "incarnation": self.incarnation,
                               "members": members})]


# Request fields: name -> the types a value may have (None: any JSON value). Checked before
# a shard changes anything (a value that will travel in a frame must also be UTF-8).
_TEXT_OR_NONE = (str, type(None))
_Fields = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Command:
    """A client's command naming a channel, run in the shard that owns it."""

    OP: ClassVar[bytes] = b"C"
    FIELDS: ClassVar[_Fields] = {"sid": str, "name": str, "data": dict, "channel": str,
                                 "address": _TEXT_OR_NONE}
    sid: str
    name: str
    data: dict[str, Any]
    channel: str
    address: str | None = None

    def encode(self, rid: bytes) -> list[bytes]:
        return [self.OP, rid, body({"sid": self.sid, "name": self.name, "data": self.data,
                                    "channel": self.channel, "address": self.address})]


@dataclass(frozen=True, slots=True)
class Leave:
    """A closed connection leaves these channels (keys)."""

    OP: ClassVar[bytes] = b"L"
    FIELDS: ClassVar[_Fields] = {"sid": str, "keys": list}
    sid: str
    keys: list[str]

    def encode(self, rid: bytes) -> list[bytes]:
        return [self.OP, rid, body({"sid": self.sid, "keys": self.keys})]


@dataclass(frozen=True, slots=True)
class Trigger:
    """An event to every member of a channel; `sig`/`ts` for replay protection; a Pusher
    client event is marked `client` and carries its sender's `user_id` on presence
    channels (PUSHER.md 5)."""

    OP: ClassVar[bytes] = b"T"
    FIELDS: ClassVar[_Fields] = {"key": str, "event": str, "data": None,
                                 "exclude": _TEXT_OR_NONE, "sig": _TEXT_OR_NONE,
                                 "ts": (int, type(None)), "user_id": None, "client": bool}
    key: str
    event: str
    data: Any
    exclude: str | None = None
    sig: str | None = None
    ts: int | None = None
    user_id: Any = None
    client: bool = False

    def encode(self, rid: bytes) -> list[bytes]:
        fields: dict[str, Any] = {"key": self.key, "event": self.event, "data": self.data,
                                  "exclude": self.exclude}
        if self.sig is not None:
            fields["sig"] = self.sig
            fields["ts"] = self.ts
        if self.client:
            fields["client"] = True
            fields["user_id"] = self.user_id
        return [self.OP, rid, body(fields)]


@dataclass(frozen=True, slots=True)
class Join:
    """A subscription the front has admitted (a Pusher client's, its signature checked
    there): the shard adds `sid` to the channel, with its presence `member` (user_id as
    written, user_key its text, user_info) on presence channels."""

    OP: ClassVar[bytes] = b"J"
    FIELDS: ClassVar[_Fields] = {"sid": str, "key": str, "channel": str,
                                 "member": (dict, type(None))}
    sid: str
    key: str
    channel: str
    member: dict[str, Any] | None = None

    def encode(self, rid: bytes) -> list[bytes]:
        return [self.OP, rid, body({"sid": self.sid, "key": self.key, "channel": self.channel,
                                    "member": self.member})]


QUERIES = ("channels", "channel", "users", "terminate")  # terminate: several instances


@dataclass(frozen=True, slots=True)
class Query:
    """The HTTP API asks about app `app`'s channels (PUSHER.md 8; core/channel_query.py):
    `what` is "channels" (the occupied ones named `prefix`..., asked of every shard),
    "channel" or "users" (of channel `name`, asked of its shard); `info` the attributes."""

    OP: ClassVar[bytes] = b"Q"
    FIELDS: ClassVar[_Fields] = {"app": str, "what": str, "name": str, "prefix": str,
                                 "info": list}
    app: str
    what: str
    name: str = ""
    prefix: str = ""
    info: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.what not in QUERIES:
            raise RequestRefused(f"request field 'what' is {self.what[:20]!r}")
        if not all(isinstance(item, str) for item in self.info):
            raise RequestRefused("request field 'info' holds a non-string")
        object.__setattr__(self, "info", tuple(self.info))  # as decoded: one value, one form

    def encode(self, rid: bytes) -> list[bytes]:
        return [self.OP, rid, body({"app": self.app, "what": self.what, "name": self.name,
                                    "prefix": self.prefix, "info": list(self.info)})]


@dataclass(frozen=True, slots=True)
class Stats:
    """A /metrics snapshot; answered whatever state the shard is in."""

    OP: ClassVar[bytes] = b"S"

    def encode(self, rid: bytes) -> list[bytes]:
        return [self.OP, rid]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request that does not decode: answered Done with an error, nothing changed."""

    reason: str


Request = Command | Leave | Trigger | Join | Query | Stats
FrontMessage = Hello | Ping | Resync
_OPTIONAL = frozenset({"address", "sig", "ts", "user_id", "client", "member"})
_FRAME_TEXT = frozenset({"sid", "key", "channel", "keys", "exclude"})  # travel on as frames
_REQUESTS: dict[bytes, type[Command | Leave | Trigger | Join | Query]] = {
    Command.OP: Command, Leave.OP: Leave, Trigger.OP: Trigger, Join.OP: Join, Query.OP: Query}


def decode_request(frames: list[bytes]) -> tuple[bytes, Request | Malformed]:
    """[op, rid, body] from a front: its id, and the request or why it is malformed."""
    op, rid = frames[0], frames[1] if len(frames) > 1 else b""
    if op == Stats.OP:
        return rid, Stats()
    kind = _REQUESTS.get(op)
    if kind is None:
        return rid, Malformed(f"unknown operation {op!r}")
    if len(frames) < 3:
        return rid, Malformed(f"operation {op!r} without a body")
    try:
        return rid, kind(**_fields(frames[2], kind.FIELDS))
    except RequestRefused as exc:
        return rid, Malformed(str(exc))


def _fields(frame: bytes, fields: _Fields) -> dict[str, Any]:
    """A request body's fields, each checked (RequestRefused names the first bad one)."""
    try:
        value = load(frame)
    except LinkError as exc:
        raise RequestRefused(str(exc)) from None
    if not isinstance(value, dict):
        raise RequestRefused(f"request body is {type(value).__name__}, not an object")
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if name not in value:
            if name in _OPTIONAL:
                continue
            raise RequestRefused(f"request field {name!r} is missing")
        item = value[name]
        if kind is not None and not isinstance(item, kind):
            raise RequestRefused(f"request field {name!r} is {type(item).__name__}")
        if name in _FRAME_TEXT and item is not None:
            for text in item if name == "keys" else [item]:
                _check_text(name, text)
        out[name] = item
    if out.get("sig") is not None and not isinstance(out.get("ts"), int):
        raise RequestRefused("request field 'ts' must come with 'sig'")
    return out


def _check_text(name: str, item: object) -> None:
    """A string that will travel in a frame: UTF-8 encodable (no lone surrogate)."""
    if not isinstance(item, str):
        raise RequestRefused(f"request field {name!r} holds {type(item).__name__}")
    try:
        item.encode()
    except UnicodeEncodeError:
        raise RequestRefused(f"request field {name!r} is not UTF-8 encodable") from None


def decode_control(frames: list[bytes]) -> FrontMessage:
    """Hello, Ping or Resync from a front (LinkError, KeyError, TypeError or ValueError
    for one that does not decode)."""
    op = frames[0]
    if op == Ping.OP:
        return Ping()
    if op == Hello.OP:
        return Hello(int(load(frames[1])["front"]))
    if op == Resync.OP:
        fields = load(frames[1])
        members = tuple(MemberState.from_wire(item) for item in fields["members"])
        return Resync(int(fields["front"]), str(fields["incarnation"]), members)
    raise LinkError(f"unknown operation {op!r}")


def is_request(frames: list[bytes]) -> bool:
    return frames[0] in _REQUEST_OPS


_REQUEST_OPS = frozenset({Command.OP, Leave.OP, Trigger.OP, Join.OP, Query.OP, Stats.OP})


# -- shard -> front ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome:
    """The shard's incarnation; `replay`: it gave this front up for dead and forgot its
    members, which the front must replay even though the incarnation is the same."""

    OP: ClassVar[bytes] = b"W"
    shard: int
    incarnation: str
    replay: bool = False

    def encode(self) -> list[bytes]:
        fields: dict[str, Any] = {"shard": self.shard, "incarnation": self.incarnation}
        if self.replay:
            fields["replay"] = True
        return [self.OP, body(fields)]


@dataclass(frozen=True, slots=True)
class Pong:
    """A Ping answered; `redis_down` with several instances when the shard cannot reach
    Redis now (the front's /health says so)."""

    OP: ClassVar[bytes] = b"P"
    redis_down: bool = False

    def encode(self) -> list[bytes]:
        return [self.OP, REDIS_DOWN] if self.redis_down else [self.OP]


@dataclass(frozen=True, slots=True)
class Done:
    """The answer to request `rid`: `result` is already an encoded JSON body."""

    OP: ClassVar[bytes] = b"K"
    rid: bytes
    result: bytes

    def encode(self) -> list[bytes]:
        return [self.OP, self.rid, self.result]


@dataclass(frozen=True, slots=True)
class Reply:
    """`message` to one connection."""

    OP: ClassVar[bytes] = b"r"
    sid: str
    message: bytes

    def encode(self) -> list[bytes]:
        return [self.OP, self.sid.encode(), self.message]


@dataclass(frozen=True, slots=True)
class Joined:
    """`member` is now subscribed: index it, then send `message` (its success reply)."""

    OP: ClassVar[bytes] = b"j"
    member: MemberState
    message: bytes

    def encode(self) -> list[bytes]:
        return [self.OP, body(self.member.to_wire()), self.message]


@dataclass(frozen=True, slots=True)
class Left:
    """`sid` left channel `key`; `message`, if any, goes to it afterwards."""

    OP: ClassVar[bytes] = b"l"
    sid: str
    key: str
    message: bytes | None

    def encode(self) -> list[bytes]:
        return [self.OP, self.sid.encode(), self.key.encode(), self.message or NONE]


@dataclass(frozen=True, slots=True)
class Deliver:
    """An event for every local member of channel `key` but `exclude`; `mark` (several
    instances) names the trigger it came from (the front drops one it wrote already)."""

    OP: ClassVar[bytes] = b"d"
    key: str
    exclude: str | None
    message: bytes
    mark: str = ""

    def encode(self) -> list[bytes]:
        exclude = self.exclude.encode() if self.exclude else NONE
        if self.mark:
            return [self.OP, self.key.encode(), exclude, self.message, self.mark.encode()]
        return [self.OP, self.key.encode(), exclude, self.message]


@dataclass(frozen=True, slots=True)
class Terminate:
    """Close app `app`'s connections signed in as `user` (4009): terminate_connections
    asked on another instance (several instances)."""

    OP: ClassVar[bytes] = b"k"
    app: str
    user: str

    def encode(self) -> list[bytes]:
        return [self.OP, self.app.encode(), self.user.encode()]


ShardMessage = Welcome | Pong | Done | Reply | Joined | Left | Deliver | Terminate
BATCH = b"B"  # several messages in one multipart: [BATCH, [len, ...], frames...]


def batch(messages: list[list[bytes]]) -> list[bytes]:
    """Several encoded messages as one multipart message (delivered whole or not at all)."""
    if len(messages) == 1:
        return messages[0]
    sizes = body([len(m) for m in messages])
    return [BATCH, sizes, *(frame for m in messages for frame in m)]


def unbatch(frames: list[bytes]) -> Iterator[list[bytes]]:
    """The messages of a `batch` (LinkError, ValueError or TypeError for one whose sizes do
    not add up)."""
    sizes = load(frames[1])
    if not isinstance(sizes, list) or sum(sizes) != len(frames) - 2 or min(sizes, default=1) < 1:
        raise LinkError("batch sizes do not match its frames")
    start = 2
    for size in sizes:
        yield frames[start:start + size]
        start += size


def decode_shard(frames: list[bytes]) -> Iterator[ShardMessage]:
    """The messages of one multipart from a shard (LinkError for one that does not
    decode; the ones before it were yielded)."""
    op = frames[0]
    if op == Deliver.OP:  # the fan-out path first
        yield Deliver(_text(frames[1]), _text(frames[2]) if frames[2] else None, frames[3],
                      _text(frames[4]) if len(frames) > 4 else "")
    elif op == BATCH:
        for message in unbatch(frames):
            yield from decode_shard(message)
    elif op == Done.OP:
        yield Done(frames[1], frames[2])
    elif op == Reply.OP:
        yield Reply(_text(frames[1]), frames[2])
    elif op == Joined.OP:
        yield Joined(MemberState.from_wire(load(frames[1])), frames[2])
    elif op == Left.OP:
        yield Left(_text(frames[1]), _text(frames[2]), frames[3] or None)
    elif op == Pong.OP:
        yield Pong(frames[1:2] == [REDIS_DOWN])
    elif op == Terminate.OP:
        yield Terminate(_text(frames[1]), _text(frames[2]))
    elif op == Welcome.OP:
        fields = load(frames[1])
        yield Welcome(int(fields["shard"]), str(fields["incarnation"]),
                      bool(fields.get("replay")))
    else:
        raise LinkError(f"unknown operation {op!r}")


# -- shard <-> hooks ---------------------------------------------------------------------------
#
# Each shard has one DEALER (routing id `hooks_identity(index)`) to the hooks process's ROUTER:
# the transitions it decides go there (one message per loop turn), and its whole state when
# its recovery ends or when the hooks process asks for it (a restarted hooks process).


def hooks_identity(shard: int) -> bytes:
    return f"shard-{shard}".encode()


@dataclass(frozen=True, slots=True)
class Transitions:
    """What one loop turn of shard `shard` decided: (app, webhook event) pairs in order."""

    OP: ClassVar[bytes] = b"X"
    shard: int
    events: tuple[tuple[str, dict[str, Any]], ...]

    def encode(self) -> list[bytes]:
        return [self.OP, body({"shard": self.shard, "events": self.events})]


@dataclass(frozen=True, slots=True)
class HookState:
    """Every occupied channel of the apps with webhooks that shard `shard` owns, with the
    users present on its presence channels (None on the others): app -> channel -> users.
    `announce`: the shard restarted and replayed, so its state is the truth to announce
    the difference to; else the hooks process adopts it silently (it restarted)."""

    OP: ClassVar[bytes] = b"Z"
    shard: int
    announce: bool
    state: dict[str, dict[str, list[str] | None]]

    def encode(self) -> list[bytes]:
        return [self.OP, body({"shard": self.shard, "announce": self.announce,
                               "state": self.state})]


@dataclass(frozen=True, slots=True)
class WantState:
    """The hooks process (re)started and asks a shard for its HookState."""

    OP: ClassVar[bytes] = b"z"

    def encode(self) -> list[bytes]:
        return [self.OP]


def decode_hooks(frames: list[bytes]) -> Transitions | HookState:
    """A shard's message to the hooks process (LinkError, KeyError, TypeError or ValueError
    for one that does not decode)."""
    op = frames[0]
    fields = load(frames[1])
    if op == Transitions.OP:
        events = tuple((str(app), dict(event)) for app, event in fields["events"])
        return Transitions(int(fields["shard"]), events)
    if op == HookState.OP:
        state = fields["state"]
        if not isinstance(state, dict):
            raise LinkError("hook state is not an object")
        return HookState(int(fields["shard"]), bool(fields["announce"]), state)
    raise LinkError(f"unknown operation {op!r}")


__all__ = [
    "BATCH", "NONE", "Command", "Deliver", "Done", "FrontMessage", "Hello", "Join", "Joined",
    "HookState", "Leave", "Left", "Malformed", "NotEncodable", "Ping", "Pong", "Query",
    "Terminate",
    "Reply", "Request", "Resync", "ShardMessage", "Stats", "Transitions", "Trigger",
    "WantState", "Welcome", "batch", "body", "decode_control", "decode_hooks",
    "decode_request", "decode_shard", "front_identity", "hooks_identity", "is_request",
    "load",
]
