"""The shard process: ZeroMQ in, channel state machine, ZeroMQ out (ARCHITECTURE.md 2-3, 6).

A shard is the only owner of its channels. Fronts greet it (HELLO), learn its incarnation
(WELCOME) and replay their local members of its channels (RESYNC) before anything else of
theirs is applied; a restarted shard therefore comes back whole, and a restarted front's
former members leave. Until every configured front has replayed (or a grace period ends),
requests are held back so presence lists are complete before anyone joins.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import time
from collections.abc import Sequence
from typing import Any

import zmq

from pushy_shard import link
from pushy_shard.commands import CommandContext, Forward, Handler, load_registry, run_handler
from pushy_shard.core import metrics
from pushy_shard.core.channels import (
    Broadcast,
    ChannelTable,
    Effect,
    Joined,
    Left,
    MemberState,
    Reply,
)
from pushy_shard.core.config import Config, runtime_directory, shard_endpoint
from pushy_shard.core.metrics import Metrics
from pushy_shard.core.ratelimit import BreachLog
from pushy_shard.core.replay import ReplayCache
from pushy_shard.core.routing import shard_for
from pushy_shard.core.stopping import stop_plan
from pushy_shard.errors import (
    AddressInUse,
    CommandFailed,
    LinkError,
    RequestRefused,
    UnknownCommand,
)
from pushy_shard.reloading import reread
from pushy_shard.zmqio import ZmqChannel, tune

log = logging.getLogger(__name__)

_OP_LABELS = {link.COMMAND: (("op", "command"),), link.LEAVE: (("op", "leave"),),
              link.TRIGGER: (("op", "trigger"),)}
_OTHER_OP = (("op", "other"),)


class ShardWorker:
    """Applies fronts' requests to one ChannelTable, in arrival order."""

    def __init__(self, config: Config, index: int, registry: dict[str, Handler]) -> None:
        self.config = config
        self.index = index
        self.registry = registry
        self.table = ChannelTable(config.secret_key,
                                  max_presence_bytes=config.limits.max_presence_data,
                                  on_channel=self.channel_changed)
        self.table.on_breach = self.breach
        self.replay = ReplayCache()
        self._breach_log = BreachLog()
        self.incarnation = secrets.token_hex(8)
        self.peers: dict[bytes, int] = {}  # identity of a replayed front -> its index
        self.identities: dict[int, bytes] = {}  # front index -> its current identity
        self.recovering = True
        self.backlog: list[tuple[int, list[bytes]]] = []
        self.channel: ZmqChannel | None = None
        self.dropped_unsynced = 0
        self.outbox: dict[bytes, list[list[bytes]]] = {}
        self.last_seen: dict[bytes, float] = {}  # identity -> monotonic time of its last message
        self.forgotten: set[bytes] = set()  # identities given up for dead; they must replay
        self.metrics = Metrics()
        # counted as plain ints on the effect path, reported by `stats`
        self.published = 0  # Broadcast effects
        self.link_deliveries = 0  # DELIVER messages: one per Broadcast per front
        self.subscriptions = 0  # Joined effects

    def breach(self, limit: str, detail: str) -> None:
        """Count a breach of config.limits.`limit` and log it (one line per limit a second)."""
        self.metrics.inc("pushy_limit_breaches_total", (("limit", limit),))
        self.breach_line(limit, f"limit {limit}: {detail}")

    def replayed(self, request: dict[str, Any]) -> bool:
        """A trigger whose signature this shard already accepted inside its window (the
        front sends `sig` only with limits.replay_protection on)."""
        signature = request.get("sig")
        if not isinstance(signature, str):
            return False
        limit = self.config.limits.replay_cache_entries
        if not self.replay.seen(signature, int(request["ts"]), time.time(), limit):
            return False
        self.breach("replay", f"refused a replayed trigger on {request['key']!r}")
        return True

    # -- messages in ---------------------------------------------------------------------

    def on_message(self, frames: list[bytes]) -> None:
        try:
            identity, op, *rest = frames
            if op == link.HELLO:
                self.send(identity, [link.WELCOME, link.body(self.welcome())])
            elif op == link.RESYNC:
                self.resync(identity, link.load(rest[0]))
            elif op == link.STATS:  # even from an unsynced front: a scrape must not wait
                samples = metrics.to_wire(self.stats())
                self.send(identity, [link.DONE, rest[0], link.body({"samples": samples})])
            elif (front := self.peers.get(identity)) is None:
                self.dropped_unsynced += 1  # sent before its replay; the front re-sends it
                if identity in self.forgotten:
                    welcome = {**self.welcome(), "replay": True}
                    self.send(identity, [link.WELCOME, link.body(welcome)])
            elif op == link.PING:
                self.last_seen[identity] = time.monotonic()
                self.send(identity, [link.PONG])  # the front's /health needs an answer
            elif self.recovering:
                self.last_seen[identity] = time.monotonic()
                self.backlog.append((front, frames))
            else:
                self.last_seen[identity] = time.monotonic()
                self.dispatch(front, identity, op, rest)
        except (LinkError, ValueError, KeyError, TypeError) as exc:
            log.warning("shard %d: dropped malformed link message: %s", self.index, exc)

    def channel_changed(self, name: str, created: bool) -> None:
        if created:
            self.metrics.inc("pushy_channels_created_total")
            log.debug("shard %d: channel %s created", self.index, name)
        else:
            self.metrics.inc("pushy_channels_removed_total")
            log.debug("shard %d: channel %s removed", self.index, name)

    def stats(self) -> list[metrics.Sample]:
        """This shard's part of /metrics: its counters, and gauges counted now."""
        dropped = self.channel.dropped if self.channel is not None else 0
        return [
            *self.metrics,
            *metrics.channel_gauges(self.table.channels.values()),
            ("pushy_events_published_total", (), float(self.published)),
            ("pushy_link_deliveries_total", (), float(self.link_deliveries)),
            ("pushy_subscriptions_total", (), float(self.subscriptions)),
            ("pushy_link_send_failures_total", (("role", "shard"),), float(dropped)),
        ]

    def welcome(self) -> dict[str, Any]:
        return {"shard": self.index, "incarnation": self.incarnation}

    def resync(self, identity: bytes, body: dict[str, Any]) -> None:
        if body.get("incarnation") != self.incarnation:
            return  # a replay meant for a previous incarnation of this shard
        front = int(body["front"])
        members = [MemberState.from_wire(item) for item in body["members"]]
        previous = self.identities.get(front)
        if previous is not None and previous != identity:
            self.peers.pop(previous, None)
            log.info("shard %d: front %d restarted; its former members leave", self.index, front)
        self.peers[identity] = front
        self.identities[front] = identity
        self.last_seen[identity] = time.monotonic()
        rejoining = identity in self.forgotten
        self.forgotten.discard(identity)
        self.perform(self.table.restore_front(front, members, announce=rejoining))
        if self.recovering and len(self.identities) >= self.config.fronts:
            self.end_recovery()

    def expire_silent_fronts(self, now: float) -> None:
        """Forget fronts that stopped sending PINGs: their members leave (presence-quit).

        If such a front was only stalled, its next message gets WELCOME with `replay`, and
        its members come back with presence-add.
        """
        silence = self.config.timeouts.front_silence  # read live (SIGHUP)
        for identity, front in list(self.peers.items()):
            if now - self.last_seen.get(identity, now) > silence:
                log.warning("shard %d: front %d silent for %gs; its members leave",
                            self.index, front, silence)
                del self.peers[identity]
                self.identities.pop(front, None)
                self.last_seen.pop(identity, None)
                self.forgotten.add(identity)
                self.perform(self.table.restore_front(front, []))

    def end_recovery(self) -> None:
        if not self.recovering:
            return
        self.recovering = False
        backlog, self.backlog = self.backlog, []
        for front, frames in backlog:
            identity, op, *rest = frames
            if self.peers.get(identity) == front:
                self.dispatch(front, identity, op, rest)

    def dispatch(self, front: int, identity: bytes, op: bytes, rest: list[bytes]) -> None:
        """Apply one request and always answer it (DONE), so the front never waits it out.

        A request is decoded and checked, and every message it causes is encoded, before the
        table changes (ChannelTable, CommandContext.broadcast); what fails there changes
        nothing and is answered `{"error": payload}`: the front turns it into pushy:error /
        an HTTP error.
        """
        rid = rest[0]
        self.metrics.inc("pushy_shard_requests_total", _OP_LABELS.get(op, _OTHER_OP))
        try:
            done = link.body(self.apply(front, op, rest[1:]))
        except RequestRefused as exc:
            self.breach_line("refused", f"refused a request of front {front}: {exc}")
            done = link.body({"error": CommandFailed().payload()})
        except (ValueError, TypeError, RecursionError):  # a bug: nothing should fail this late
            log.exception("shard %d: request %r of front %d failed", self.index, op, front)
            done = link.body({"error": CommandFailed().payload()})
        self.send(identity, [link.DONE, rid, done])

    def apply(self, front: int, op: bytes, frames: list[bytes]) -> dict[str, Any]:
        """The result of one request; RequestRefused (nothing changed) for a malformed one."""
        if not frames:
            raise RequestRefused(f"operation {op!r} without a body")
        if op == link.COMMAND:
            return self.command(front, link.request(frames[0], link.COMMAND_FIELDS))
        if op == link.LEAVE:
            request = link.request(frames[0], link.LEAVE_FIELDS)
            self.perform(self.table.leave(request["sid"], request["keys"]))
            return {}
        if op == link.TRIGGER:
            request = link.request(frames[0], link.TRIGGER_FIELDS)
            if self.replayed(request):
                return {"replay": True}
            members, effects = self.table.trigger(
                request["key"], request["event"], request["data"], request["exclude"]
            )
            self.perform(effects)
            return {"members": members}
        raise RequestRefused(f"unknown operation {op!r}")

    def command(self, front: int, request: dict[str, Any]) -> dict[str, Any]:
        name = request["name"]
        handler = self.registry.get(name)
        if handler is None:  # fronts check names first; a mismatch of configs lands here
            return {"error": UnknownCommand().payload()}
        ctx = CommandContext(
            command=name,
            data=request["data"],
            channel=request["channel"],
            socket_id=request["sid"],
            front=front,
            table=self.table,
            owns=self.owns,
            now_ms=int(time.time() * 1000),
            address=request.get("address"),
        )
        self.table.max_presence_bytes = self.config.limits.max_presence_data  # read at use
        forwards = []
        local: list[Effect] = []
        for effect in run_handler(handler, ctx):
            if isinstance(effect, Forward):
                forwards.append([effect.key, effect.event, effect.data, effect.exclude])
            else:
                local.append(effect)
        self.perform(local)
        return {"forward": forwards} if forwards else {}

    def breach_line(self, name: str, detail: str) -> None:
        """A warning, at most one line per `name` a second (the rest are counted)."""
        line = self._breach_log.line(name, time.monotonic(), f"shard {self.index}: {detail}")
        if line is not None:
            log.warning("%s", line)

    def reload(self, path: str) -> None:
        """SIGHUP: live settings apply from the next message on (core/reload.py)."""
        config = reread(path, self.config)
        if config is not None:
            self.config = config
            self.table.secret = config.secret_key

    def owns(self, key: str) -> bool:
        return shard_for(key, self.config.workers) == self.index

    # -- effects out ---------------------------------------------------------------------

    def perform(self, effects: Sequence[Effect]) -> None:
        """Send the effects; every frame is encoded first, so one that fails sends nothing."""
        planned = [self._frames(effect) for effect in effects]
        for effect, messages in zip(effects, planned, strict=True):
            if isinstance(effect, Broadcast):
                self.published += 1
                self.link_deliveries += len(effect.fronts)
            elif isinstance(effect, Joined):
                self.subscriptions += 1
            for front, frames in messages:
                self.to_front(front, frames)

    @staticmethod
    def _frames(effect: Effect) -> list[tuple[int, list[bytes]]]:
        if isinstance(effect, Broadcast):
            exclude = link.opt_bytes(effect.exclude)
            key = effect.key.encode()
            return [(front, [link.DELIVER, key, exclude, effect.message])
                    for front in effect.fronts]
        if isinstance(effect, Reply):
            return [(effect.front, [link.REPLY, effect.sid.encode(), effect.message])]
        if isinstance(effect, Joined):
            member = link.body(effect.member.to_wire())
            return [(effect.front, [link.JOINED, member, effect.message])]
        if isinstance(effect, Left):
            frames = [link.LEFT, effect.sid.encode(), effect.key.encode()]
            return [(effect.front, frames + [effect.message or link.NONE])]
        return []

    def to_front(self, front: int, frames: list[bytes]) -> None:
        identity = self.identities.get(front)
        if identity is not None:
            self.send(identity, frames)

    def send(self, identity: bytes, frames: list[bytes]) -> None:
        """Queue a message for one front; `flush` sends each front's queue as one message."""
        queue = self.outbox.get(identity)
        if queue is None:
            queue = self.outbox[identity] = []
            if len(self.outbox) == 1:
                asyncio.get_running_loop().call_soon(self.flush)
        queue.append(frames)

    def flush(self) -> None:
        """One multipart message per front for everything handled this loop turn.

        ZeroMQ delivers a multipart message whole or not at all, so a request's effects and
        its DONE never arrive apart: a front whose shard dies mid-way either sees both or
        re-sends the request to the restarted shard (which then applies it once).
        """
        assert self.channel is not None
        outbox, self.outbox = self.outbox, {}
        for identity, messages in outbox.items():
            if len(messages) == 1:
                self.channel.send([identity, *messages[0]])
            else:
                sizes = link.body([len(m) for m in messages])
                self.channel.send([identity, link.BATCH, sizes, *(f for m in messages for f in m)])


