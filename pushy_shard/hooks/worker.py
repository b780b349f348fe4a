"""The hooks process: shards' webhook transitions in, signed posts to every webhook URL out.

Shards decide every transition of the channels they own and send it here on one ROUTER
socket (link.Transitions), never waiting for an answer; after a restart and its replay a
shard sends its whole state (link.HookState), and this process, if it restarted itself,
asks each shard for it (link.WantState). The pure cores decide: the Announcer says each
transition once, after its hold; Deliveries batch per URL, one post in flight, with
retries. This shell feeds them the time, posts, and serves its /metrics part on a private
endpoint the fronts scrape. What it still holds when it stops is lost (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import signal
import time
from collections.abc import Iterable
from typing import Any

import aiohttp
import zmq
from aiohttp import web

from pushy_shard.core import link, metrics
from pushy_shard.core.config import Config, link_endpoints, runtime_directory
from pushy_shard.core.protocol import dumps
from pushy_shard.core.ratelimit import BreachLog
from pushy_shard.core.routing import app_key, shard_for
from pushy_shard.core.webhooks import (
    Announcer,
    BadTransition,
    Deliveries,
    DeliverySettings,
    Post,
    Target,
    request,
    targets,
)
from pushy_shard.errors import AddressInUse, LinkError
from pushy_shard.reloading import reread
from pushy_shard.zmqio import ZmqChannel, bind_router

log = logging.getLogger(__name__)

ASK_EVERY = 1.0  # seconds between asks for the state of shards that have not answered


def _settings(config: Config) -> DeliverySettings:
    hooks = config.webhook_delivery
    return DeliverySettings(batch_events=hooks.batch_events,
                            batch_delay_ms=int(hooks.batch_delay * 1000),
                            retry_for_ms=int(hooks.retry_for * 1000),
                            max_bytes=hooks.max_queue_bytes)


def _now_ms() -> int:
    """The clock of holds, batches and retries (monotonic: a wall-clock step moves none)."""
    return int(time.monotonic() * 1000)


class HooksWorker:
    """The announcer and the deliveries of this host, and the posts in flight."""

    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.config = config
        self.announcer = Announcer(int(config.webhook_delivery.hold * 1000))
        self.deliveries = Deliveries(_settings(config), random.random)
        self.by_namespace: dict[str, tuple[Target, ...]] = {}
        self._retarget(config)
        self.channel: ZmqChannel | None = None
        self.http: aiohttp.ClientSession | None = None
        self.metrics = metrics.Metrics()
        # shards whose state we have not had (none to ask with several instances: Redis
        # decides every transition there)
        self.unasked = set(range(config.workers)) if config.cluster is None else set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._posts: set[asyncio.Task[None]] = set()
        self._lines = BreachLog()

    def _retarget(self, config: Config) -> None:
        namespaces = {app.id: config.namespace(app) for app in config.api_apps}
        configured = targets(config.api_apps)
        by_namespace: dict[str, list[Target]] = {}
        for target in configured:
            by_namespace.setdefault(namespaces[target.app], []).append(target)
        self.by_namespace = {ns: tuple(found) for ns, found in by_namespace.items()}
        self.deliveries.retarget(configured)

    # -- from the shards -------------------------------------------------------------------

    def on_message(self, frames: list[bytes]) -> None:
        _identity, *message = frames
        try:
            decoded = link.decode_hooks(message)
        except (LinkError, KeyError, TypeError, ValueError, IndexError) as exc:
            self._line("malformed", f"dropped a malformed message from a shard: {exc}")
            return
        now = _now_ms()
        if isinstance(decoded, link.Transitions):
            for app, event in decoded.events:
                try:
                    if self.config.cluster is not None:  # decided, held and checked in Redis
                        self._queue([(app, dict(event))], now)
                        continue
                    self._queue(self.announcer.apply(app, event, now), now)
                except BadTransition as exc:
                    self._line("malformed", f"dropped a transition of shard {decoded.shard}: "
                               f"{exc}")
        else:
            self._restore(decoded, now)
        self.pump()

    def _restore(self, report: link.HookState, now: int) -> None:
        """A shard's whole state. The difference is announced only against what this
        process heard of that shard before: a first state (this process is new) is adopted."""
        announce = report.announce and report.shard not in self.unasked
        self.unasked.discard(report.shard)
        shard, workers = report.shard, self.config.workers

        def owned(app: str, channel: str) -> bool:
            return shard_for(app_key(app, channel), workers) == shard

        try:
            self._queue(self.announcer.restore(owned, report.state, now, announce), now)
        except BadTransition as exc:
            self._line("malformed", f"dropped the state of shard {shard}: {exc}")
            return
        count = sum(len(channels) for channels in report.state.values())
        log.info("hooks: shard %d %s: %d channel(s)", shard,
                 "recovered" if report.announce else "answered", count)

    def ask_for_states(self) -> None:
        """Ask every shard whose state this process has not had yet (it started after them,
        or they are not up yet); a shard that is not connected is asked again later."""
        assert self.channel is not None
        for shard in sorted(self.unasked):
            self.channel.send([link.hooks_identity(shard), *link.WantState().encode()])
        if self.unasked:
            self.loop.call_later(ASK_EVERY, self.ask_for_states)

    # -- to the webhooks ---------------------------------------------------------------------

    def _queue(self, announced: Iterable[tuple[str, dict[str, Any]]], now: int) -> None:
        for app, event in announced:
            self.metrics.inc("pushy_webhook_events_total", (("event", str(event["name"])),))
            for target in self.by_namespace.get(app, ()):
                if target.wants(event) and not self.deliveries.add(target, event, now):
                    self._line("queue_full", "webhook queue full "
                               f"({self.config.webhook_delivery.max_queue_bytes} bytes): "
                               f"dropped a {event['name']} event for {target.url}")

    def pump(self) -> None:
        """Announce the holds that ended, start the posts that are due, and wake up when
        the next thing is."""
        now = _now_ms()
        self._queue(self.announcer.due(now), now)
        for post in self.deliveries.due(now):
            task = self.loop.create_task(self._post(post))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
        due = [at for at in (self.announcer.next_due(), self.deliveries.next_due(now))
               if at is not None]
        self._wake_at(min(due) if due else None)

    def _wake_at(self, at: int | None) -> None:
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, at
        if at is not None:
            self._timer = self.loop.call_later(max(0, at - _now_ms()) / 1000, self._woken)

    def _woken(self) -> None:
        self._timer = self._timer_at = None
        self.pump()

    async def _post(self, post: Post) -> None:
        """One try of one batch: any 2xx is done; anything else, or no answer within
        webhook_delivery.post_timeout, is retried later (Deliveries decides when)."""
        assert self.http is not None
        body, headers = request(post.target, post.events, int(time.time() * 1000))
        timeout = aiohttp.ClientTimeout(total=self.config.webhook_delivery.post_timeout)
        try:
            async with self.http.post(post.target.url, data=body, headers=headers,
                                      timeout=timeout) as response:
                await response.read()
                status = str(response.status)
                ok = 200 <= response.status < 300
        except TimeoutError:
            status, ok = "timeout", False
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            status, ok = "error", False
            log.debug("hooks: post to %s failed: %r", post.target.url, exc)
        self.metrics.inc("pushy_webhook_posts_total", (("status", status),))
        expired = self.deliveries.dropped["expired"]
        self.deliveries.finished(post.id, ok, _now_ms())
        if not ok:
            lost = self.deliveries.dropped["expired"] - expired
            self._line(f"post {post.target.url}", f"webhook post to {post.target.url} failed "
                       f"({status}, try {post.attempt}); " + (
                           f"dropped {lost} event(s) after retrying for "
                           f"{self.config.webhook_delivery.retry_for:g} s" if lost
                           else "retrying"))
        self.pump()

    # -- the process ---------------------------------------------------------------------------

    def reload(self, path: str) -> None:
        """SIGHUP: new webhooks and delivery settings; queues of removed webhooks go."""
        config = reread(path, self.config)
        if config is None:
            return
        self.config = config
        self.announcer.hold_ms = int(config.webhook_delivery.hold * 1000)
        self.deliveries.settings = _settings(config)
        self._retarget(config)
        self.pump()

    def stats(self) -> list[metrics.Sample]:
        numbers = self.deliveries.stats()
        dropped = [(reason, numbers[f"dropped_{reason}"])
                   for reason in ("queue_full", "expired", "removed")]
        return [
            *self.metrics,
            ("pushy_webhook_queue_events", (), float(numbers["queued_events"])),
            ("pushy_webhook_queue_bytes", (), float(numbers["queued_bytes"])),
            ("pushy_webhook_posts_in_flight", (), float(numbers["in_flight"])),
            ("pushy_webhook_retries_total", (), float(numbers["retries"])),
            ("pushy_webhook_delivered_total", (), float(numbers["delivered"])),
            *[("pushy_webhook_dropped_total", (("reason", reason),), float(count))
              for reason, count in dropped],
        ]

    def _line(self, name: str, detail: str) -> None:
        line = self._lines.line(name, time.monotonic(), f"hooks: {detail}")
        if line is not None:
            log.warning("%s", line)


async def _stats_site(worker: HooksWorker, endpoint: str | tuple[str, int]
                      ) -> web.AppRunner:
    """The private endpoint a front's /metrics scrape reads this process's snapshot from."""

    async def stats(request: web.Request) -> web.Response:
        return web.Response(body=dumps(metrics.to_wire(worker.stats())),
                            content_type="application/json")

    app = web.Application()
    app.add_routes([web.get(metrics.STATS_PATH, stats)])
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site: web.BaseSite
    if isinstance(endpoint, str):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(endpoint)
        site = web.UnixSite(runner, endpoint)
    else:
        site = web.TCPSite(runner, endpoint[0], endpoint[1], reuse_address=True)
    await site.start()
    return runner


async def serve(config: Config, config_path: str | None = None) -> None:
    """Run the hooks process until SIGTERM/SIGINT; SIGHUP re-reads `config_path`."""
    loop = asyncio.get_running_loop()
    worker = HooksWorker(config, loop)
    directory = runtime_directory(config, os.environ)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    endpoints = link_endpoints(config, directory)
    context = zmq.Context()
    # a restarted shard connects with its predecessor's routing id: it takes over at once
    # (without handover ZeroMQ would ignore it while the dead one's pipe is still there)
    sock = bind_router(context, endpoints.hooks, "hooks", handover=True)
    worker.channel = ZmqChannel(loop, sock, worker.on_message, "hooks")
    worker.http = aiohttp.ClientSession(skip_auto_headers=("User-Agent",),
                                        headers={"User-Agent": "pushy-shard webhooks"})
    try:
        runner = await _stats_site(worker, endpoints.hooks_stats)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUse(f"hooks: {endpoints.hooks_stats}: already in use") from None
    worker.ask_for_states()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, worker.reload, config_path)
    log.info("hooks listening on %s", endpoints.hooks)
    await stop.wait()
    left = worker.deliveries.queued_events
    log.info("hooks stopping%s", f": {left} webhook event(s) not delivered" if left else "")
    for task in list(worker._posts):
        task.cancel()
    await runner.cleanup()
    await worker.http.close()
    worker.channel.close()
    context.term()
    if isinstance(endpoints.hooks_stats, str):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(endpoints.hooks_stats)
