"""Client commands: the registry, the context a handler sees, and the built-in two.

A command whose data names a channel runs in the shard that owns the channel (so it sees
that channel's state, one operation at a time); one that names no channel runs in the
front. Either way the handler gets a `CommandContext` and says what to do through it; the
process performs the effects afterwards. See README "Custom commands".
"""

from __future__ import annotations

import importlib
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pushy_shard.core import protocol
from pushy_shard.core.channels import Broadcast, Channel, ChannelStore, Effect, Reply
from pushy_shard.core.routing import channel_key
from pushy_shard.errors import (
    ClientError,
    CommandFailed,
    ConfigError,
    InvalidChannel,
    NoChannel,
    NotEncodable,
)

log = logging.getLogger(__name__)

Handler = Callable[["CommandContext"], None]


@dataclass(frozen=True, slots=True)
class Forward:
    """Broadcast on a channel another shard owns: the front routes it there as a trigger."""

    key: str
    event: str
    data: object
    exclude: str | None


@dataclass(frozen=True, slots=True)
class ShardSide:
    """What a handler running in a shard reaches through its context, never directly: the
    channel state of the shard (`channels`), which channel keys it owns, and the time."""

    channels: ChannelStore
    owns: Callable[[str], bool]
    now_ms: int


class CommandContext:
    """What a command handler receives: the command and its sender, and a narrow API.

    `data` is the command's data object, `channel` the channel it names (None when it names
    none), `address` the sender's IP address when the front knows it. Handlers answer
    through `reply`/`error`, reach channels through `broadcast`, read the command channel
    through `is_member`/`member_id`/`members`, and (in a shard) join or leave it through
    `subscribe`/`unsubscribe`. Effects are performed when the handler returns.
    """

    __slots__ = ("command", "data", "channel", "socket_id", "front", "address", "effects",
                 "_shard")

    def __init__(self, command: str, data: dict[str, Any], channel: str | None,
                 socket_id: str, front: int, *, shard: ShardSide | None = None,
                 address: str | None = None) -> None:
        self.command = command
        self.data = data
        self.channel = channel
        self.socket_id = socket_id
        self.front = front
        self.address = address  # the sender's address (behind trusted_proxies: the client's)
        self.effects: list[Effect | Forward] = []
        self._shard = shard  # None: the handler runs in a front

    def reply(self, event: str, data: object) -> None:
        """Send `{"event": event, "data": data}` to the connection that sent the command."""
        self.effects.append(Reply(self.front, self.socket_id, protocol.event(event, data)))

    def error(self, message: str, code: str) -> None:
        """Send `pushy:error` to the sender."""
        self.reply(protocol.ERROR, {"message": message, "code": code})

    def broadcast(
        self, channel: str, event: str, data: object, *, exclude_sender: bool = False
    ) -> None:
        """Send `{"event", "channel", "data"}` to every member of `channel`, wherever it lives.

        Checked here, while the handler runs, so a bad broadcast changes nothing: a channel
        name that is not a string or holds a lone surrogate raises InvalidChannel (301), an
        event that is not a string or data JSON cannot carry raise NotEncodable (500).
        """
        if not isinstance(channel, str) or protocol.channel_problem(
                channel, len(channel), None) is not None:
            raise InvalidChannel()
        if not isinstance(event, str):
            raise NotEncodable(f"event must be a string, not {type(event).__name__}")
        key = channel_key(channel)
        exclude = self.socket_id if exclude_sender else None
        shard = self._shard
        if shard is not None and shard.owns(key):
            chan = shard.channels.get(key)
            # encoded even for an empty channel: a handler's bad data fails every time
            message = protocol.event(event, data, chan.display if chan else channel)
            if chan is not None:
                self.effects.append(Broadcast(key, chan.fronts(), message, exclude))
            return
        # another shard's channel: the front sends it there in a link body later, when no
        # handler is left to blame; encode it now so a failure is this handler's
        protocol.dumps([key, event, data])
        self.effects.append(Forward(key, event, data, exclude))

    def is_member(self) -> bool:
        """Whether the sender is subscribed to the command's channel."""
        chan = self._channel()
        return chan is not None and self.socket_id in chan.members

    def member_id(self) -> str | None:
        """The sender's memberId in the command's channel, or None if it is not a member."""
        chan = self._channel()
        member = chan.members.get(self.socket_id) if chan is not None else None
        return member.state.member_id if member is not None else None

    def members(self) -> list[dict[str, Any]]:
        """The command channel's presence records (presence channels) or `{"memberId": ...}`."""
        chan = self._channel()
        if chan is None:
            return []
        if chan.presence:
            return chan.presence_list()
        return [{"memberId": m.state.member_id} for m in chan.members.values()]

    def subscribe(self) -> None:
        """Subscribe the sender to the command's channel, as the `subscribe` command does
        (PROTOCOL.md 3.1: token, presence data, its replies). In a shard only."""
        shard, channel = self._in_shard()
        state = shard.channels.for_key(channel_key(channel))
        self.effects.extend(state.subscribe(
            front=self.front, sid=self.socket_id, channel=channel, request=self.data,
            now_ms=shard.now_ms, new_member_id=new_member_id))

    def unsubscribe(self) -> None:
        """Unsubscribe the sender from the command's channel, as `unsubscribe` does
        (PROTOCOL.md 3.2; ChannelNotFound, NotSubscribed). In a shard only."""
        shard, channel = self._in_shard()
        state = shard.channels.for_key(channel_key(channel))
        self.effects.extend(state.unsubscribe(front=self.front, sid=self.socket_id,
                                              channel=channel))

    def _in_shard(self) -> tuple[ShardSide, str]:
        if self.channel is None or self._shard is None:
            raise NoChannel()
        return self._shard, self.channel

    def _channel(self) -> Channel | None:
        if self._shard is None or self.channel is None:
            return None
        return self._shard.channels.get(channel_key(self.channel))