async def serve(config: Config, index: int, config_path: str | None = None) -> None:
    """Run shard `index` until SIGTERM/SIGINT; SIGHUP re-reads `config_path`."""
    loop = asyncio.get_running_loop()
    worker = ShardWorker(config, index, load_registry(config.commands))
    directory = runtime_directory(config, os.environ)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    tune(sock)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    endpoint = shard_endpoint(config, index, directory)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUse(f"shard {index + 1}/{config.workers}: {endpoint}: already in use "
                           "by another process") from None
    worker.channel = ZmqChannel(loop, sock, worker.on_message, f"shard {index}")
    loop.call_later(config.timeouts.shard_recovery, worker.end_recovery)

    def sweep() -> None:
        worker.expire_silent_fronts(time.monotonic())
        loop.call_later(1.0, sweep)

    loop.call_later(1.0, sweep)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, worker.reload, config_path)
    log.info("shard %d/%d listening on %s", index + 1, config.workers, endpoint)
    await stop.wait()
    log.info("shard %d/%d stopping", index + 1, config.workers)
    # fronts stopped first (supervisor, supervisord priorities); what this shard still
    # holds for one that remains leaves now, with the reserve of the stop plan to go out
    if worker.outbox:
        worker.flush()
    plan = stop_plan(worker.config.shutdown_timeout)
    worker.channel.close(linger_ms=int((plan.total - plan.fronts) * 1000 / 2))
    context.term()
