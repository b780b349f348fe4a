"""The front process: aiohttp on the shared port (SO_REUSEPORT), links to every shard."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pushy_shard.commands import load_registry
from pushy_shard.core.config import Config, runtime_directory, shard_endpoint
from pushy_shard.front import websocket
from pushy_shard.front.front import Front
from pushy_shard.front.http import build_app
from pushy_shard.front.links import ShardLinks

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
SHUTDOWN_SECONDS = 5.0


def ssl_context(config: Config) -> ssl.SSLContext | None:
    if not config.ssl:
        return None
    assert config.ssl_cert is not None and config.ssl_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.ssl_cert, config.ssl_key)
    return context


async def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        await asyncio.sleep(seconds)
        action()


async def serve(config: Config, index: int) -> None:
    """Run front `index` until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    front = Front(config, index, load_registry(config.commands))
    directory = runtime_directory(config, os.environ)
    endpoints = [shard_endpoint(config, j, directory) for j in range(config.workers)]
    links = ShardLinks(loop, index, endpoints, front.link_message, front.hub.members_for_shard)
    front.attach(links)

    runner = web.AppRunner(build_app(front), handle_signals=False, access_log=None,
                           shutdown_timeout=SHUTDOWN_SECONDS)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_port=True,
                       ssl_context=ssl_context(config))
    await site.start()
    timers = [
        asyncio.ensure_future(_every(SWEEP_SECONDS, front.sweep)),
        asyncio.ensure_future(
            _every(config.sockjs.heartbeat_delay, lambda: websocket.heartbeat(front))
        ),
    ]
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
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
    for timer in timers:
        timer.cancel()
    await site.stop()
    await websocket.go_away(front)
    await runner.cleanup()
    links.close()
