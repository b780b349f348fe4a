"""The shard process: ZeroMQ in, the shard (engine.py), ZeroMQ out (ARCHITECTURE.md 2-3, 6).

A thin pump: every message from a front goes to `Shard.receive` with the time; at the end of
each loop turn everything it produced leaves, one multipart message per front, and the
webhook transitions it decided go to the hooks process; a timer runs its once-a-second
sweep and ends its recovery grace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import zmq

from pushy_shard.commands import load_registry
from pushy_shard.core import link
from pushy_shard.core.config import Config, link_endpoints, runtime_directory, shard_endpoint
from pushy_shard.core.stopping import stop_plan
from pushy_shard.reloading import reread
from pushy_shard.shard.engine import Shard
from pushy_shard.shard.redis_link import RedisLink
from pushy_shard.zmqio import ZmqChannel, bind_router, tune

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0


class ShardWorker:
    """A Shard on a ROUTER socket."""

    def __init__(self, shard: Shard, loop: asyncio.AbstractEventLoop) -> None:
        self.shard = shard
        self.loop = loop
        self.channel: ZmqChannel | None = None
        self.hooks: ZmqChannel | None = None  # to the hooks process (webhooks)
        self.redis: RedisLink | None = None  # several instances (SCALEOUT.md)
        self._flushing = False
        shard.on_output = self._schedule

    def on_message(self, frames: list[bytes]) -> None:
        identity, *message = frames
        if message:
            self.shard.receive(identity, message, time.monotonic())

    def _schedule(self) -> None:
        if not self._flushing:
            self._flushing = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """One multipart message per front for everything handled this loop turn.

        ZeroMQ delivers a multipart message whole or not at all, so a request's effects and
        its Done never arrive apart: a front whose shard dies mid-way either sees both or
        re-sends the request to the restarted shard (which then applies it once).
        """
        self._flushing = False
        assert self.channel is not None
        for identity, frames in self.shard.take().items():
            if not self.channel.send([identity, *frames]):
                self.shard.dropped_output += 1
        for message in self.shard.take_hooks():
            if self.hooks is None or not self.hooks.send(message.encode()):
                self.shard.dropped_hooks(message)
        if self.redis is not None:
            self.redis.send(self.shard.take_turns())

    def on_hooks_message(self, frames: list[bytes]) -> None:
        """The hooks process (re)started and asks for this shard's state."""
        if frames and frames[0] == link.WantState.OP:
            self.shard.send_hook_state(announce=False)

    def sweep(self) -> None:
        self.shard.sweep(time.monotonic())
        self.loop.call_later(SWEEP_SECONDS, self.sweep)

    def reload(self, path: str) -> None:
        """SIGHUP: re-read `path`; live settings apply from the next message on."""
        config = reread(path, self.shard.config)
        if config is not None:
            self.shard.reload(config)


async def serve(config: Config, index: int, config_path: str | None = None) -> None:
    """Run shard `index` until SIGTERM/SIGINT; SIGHUP re-reads `config_path`."""
    loop = asyncio.get_running_loop()
    worker = ShardWorker(Shard(config, index, load_registry(config.commands)), loop)
    directory = runtime_directory(config, os.environ)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    context = zmq.Context()
    endpoint = shard_endpoint(config, index, directory)
    sock = bind_router(context, endpoint, f"shard {index + 1}/{config.workers}")
    worker.channel = ZmqChannel(loop, sock, worker.on_message, f"shard {index}")
    hooks = context.socket(zmq.DEALER)
    tune(hooks)
    hooks.setsockopt(zmq.ROUTING_ID, link.hooks_identity(index))
    hooks.connect(link_endpoints(config, directory).hooks)
    worker.hooks = ZmqChannel(loop, hooks, worker.on_hooks_message, f"shard {index} hooks")
    if config.cluster is not None:
        worker.redis = RedisLink(worker.shard, loop, worker._schedule)
        worker.shard.on_recovered = worker.redis.recovered
        worker.shard.extra_stats = worker.redis.stats
        await worker.redis.start()
    loop.call_later(config.timeouts.shard_recovery, worker.shard.end_recovery)
    loop.call_later(SWEEP_SECONDS, worker.sweep)
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
    worker.flush()
    plan = stop_plan(worker.shard.config.shutdown_timeout)
    linger = int((plan.total - plan.fronts) * 1000 / 2)
    worker.channel.close(linger_ms=linger)
    worker.hooks.close(linger_ms=linger)
    context.term()
    if worker.redis is not None:
        await worker.redis.close()
