"""A front's graceful stop (SIGTERM) and config reload (SIGHUP).

Stop, in order, within `shutdown_timeout` (core/stopping.py):

1. stop accepting: the listening socket closes first, so the kernel's SO_REUSEPORT group
   gives new connections to the other fronts;
2. tell every client to reconnect, each in its protocol's words (`ClientProtocol.goodbye`):
   Pushy's `c[3000,"Server shutting down, please reconnect"]` on SockJS sessions (WebSocket
   and HTTP), then WebSocket close 1001; Pusher's `pusher:error` and close 4200;
3. every connection leaves its channels now (LEAVE to the shards), so members on other
   fronts get `pushy:presence-quit` at once instead of after the shards' liveness timeout;
4. wait until every request sent to a shard is answered (triggers in flight get their HTTP
   answer, LEAVEs are applied) and clients answered the close, up to the drain deadline;
5. end the HTTP handlers still running, briefly; the caller then closes the links.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pushy_shard.core.stopping import stop_plan
from pushy_shard.front import websocket
from pushy_shard.front.front import Front
from pushy_shard.front.links import ShardLinks
from pushy_shard.front.sessions import Sessions
from pushy_shard.reloading import reread

log = logging.getLogger(__name__)


async def stop(front: Front, sessions: Sessions, links: ShardLinks, *,
               stop_accepting: Callable[[], Awaitable[None]],
               finish_http: Callable[[], Awaitable[None]]) -> None:
    """Steps 1-5 above. `stop_accepting` closes the listening socket (and idle keep-alive
    connections); `finish_http` ends the server's remaining connections and handlers."""
    loop = asyncio.get_running_loop()
    plan = stop_plan(front.config.shutdown_timeout)
    start = loop.time()
    name = f"front {front.index + 1}/{front.config.fronts}"
    front.stopping = True  # connections still arriving (relayed, kept-alive) are refused
    await stop_accepting()
    clients = len(front.hub)
    sessions.close_all()
    closing = websocket.go_away(front)
    for conn in front.hub:
        front.closed(conn)
    log.info("%s: told %d clients to reconnect; %d requests in flight", name, clients,
             links.in_flight)
    draining = asyncio.ensure_future(_drained(links))
    waits: list[asyncio.Future[Any]] = [closing, draining]
    await asyncio.wait(waits, timeout=max(0.0, start + plan.drain - loop.time()))
    if not draining.done():
        log.warning("%s: %d requests unanswered after %.1fs; stopping anyway", name,
                    links.in_flight, loop.time() - start)
    for task in (closing, draining):
        task.cancel()
    # what is left of the margin before the supervisor's deadline: half for the handlers
    finish_by = start + (plan.drain + plan.fronts) / 2
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(finish_http(), timeout=max(0.01, finish_by - loop.time()))
    log.info("%s: drained in %.2fs", name, loop.time() - start)


async def _drained(links: ShardLinks) -> None:
    """Until no request waits for a shard, including any that answers' callbacks send."""
    while True:
        await links.idle()
        await asyncio.sleep(0)  # one loop turn: answered futures' callbacks run
        if not links.in_flight:
            return


def reload(front: Front, sessions: Sessions, path: str) -> None:
    """SIGHUP: live settings take effect where they are read (`front.config`, the sessions'
    SockJS options); the rest keep their values (logged by `reread`)."""
    config = reread(path, front.config)
    if config is not None:
        front.config = config
        sessions.options = config.sockjs
