"""The front's logic between its connections and the shards: commands, link messages, triggers.

Transport code hands each client message to `Front.client_message`; link messages from the
shards arrive in `Front.link_message`. Nothing here awaits on the fan-out path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from pushy_shard import link
from pushy_shard.commands import CommandContext, Forward, Handler, run_handler
from pushy_shard.core import protocol
from pushy_shard.core.channels import MemberState, Reply
from pushy_shard.core.config import Config
from pushy_shard.core.metrics import Metrics
from pushy_shard.core.routing import channel_key, shard_for
from pushy_shard.core.trigger import Trigger
from pushy_shard.errors import (
    ClientError,
    InvalidChannel,
    LinkError,
    ShardUnavailable,
    TriggerUnavailable,
    UnknownCommand,
)
from pushy_shard.front.hub import Connection, Hub
from pushy_shard.front.links import LinkUnavailable, ShardLinks

log = logging.getLogger(__name__)

COMMAND_TIMEOUT = 10.0
TRIGGER_TIMEOUT = 5.0


def new_socket_id() -> str:
    """Unguessable and unique across processes: a random (version 4) UUID."""
    return str(uuid.uuid4())


class Front:
    def __init__(self, config: Config, index: int, registry: dict[str, Handler]) -> None:
        self.config = config
        self.index = index
        self.registry = registry
        self.shards = config.workers
        self.hub = Hub(config.workers)
        self.links: ShardLinks | None = None
        self.metrics = Metrics()

    def attach(self, links: ShardLinks) -> None:
        self.links = links

    # -- connections ---------------------------------------------------------------------

    def opened(self, conn: Connection) -> None:
        """Register `conn` and greet it with pushy:connect (PROTOCOL.md 2)."""
        self.hub.add(conn)
        connect = {"socketId": conn.sid, "protocol": conn.transport}
        conn.send(protocol.event(protocol.CONNECT, connect))

    def closed(self, conn: Connection) -> None:
        """`conn` is gone: it leaves every channel it was in (PROTOCOL.md 3.4)."""
        for shard, keys in self.hub.remove(conn).items():
            self._leave(shard, conn.sid, keys)

    def client_message(self, conn: Connection, text: str) -> None:
        """One Pushy message from a client (PROTOCOL.md 2-3)."""
        try:
            command = protocol.parse_client_message(text)
            if command is None:
                return
            handler = self.registry.get(command.name)
            if handler is None:
                raise UnknownCommand()
        except ClientError as exc:
            conn.send(protocol.error_event(exc.payload()))
            return
        if command.channel is None:
            ctx = CommandContext(command.name, command.data, None, conn.sid, self.index)
            self._perform_local(run_handler(handler, ctx))
            return
        shard = shard_for(channel_key(command.channel), self.shards)
        request = {
            "sid": conn.sid,
            "name": command.name,
            "data": command.data,
            "channel": command.channel,
        }
        future = self._request(shard, link.COMMAND, request, COMMAND_TIMEOUT)
        future.add_done_callback(lambda f: self._command_done(conn, f))

    def _command_done(self, conn: Connection, future: asyncio.Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            if not conn.closed:
                conn.send(protocol.error_event(ShardUnavailable().payload()))
            return
        for key, event, data, exclude in future.result().get("forward", ()):
            self._forward(Forward(key, event, data, exclude))

    def _perform_local(self, effects: list[Any]) -> None:
        for effect in effects:
            if isinstance(effect, Reply):
                self.hub.reply(effect.sid, effect.message)
            elif isinstance(effect, Forward):
                self._forward(effect)

    def _forward(self, forward: Forward) -> None:
        """A handler's broadcast to a channel of another shard travels as a trigger."""
        body = {"key": forward.key, "event": forward.event, "data": forward.data,
                "exclude": forward.exclude}
        future = self._request(shard_for(forward.key, self.shards), link.TRIGGER, body,
                               COMMAND_TIMEOUT)
        future.add_done_callback(_ignore_result)

    def _leave(self, shard: int, sid: str, keys: list[str]) -> None:
        future = self._request(shard, link.LEAVE, {"sid": sid, "keys": keys}, COMMAND_TIMEOUT)
        future.add_done_callback(lambda _: self.hub.leave_confirmed(sid, keys))

    def _request(
        self, shard: int, op: bytes, body: dict[str, Any], timeout: float
    ) -> asyncio.Future[Any]:
        assert self.links is not None
        future = self.links.request(shard, op, link.body(body), timeout=timeout)
        if op == link.LEAVE:
            future.add_done_callback(_ignore_result)
        return future

    # -- shards --------------------------------------------------------------------------

    def link_message(self, frames: list[bytes]) -> None:
        """REPLY / JOINED / LEFT / DELIVER from a shard."""
        op = frames[0]
        if op == link.DELIVER:
            self.hub.deliver(link.text(frames[1]), link.opt_text(frames[2]), frames[3])
        elif op == link.REPLY:
            self.hub.reply(link.text(frames[1]), frames[2])
        elif op == link.JOINED:
            state = MemberState.from_wire(link.load(frames[1]))
            if not self.hub.joined(state, frames[2]):  # closed while subscribing
                self.hub.leaving[(state.key, state.sid)] = state
                self._leave(shard_for(state.key, self.shards), state.sid, [state.key])
        elif op == link.LEFT:
            self.hub.left(link.text(frames[1]), link.text(frames[2]), frames[3] or None)
        else:
            raise LinkError(f"unknown operation {op!r}")

    # -- triggers ------------------------------------------------------------------------

    async def trigger(self, trigger: Trigger) -> bool:
        """Hand a verified trigger to its shard; True when the channel had members (201)."""
        if len(trigger.channel) > protocol.MAX_CHANNEL_LENGTH:
            raise InvalidChannel()
        key = channel_key(trigger.channel)
        body = {"key": key, "event": trigger.event, "data": trigger.data,
                "exclude": trigger.socket_id}
        try:
            result = await self._request(shard_for(key, self.shards), link.TRIGGER, body,
                                         TRIGGER_TIMEOUT)
        except LinkUnavailable as exc:
            raise TriggerUnavailable() from exc
        return bool(result.get("members"))

    def sweep(self) -> None:
        """Once a second: tell every shard we are alive, expire requests none answered."""
        if self.links is not None:
            self.links.tick(time.monotonic())


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("request failed: %s", future.exception())
