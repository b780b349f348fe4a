"""The front process: aiohttp on the shared port (SO_REUSEPORT), links to every shard."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import ssl
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from pushy_shard.commands import load_registry
from pushy_shard.core.config import Config, runtime_directory, shard_endpoint
from pushy_shard.errors import AddressInUse
from pushy_shard.front import shutdown
from pushy_shard.front.front import Front
from pushy_shard.front.http import build_app
from pushy_shard.front.links import ShardLinks, ZmqTransport
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.relay import Relay
from pushy_shard.front.sessions import Sessions, sweep_interval
from pushy_shard.front.websocket import ClosingSockets
from pushy_shard.front.wire import Listener

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
BACKLOG = 1024  # connection storms (a restarted front's clients all coming back)


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.ssl:
        return None
    assert config.ssl_cert is not None and config.ssl_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.ssl_cert, config.ssl_key)
    return context


async def _sweep(front: Front, pusher: Pusher, sessions: Sessions, listener: Listener
                 ) -> None:
    """The front's one periodic task: link liveness and slow request heads once a second,
    SockJS heartbeats and session expiry as often as the configured delays need
    (ARCHITECTURE.md 4)."""
    next_link_tick = 0.0
    while True:
        interval = sweep_interval(front.config.sockjs, SWEEP_SECONDS)  # SIGHUP may change it
        await asyncio.sleep(interval)
        now = time.monotonic()
        if now >= next_link_tick:  # (half an interval early: sleeps may end a little early)
            next_link_tick = now + SWEEP_SECONDS - interval / 2
            front.sweep()
            listener.sweep(now)
            pusher.sweep(now)
        sessions.sweep(now)


@contextlib.contextmanager
def _binding(what: str) -> Iterator[None]:
    """A bind that finds the address taken raises AddressInUse (the process exits)."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUse(f"{what}: already in use by another process") from None


async def serve(config: Config, index: int, config_path: str | None = None) -> None:
    """Run front `index` until SIGTERM/SIGINT; SIGHUP re-reads `config_path`."""
    loop = asyncio.get_running_loop()
    front = Front(config, index)
    pushy = Pushy(front, load_registry(config.commands))
    pusher = Pusher(front)
    directory = runtime_directory(config, os.environ)
    endpoints = [shard_endpoint(config, j, directory) for j in range(config.workers)]
    links = ShardLinks(loop, index, config.workers, front, front.hub.members_for_shard)
    ZmqTransport(links, endpoints)
    front.attach(links)

    sessions = Sessions(front, config.sockjs)
    relay = Relay(config, index, directory) if config.fronts > 1 else None
    # handler_cancellation: a client that drops a receiving request cancels its handler,
    # which is how a SockJS session learns its receiver went away
    closing = ClosingSockets()
    runner = web.AppRunner(build_app(front, pushy, pusher, sessions, relay, closing),
                           handle_signals=False,
                           access_log=None, shutdown_timeout=config.shutdown_timeout,
                           handler_cancellation=True)
    await runner.setup()
    name = f"front {index + 1}/{config.fronts}"
    if relay is not None:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with _binding(f"{name}: relay endpoint"):
            await relay.start(runner)
    # The port is ours, not a TCPSite's: WebSockets are served without aiohttp (wire.py),
    # every other connection is handed to the runner's server.
    assert runner.server is not None
    listener = Listener(front, pushy, pusher, runner.server, closing)
    with _binding(f"{name}: port {config.host}:{config.port}"):
        server = await loop.create_server(listener, config.host, config.port,
                                          reuse_port=True, ssl=ssl_context(config),
                                          backlog=BACKLOG)
    sweeping = asyncio.ensure_future(_sweep(front, pusher, sessions, listener))
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if config_path is not None:
        loop.add_signal_handler(signal.SIGHUP, shutdown.reload, front, sessions, config_path)
    scheme = "https" if config.ssl else "http"
    log.info("front %d/%d serving %s://%s:%d", index + 1, config.fronts, scheme, config.host,
             config.port)
    waiting = asyncio.ensure_future(stop.wait())
    either: list[asyncio.Future[Any]] = [waiting, links.ready]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    if links.ready.done():
        log.info("front %d/%d ready: linked to %d shards", index + 1, config.fronts,
                 config.workers)
    await waiting
    log.info("front %d/%d stopping", index + 1, config.fronts)

    async def stop_accepting() -> None:
        server.close()  # the kernel now gives new connections to the other fronts
        listener.close_all()  # connections still sending their first head
        if runner.server is not None:
            runner.server.pre_shutdown()  # idle keep-alive connections close too

    await shutdown.stop(front, sessions, links, stop_accepting=stop_accepting,
                        finish_http=runner.cleanup)
    sweeping.cancel()
    if relay is not None:
        await relay.close()
    links.close()
