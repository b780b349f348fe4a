"""`/metrics` and `/health` (README, Observability): the front's shell around core/metrics.

Whichever front the kernel hands a scrape answers for the whole server: its own snapshot,
every shard's (a STATS request on the link), every other front's (a GET on its private
relay endpoint, the one session requests are relayed over), the hooks process's (a GET on
its private stats endpoint) and the supervisor's restart
counts (`supervisor.json` in the runtime directory). A process that does not answer within
SCRAPE_TIMEOUT is reported by `pushy_scrape_up 0` instead of holding the scrape up.
Gauges are counted here, on demand, so the connection and fan-out paths keep no books.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import aiohttp
from aiohttp import ClientError, web

from pushy_shard import logs
from pushy_shard.core import link, metrics
from pushy_shard.core.config import link_endpoints, runtime_directory
from pushy_shard.core.protocol import dumps, loads
from pushy_shard.errors import LinkUnavailable, MetricsError
from pushy_shard.front.front import Front
from pushy_shard.front.relay import Relay
from pushy_shard.front.transports import FRONT_KEY, NO_CACHE, RELAY_KEY, json_answer
from pushy_shard.front.websocket import FRONT_HEADER

log = logging.getLogger(__name__)

SCRAPE_TIMEOUT = 1.0  # seconds a shard or front may take to send its snapshot
HEALTH_STALE = 3.0  # a shard that answered no PING (sent once a second) for this long is down
STATS_PATH = metrics.STATS_PATH

# transports that always appear in pushy_connections, 0 included, so dashboards see them
TRANSPORTS = ("websocket", "raw-websocket", "xhr-streaming", "xhr-polling", "eventsource",
              "htmlfile", "jsonp-polling")


def local_samples(front: Front) -> list[metrics.Sample]:
    """This front's part of /metrics: its counters and the gauges of this moment."""
    hub = front.hub
    out: list[metrics.Sample] = list(front.metrics)
    counts: dict[tuple[tuple[str, str], ...], int] = {
        (("transport", name), ("protocol", "pushy")): 0 for name in TRANSPORTS}
    counts.update(hub.by_labels())
    out += [("pushy_connections", key, float(n)) for key, n in counts.items()]
    out += [("pushy_bad_requests_total", (("kind", kind),), float(n))
            for kind, n in logs.CLIENT_NOISE.counts.items()]
    out += [
        ("pushy_messages_out_total", (("kind", "event"),), float(hub.delivered)),
        ("pushy_messages_out_total", (("kind", "reply"),), float(hub.replies)),
        ("pushy_bytes_out_total", (), float(hub.delivered_bytes + hub.reply_bytes)),
    ]
    links = front.links
    if links is not None:
        down = set(links.down(time.monotonic(), HEALTH_STALE))
        for target in links.view.shards:
            labels = (("front", str(front.index)), ("shard", str(target.index)))
            out.append(("pushy_link_pending_requests", labels, float(len(target.pending))))
            out.append(("pushy_link_up", labels, 0.0 if target.index in down else 1.0))
        out.append(("pushy_link_send_failures_total", (("role", "front"),),
                    float(links.send_failures)))
    return out


async def _from_shard(front: Front, shard: int) -> list[metrics.Sample]:
    assert front.links is not None
    request = front.links.request(shard, link.Stats(), timeout=SCRAPE_TIMEOUT)
    reply = await asyncio.wait_for(request, SCRAPE_TIMEOUT)
    return metrics.from_wire(reply.get("samples"))


async def _from_front(relay: Relay, index: int) -> list[metrics.Sample]:
    body = await relay.get(index, STATS_PATH, SCRAPE_TIMEOUT)
    try:
        raw = loads(body)
    except ValueError as exc:
        raise MetricsError(f"front {index}: {exc}") from None
    return metrics.from_wire(raw)


