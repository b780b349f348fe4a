"""The Pushy protocol (PROTOCOL.md) as a client-protocol adapter on the front.

It greets a connection (pushy:connect), parses and admits each client message (rate,
size, channel name, channel count: core/admission.py), runs a command that names no channel
here and sends one that names a channel to the shard that owns it, and answers errors as
`pushy:error`. The trigger API's verified triggers go to their shard through it as well.
Everything below it (connections, transports, the channel index, fan-out) is the
protocol-blind layer of front/front.py and front/fanout.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pushy_shard.commands import CommandContext, Forward, Handler, run_handler
from pushy_shard.core import link, protocol
from pushy_shard.core.admission import Budget
from pushy_shard.core.channels import Reply
from pushy_shard.core.protocol import ClientCommand
from pushy_shard.core.routing import channel_key, shard_for
from pushy_shard.core.trigger import Trigger
from pushy_shard.errors import (
    STOPPING,
    BogusMessage,
    ChannelNameRefused,
    ClientError,
    Close,
    InvalidBody,
    InvalidTriggerChannel,
    LinkUnavailable,
    MessageTooLarge,
    NotEncodable,
    ShardUnavailable,
    TooManyChannels,
    TooManyCommands,
    TriggerFailed,
    TriggerRedisUnavailable,
    TriggerReplayed,
    TriggerUnavailable,
    UnknownCommand,
)
from pushy_shard.front.fanout import Connection, transport_name
from pushy_shard.front.front import Front, ignore_result, new_socket_id, shard_error

log = logging.getLogger(__name__)


class Pushy:
    """The Pushy protocol on `front`, with the command `registry` (built-ins and config's)."""

    name = "pushy"
    open_first = False  # SockJS refuses a session with its close frame alone

    def __init__(self, front: Front, registry: dict[str, Handler]) -> None:
        self.front = front
        self.registry = registry

    @staticmethod
    def new_socket_id() -> str:
        return new_socket_id()  # a UUID (PROTOCOL.md 2)

    def greet(self, conn: Connection) -> None:
        """pushy:connect (PROTOCOL.md 2), right after the transport's open frame."""
        connect = protocol.event(protocol.CONNECT, {"socketId": conn.sid,
                                                    "protocol": conn.transport})
        self.front.hub.send(conn, connect)

    def admit(self, conn: Connection) -> Close | None:
        return None  # nothing beyond the front's own admission

    def activity(self, conn: Connection) -> None:
        pass  # the Pushy protocol has no activity timeout (SockJS keeps sessions alive)

    def closed(self, conn: Connection) -> None:
        pass

    def refusal(self, conn: Connection, why: Close) -> Close:
        return why  # the close says it: 1013 Too many connections, 1001 while stopping

    def goodbye(self, conn: Connection) -> Close:
        return STOPPING  # c[3000,"Server shutting down, please reconnect"], then 1001

    def labels(self, conn: Connection) -> tuple[tuple[str, str], ...]:
        return (("transport", transport_name(conn)), ("protocol", "pushy"))

    # -- client messages -----------------------------------------------------------------------

    def message(self, conn: Connection, text: str) -> None:
        """One Pushy message from a client (PROTOCOL.md 2-3): admitted, then run here or
        sent to its channel's shard. A refused one gets its error event; nothing else
        changes."""
        budget = self.front.received(conn, text)
        if budget is None:
            return
        try:
            admitted = self._admit(conn, budget, text)
        except ClientError as exc:
            self._error(conn, exc)
            return
        if admitted is not None:
            self._run(conn, budget, *admitted)

    def _admit(self, conn: Connection, budget: Budget, text: str
               ) -> tuple[ClientCommand, Handler] | None:
        """The command and its handler, within config.limits: over the rate the message is
        dropped unread (429); too large (413), a bad channel name (301), an unknown
        command (200) or a subscribe past the channel limit (302) raise their ClientError;
        None for a message the protocol ignores."""
        front = self.front
        limits = front.config.limits
        if not budget.message(time.monotonic(), limits):
            front.breach("commands_per_second", f"dropped a message of {front.who(conn)}")
            raise TooManyCommands()
        try:
            command = protocol.parse_client_message(
                text, max_bytes=limits.max_message_bytes,
                max_channel_length=limits.max_channel_length,
                channel_pattern=limits.channel_pattern)
        except MessageTooLarge:
            front.breach("message_bytes", f"refused a message of {front.who(conn)}")
            raise
        except ChannelNameRefused:
            front.breach("channel_name", f"refused a channel name of {front.who(conn)}")
            raise
        if command is None:
            return None
        handler = self.registry.get(command.name)
        if handler is None:
            raise UnknownCommand()
        if self._subscribing(conn, command) and not budget.may_subscribe(
                len(conn.channels), limits):
            front.breach("channels_per_connection", f"refused a subscribe of {front.who(conn)}")
            raise TooManyChannels()
        return command, handler

    @staticmethod
    def _subscribing(conn: Connection, command: ClientCommand) -> bool:
        """A subscribe to a channel the connection is not in: it counts toward its limit."""
        return (command.name == "subscribe" and command.channel is not None
                and channel_key(command.channel) not in conn.channels)

    def _run(self, conn: Connection, budget: Budget, command: ClientCommand,
             handler: Handler) -> None:
        front = self.front
        if command.channel is None:  # runs here
            ctx = CommandContext(command.name, command.data, None, conn.sid, front.index,
                                 address=budget.address)
            self._perform(run_handler(handler, ctx))
            return
        request = link.Command(conn.sid, command.name, command.data, command.channel,
                               budget.address)
        try:
            future = front.request(channel_key(command.channel), request,
                                   front.config.timeouts.command)
        except NotEncodable:  # read, but too deeply nested to write to the link
            self._error(conn, BogusMessage())
            return
        if self._subscribing(conn, command):
            budget.subscribing += 1
            future.add_done_callback(lambda _: _subscribed(budget))
        future.add_done_callback(lambda f: self._command_done(conn, f))

    def _command_done(self, conn: Connection, future: asyncio.Future[Any]) -> None:
        if future.exception() is not None:
            if not conn.closed:
                self._error(conn, ShardUnavailable())
            return
        result = future.result()
        error = shard_error(result)
        if error is not None:  # the shard refused it and changed nothing
            if not conn.closed:
                self.front.hub.send(conn, protocol.error_event(error))
            return
        for key, event, data, exclude in result.get("forward", ()):
            self._forward(Forward(key, event, data, exclude))

    def _error(self, conn: Connection, exc: ClientError) -> None:
        self.front.hub.send(conn, protocol.error_event(exc.payload()))

    def _perform(self, effects: list[Any]) -> None:
        """A front handler's effects: replies here, broadcasts to their channel's shard."""
        for effect in effects:
            if isinstance(effect, Reply):
                self.front.hub.reply(effect.sid, effect.message)
            elif isinstance(effect, Forward):
                self._forward(effect)

    def _forward(self, forward: Forward) -> None:
        """A handler's broadcast to a channel of another shard travels as a trigger."""
        trigger = link.Trigger(forward.key, forward.event, forward.data, forward.exclude)
        future = self.front.request(forward.key, trigger, self.front.config.timeouts.command)
        future.add_done_callback(ignore_result)

    # -- triggers (PROTOCOL.md 4) --------------------------------------------------------------

    def check_trigger_channel(self, channel: str) -> None:
        """The channel-name rules of subscribes, for a trigger: InvalidTriggerChannel (400)."""
        limits = self.front.config.limits
        problem = protocol.channel_problem(channel, limits.max_channel_length,
                                           limits.channel_pattern)
        if problem is not None:
            self.front.breach("channel_name", f"refused a trigger: channel name {problem}")
            raise InvalidTriggerChannel(f"Invalid channel name: {problem}")

    async def trigger(self, trigger: Trigger) -> bool:
        """Hand a verified trigger to its shard; True when the channel had members (201).

        With `limits.replay_protection` the signature goes along: the owning shard refuses
        one it already accepted inside the timestamp window (TriggerReplayed, 409)."""
        self.check_trigger_channel(trigger.channel)
        front = self.front
        key = channel_key(trigger.channel)
        signed = front.config.limits.replay_protection and bool(trigger.signature)
        request = link.Trigger(key, trigger.event, trigger.data, trigger.socket_id,
                               trigger.signature if signed else None,
                               trigger.timestamp if signed else None)
        try:
            future = front.request(key, request, front.config.timeouts.trigger)
        except NotEncodable as exc:  # valid JSON, but nested too deeply to pass on
            raise InvalidBody("Invalid request body: nested too deeply") from exc
        if log.isEnabledFor(logging.DEBUG):  # tests wait for it: a trigger now in flight
            log.debug("trigger to shard %d in flight", shard_for(key, front.shards))
        try:
            result = await future
        except LinkUnavailable as exc:
            raise TriggerUnavailable() from exc
        if result.get("replay"):
            raise TriggerReplayed()
        if result.get("unavailable"):
            raise TriggerRedisUnavailable()
        if shard_error(result) is not None:
            raise TriggerFailed()
        return bool(result.get("members"))


def _subscribed(budget: Budget) -> None:
    budget.subscribing -= 1  # joined (now in conn.channels) or refused
