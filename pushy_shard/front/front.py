"""The front's logic between its connections and the shards: commands, link messages, triggers.

Transport code hands each client message to `Front.client_message`; link messages from the
shards arrive in `Front.link_message`. Nothing here awaits on the fan-out path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from pushy_shard import link
from pushy_shard.commands import CommandContext, Forward, Handler, run_handler
from pushy_shard.core import protocol
from pushy_shard.core.channels import MemberState, Reply
from pushy_shard.core.config import Config
from pushy_shard.core.metrics import Metrics
from pushy_shard.core.origins import client_address
from pushy_shard.core.ratelimit import BreachLog, TokenBucket
from pushy_shard.core.routing import channel_key, shard_for
from pushy_shard.core.trigger import Trigger
from pushy_shard.errors import (
    STOPPING,
    TOO_MANY_CONNECTIONS,
    BogusMessage,
    ChannelNameRefused,
    ClientError,
    Close,
    CommandFailed,
    InvalidBody,
    InvalidTriggerChannel,
    LinkError,
    MessageTooLarge,
    NotEncodable,
    ShardUnavailable,
    TooManyChannels,
    TooManyCommands,
    TriggerFailed,
    TriggerReplayed,
    TriggerUnavailable,
    UnknownCommand,
)
from pushy_shard.front.hub import Connection, Hub, transport_name
from pushy_shard.front.links import LinkUnavailable, ShardLinks

log = logging.getLogger(__name__)

_FROM_CLIENT = (("source", "client"),)


BREACHES = "pushy_limit_breaches_total"


def new_socket_id() -> str:
    """Unguessable and unique across processes: a random (version 4) UUID."""
    return str(uuid.uuid4())


class PeerRequest(Protocol):
    """What `request_address` reads of an HTTP request (aiohttp's `web.Request` fits)."""

    @property
    def remote(self) -> str | None: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


class Client:
    """The front's limits state of one open connection: its command bucket, the subscribes
    it has in flight (they count toward its channels) and its address."""

    __slots__ = ("bucket", "subscribing", "address")

    def __init__(self, bucket: TokenBucket, address: str | None) -> None:
        self.bucket = bucket
        self.subscribing = 0
        self.address = address


class Front:
    def __init__(self, config: Config, index: int, registry: dict[str, Handler]) -> None:
        self.config = config  # may be replaced while running (reload): read limits at use
        self.index = index
        self.registry = registry
        self.shards = config.workers
        self.hub = Hub(config.workers)
        self.links: ShardLinks | None = None
        self.metrics = Metrics()
        self.stopping = False  # set by a graceful stop: no new connections from then on
        self.clients: dict[str, Client] = {}
        self._breach_log = BreachLog()

    def attach(self, links: ShardLinks) -> None:
        self.links = links

    # -- limits --------------------------------------------------------------------------

    def breach(self, limit: str, detail: str) -> None:
        """Count a breach of config.limits.`limit` and log it (one line per limit a second)."""
        self.metrics.inc(BREACHES, (("limit", limit),))
        line = self._breach_log.line(limit, time.monotonic(),
                                     f"front {self.index}: limit {limit}: {detail}")
        if line is not None:
            log.warning("%s", line)

    def request_address(self, request: PeerRequest) -> str:
        """The client's address: the peer, or X-Forwarded-For behind `trusted_proxies`."""
        return client_address(request.remote, request.headers.get("X-Forwarded-For"),
                              self.config.trusted_proxies)

    def _who(self, conn: Connection) -> str:
        client = self.clients.get(conn.sid)
        address = client.address if client is not None else None
        return f"{conn.sid} ({address})" if address else conn.sid

    # -- connections ---------------------------------------------------------------------

    def admit(self, address: str | None = None) -> Close | None:
        """May one more connection open here? None: yes. Otherwise the close the transport
        ends it with instead of calling `opened`: errors.STOPPING once the front
        is stopping, errors.TOO_MANY_CONNECTIONS (counted, logged) past
        `limits.max_connections_per_front`."""
        if self.stopping:
            return STOPPING
        limit = self.config.limits.max_connections_per_front
        if len(self.hub) < limit:
            return None
        self.breach("connections_per_front", f"refused a connection from {address or '?'}: "
                    f"{limit} open")
        return TOO_MANY_CONNECTIONS

    def opened(self, conn: Connection, address: str | None = None) -> None:
        """Register `conn` and greet it with pushy:connect (PROTOCOL.md 2)."""
        self.hub.add(conn)
        self.metrics.inc("pushy_connections_opened_total", (("transport", transport_name(conn)),))
        bucket = TokenBucket(self.config.limits.commands_burst, time.monotonic())
        self.clients[conn.sid] = Client(bucket, address)
        connect = protocol.event(protocol.CONNECT, {"socketId": conn.sid,
                                                    "protocol": conn.transport})
        self.hub.count_reply(connect)
        conn.send(connect)

    def closed(self, conn: Connection) -> None:
        """`conn` is gone: it leaves every channel it was in (PROTOCOL.md 3.4). Transports
        may call it more than once (a stopping front drops everyone first)."""
        if self.hub.connections.get(conn.sid) is not conn:
            return
        self.clients.pop(conn.sid, None)
        if conn.slow:
            self.metrics.inc("pushy_slow_consumer_disconnects_total",
                             (("transport", transport_name(conn)),))
        for shard, keys in self.hub.remove(conn).items():
            self._leave(shard, conn.sid, keys)

    def slow_consumer(self, conn: Connection, buffered: int) -> None:
        """`conn` passed `limits.slow_consumer_bytes` of unsent output; its transport closes
        it with errors.SLOW_CONSUMER. Count and log it."""
        self.breach("slow_consumer", f"closing {self._who(conn)}: {buffered} bytes unsent")

    def client_message(self, conn: Connection, text: str) -> None:
        """One Pushy message from a client (PROTOCOL.md 2-3), within config.limits: over
        the command rate it is dropped unread; too large, a bad channel name or a subscribe
        past the channel limit gets its error event. Nothing else changes."""
        metrics = self.metrics
        metrics.inc("pushy_messages_in_total")
        # surrogatepass: a client may send lone surrogates (JSON escapes); counting must not fail
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        metrics.inc("pushy_bytes_in_total", _FROM_CLIENT, size)
        limits = self.config.limits
        client = self.clients.get(conn.sid)
        if client is None or conn.closed:  # already dropped (closing, or the front stopping)
            return
        try:
            if not client.bucket.take(time.monotonic(), limits.commands_per_second,
                                      limits.commands_burst):
                self.breach("commands_per_second", f"dropped a message of {self._who(conn)}")
                raise TooManyCommands()
            try:
                command = protocol.parse_client_message(
                    text, max_bytes=limits.max_message_bytes,
                    max_channel_length=limits.max_channel_length,
                    channel_pattern=limits.channel_pattern)
            except MessageTooLarge:
                self.breach("message_bytes", f"refused a message of {self._who(conn)}")
                raise
            except ChannelNameRefused:
                self.breach("channel_name", f"refused a channel name of {self._who(conn)}")
                raise
            if command is None:
                return
            handler = self.registry.get(command.name)
            if handler is None:
                raise UnknownCommand()
            subscribing = command.name == "subscribe" and command.channel is not None
            if subscribing and channel_key(command.channel or "") not in conn.channels:
                if len(conn.channels) + client.subscribing >= limits.max_channels_per_connection:
                    self.breach("channels_per_connection",
                                f"refused a subscribe of {self._who(conn)}")
                    raise TooManyChannels()
            else:
                subscribing = False
        except ClientError as exc:
            self._send(conn, protocol.error_event(exc.payload()))
            return
        address = client.address
        if command.channel is None:
            ctx = CommandContext(command.name, command.data, None, conn.sid, self.index,
                                 address=address)
            self._perform_local(run_handler(handler, ctx))
            return
        shard = shard_for(channel_key(command.channel), self.shards)
        request = {
            "sid": conn.sid,
            "name": command.name,
            "data": command.data,
            "channel": command.channel,
            "address": address,
        }
        try:
            future = self._request(shard, link.COMMAND, request,
                                   self.config.timeouts.command)
        except NotEncodable:  # read, but too deeply nested to write to the link
            self._send(conn, protocol.error_event(BogusMessage().payload()))
            return
        if subscribing:
            client.subscribing += 1
            future.add_done_callback(lambda f: self._subscribe_done(client))
        future.add_done_callback(lambda f: self._command_done(conn, f))

    @staticmethod
    def _subscribe_done(client: Client) -> None:
        client.subscribing -= 1  # joined (now in conn.channels) or refused

    def _command_done(self, conn: Connection, future: asyncio.Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            if not conn.closed:
                self._send(conn, protocol.error_event(ShardUnavailable().payload()))
            return
        result = future.result()
        error = shard_error(result)
        if error is not None:  # the shard refused it and changed nothing
            if not conn.closed:
                self._send(conn, protocol.error_event(error))
            return
        for key, event, data, exclude in result.get("forward", ()):
            self._forward(Forward(key, event, data, exclude))

    def _send(self, conn: Connection, message: bytes) -> None:
        """A message to one connection, outside the hub's own replies: counted as those."""
        self.hub.count_reply(message)
        conn.send(message)

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
                               self.config.timeouts.command)
        future.add_done_callback(_ignore_result)

    def _leave(self, shard: int, sid: str, keys: list[str]) -> None:
        future = self._request(shard, link.LEAVE, {"sid": sid, "keys": keys},
                               self.config.timeouts.command)
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

    def check_trigger_channel(self, channel: str) -> None:
        """The channel-name rules of subscribes, for a trigger: InvalidTriggerChannel (400)."""
        limits = self.config.limits
        problem = protocol.channel_problem(channel, limits.max_channel_length,
                                           limits.channel_pattern)
        if problem is not None:
            self.breach("channel_name", f"refused a trigger: channel name {problem}")
            raise InvalidTriggerChannel(f"Invalid channel name: {problem}")

    async def trigger(self, trigger: Trigger) -> bool:
        """Hand a verified trigger to its shard; True when the channel had members (201).

        With `limits.replay_protection` the signature goes along: the owning shard refuses
        one it already accepted inside the timestamp window (TriggerReplayed, 409)."""
        self.check_trigger_channel(trigger.channel)
        key = channel_key(trigger.channel)
        body = {"key": key, "event": trigger.event, "data": trigger.data,
                "exclude": trigger.socket_id}
        if self.config.limits.replay_protection and trigger.signature:
            body["sig"] = trigger.signature
            body["ts"] = trigger.timestamp
        shard = shard_for(key, self.shards)
        try:
            future = self._request(shard, link.TRIGGER, body, self.config.timeouts.trigger)
        except NotEncodable as exc:  # valid JSON, but nested too deeply to pass on
            raise InvalidBody("Invalid request body: nested too deeply") from exc
        if log.isEnabledFor(logging.DEBUG):  # tests wait for it: a trigger now in flight
            log.debug("trigger to shard %d in flight", shard)
        try:
            result = await future
        except LinkUnavailable as exc:
            raise TriggerUnavailable() from exc
        if result.get("replay"):
            raise TriggerReplayed()
        if shard_error(result) is not None:
            raise TriggerFailed()
        return bool(result.get("members"))

    def sweep(self) -> None:
        """Once a second: tell every shard we are alive, expire requests none answered."""
        if self.links is not None:
            self.links.tick(time.monotonic())


def shard_error(result: Any) -> dict[str, str] | None:
    """The `{"message", "code"}` of a DONE that says the shard refused a request, or None."""
    error = result.get("error") if isinstance(result, dict) else None
    if error is None:
        return None
    if isinstance(error, dict) and all(isinstance(error.get(k), str) for k in ("message", "code")):
        return {"message": error["message"], "code": error["code"]}
    return CommandFailed().payload()


def _ignore_result(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.debug("request failed: %s", future.exception())