async def _from_hooks(front: Front) -> list[metrics.Sample]:
    endpoint = link_endpoints(front.config, runtime_directory(front.config, os.environ))
    target = endpoint.hooks_stats
    connector: aiohttp.BaseConnector
    if isinstance(target, str):
        connector, url = aiohttp.UnixConnector(path=target), f"http://hooks{STATS_PATH}"
    else:
        connector = aiohttp.TCPConnector()
        url = f"http://{target[0]}:{target[1]}{STATS_PATH}"
    timeout = aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http, \
            http.get(url) as response:
        response.raise_for_status()
        body = await response.read()
    try:
        return metrics.from_wire(loads(body))
    except ValueError as exc:
        raise MetricsError(f"hooks: {exc}") from None


def _restarts(front: Front) -> list[metrics.Sample]:
    """The supervisor's restart counts, when this front's parent is the supervisor that
    wrote them (under supervisord there is none: restarts are supervisord's to count)."""
    path = os.path.join(runtime_directory(front.config, os.environ), metrics.STATE_FILE)
    try:
        with open(path, "rb") as f:
            return metrics.restart_samples(f.read(), os.getppid())
    except FileNotFoundError:
        return []
    except (OSError, MetricsError) as exc:
        log.warning("front %d: cannot read %s: %s", front.index, path, exc)
        return []


async def scrape(front: Front, relay: Relay | None) -> dict[metrics.Key, float]:
    """Every process's snapshot, summed; the ones missing are `pushy_scrape_up 0`."""
    config = front.config
    peers = [i for i in range(config.fronts) if i != front.index] if relay is not None else []
    jobs = [_from_shard(front, j) for j in range(config.workers)]
    if relay is not None:
        jobs += [_from_front(relay, i) for i in peers]
    jobs.append(_from_hooks(front))
    answers = await asyncio.gather(*jobs, return_exceptions=True)
    snapshots = [local_samples(front), _restarts(front)]
    up = [metrics.scrape_up("front", front.index, True)]
    names = [("shard", j) for j in range(config.workers)] + [("front", i) for i in peers]
    names.append(("hooks", 0))
    for (role, index), answer in zip(names, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, TimeoutError | LinkUnavailable | ClientError | OSError
                              | MetricsError):
                raise answer
            log.debug("front %d: %s %d missing from /metrics: %r", front.index, role, index,
                      answer)
            up.append(metrics.scrape_up(role, index, False))
        else:
            snapshots.append(answer)
            up.append(metrics.scrape_up(role, index, True))
    snapshots.append(up)
    return metrics.merge(*snapshots)


# -- handlers ---------------------------------------------------------------------------------


async def metrics_page(request: web.Request) -> web.Response:
    front: Front = request.app[FRONT_KEY]
    values = await scrape(front, request.app.get(RELAY_KEY))
    return web.Response(body=metrics.exposition(values).encode(),
                        headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": NO_CACHE,
                                 FRONT_HEADER: str(front.index)})


async def health(request: web.Request) -> web.Response:
    """200 when this front can reach every shard now, else 503 naming the missing ones."""
    front: Front = request.app[FRONT_KEY]
    shards = front.config.workers
    down = front.links.down(time.monotonic(), HEALTH_STALE) if front.links else list(range(shards))
    redis_down = front.links.view.redis_down() if front.links else []
    failing = bool(down or redis_down)
    body: dict[str, object] = {"status": "unavailable" if failing else "ok",
                               "front": front.index, "shards": shards}
    if down:
        body["missing_shards"] = down
    if front.config.cluster is not None:
        body["redis"] = "unavailable" if redis_down else "ok"
        if redis_down:
            body["redis_down_shards"] = redis_down
    return json_answer(body, 503 if failing else 200,
                       {"Cache-Control": NO_CACHE, FRONT_HEADER: str(front.index)})


async def own_stats(request: web.Request) -> web.Response:
    """Another front's scrape asks for this front's snapshot on the private endpoint; the
    public port answers 404 (it would leak nothing, but it is no public API)."""
    relay: Relay | None = request.app.get(RELAY_KEY)
    if relay is None or not relay.relayed(request):
        raise web.HTTPNotFound()
    samples = local_samples(request.app[FRONT_KEY])
    return web.Response(body=dumps(metrics.to_wire(samples)),
                        content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/metrics", metrics_page),
        web.get("/health", health),
        web.get(STATS_PATH, own_stats),
    ]