def new_member_id() -> str:
    """8 lowercase hex characters (PROTOCOL.md 3.1); uniqueness is the table's job."""
    return secrets.token_hex(4)


# -- built-ins -------------------------------------------------------------------------------


def subscribe(ctx: CommandContext) -> None:
    """PROTOCOL.md 3.1."""
    ctx.subscribe()


def unsubscribe(ctx: CommandContext) -> None:
    """PROTOCOL.md 3.2."""
    ctx.unsubscribe()


BUILTINS: Mapping[str, Handler] = {"subscribe": subscribe, "unsubscribe": unsubscribe}


def load_registry(commands: Mapping[str, str]) -> dict[str, Handler]:
    """Built-ins plus config.json's `commands` ("name": "module:callable"); names lower-case.

    Raises ConfigError naming the command when its target cannot be imported or called.
    """
    registry: dict[str, Handler] = dict(BUILTINS)
    for name, target in commands.items():
        module_name, _, attr = target.partition(":")
        try:
            handler = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"commands.{name}", f"cannot load {target!r}: {exc}") from exc
        if not callable(handler):
            raise ConfigError(f"commands.{name}", f"{target!r} is not callable")
        registry[name.lower()] = handler
    return registry


def run_handler(handler: Handler, ctx: CommandContext) -> list[Effect | Forward]:
    """Run one handler; whatever it raises becomes a `pushy:error` to the sender only."""
    try:
        handler(ctx)
    except ClientError as exc:
        ctx.effects = [Reply(ctx.front, ctx.socket_id, protocol.error_event(exc.payload()))]
    except Exception:
        log.exception("command %r failed", ctx.command)
        failed = CommandFailed().payload()
        ctx.effects = [Reply(ctx.front, ctx.socket_id, protocol.error_event(failed))]
    return ctx.effects
