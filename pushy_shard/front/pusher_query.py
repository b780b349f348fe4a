"""The query API of the Pusher HTTP API (PUSHER.md 8): channels, one channel, its users, and
terminating a user's connections, for the Pusher apps and the Pushy channels' app.

A list of channels is asked of every shard, a channel of the shard that owns it; terminating
is done by every front (the one that got the request asks the others on their private relay
endpoints). Each answer comes within `timeouts.query` or the whole answer is 503: never a
partial answer presented as whole.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import ClientError, web

from pushy_shard.core import channel_query as query
from pushy_shard.core import link
from pushy_shard.core.config import App
from pushy_shard.core.protocol import dumps, loads
from pushy_shard.core.routing import PUSHY_APP, app_key
from pushy_shard.errors import ApiError, LinkUnavailable
from pushy_shard.front.front import Front
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.relay import Relay
from pushy_shard.front.transports import RELAY_KEY

log = logging.getLogger(__name__)

TERMINATE_PATH = "/pushy-internal/terminate"  # served on the private relay endpoint only
_UNAVAILABLE = "Service temporarily unavailable"


async def channels(pusher: Pusher, app: App, request: web.Request, body: bytes
                   ) -> dict[str, Any]:
    """GET /apps/{id}/channels?filter_by_prefix=&info=: every occupied channel, from every
    shard."""
    front = pusher.front
    namespace = front.config.namespace(app)
    prefix = request.query.get("filter_by_prefix", "")
    info = query.parse_info(request.query.get("info"), query.LIST_INFO)
    query.check_list(namespace != PUSHY_APP, prefix, info)
    ask = link.Query(namespace, "channels", prefix=prefix, info=info)
    answers = await _gather(front, [_ask(front, shard, ask) for shard in range(front.shards)])
    found: dict[str, Any] = {}
    for answer in answers:
        part = answer.get("channels")
        if not isinstance(part, dict):
            raise ApiError(500, "Query failed")
        found.update(part)
    return {"channels": dict(sorted(found.items()))}


async def channel(pusher: Pusher, app: App, request: web.Request, body: bytes
                  ) -> dict[str, Any]:
    """GET /apps/{id}/channels/{name}?info=: occupied and the attributes asked for."""
    namespace, name = _channel(pusher, app, request)
    info = query.parse_info(request.query.get("info"), query.CHANNEL_INFO)
    query.check_channel(namespace != PUSHY_APP, name, info)
    answer = await _of_channel(pusher.front, link.Query(namespace, "channel", name, info=info))
    result = answer.get("channel")
    if not isinstance(result, dict):
        raise ApiError(500, "Query failed")
    return result


async def users(pusher: Pusher, app: App, request: web.Request, body: bytes
                ) -> dict[str, Any]:
    """GET /apps/{id}/channels/{name}/users: the users of a presence channel."""
    namespace, name = _channel(pusher, app, request)
    query.check_users(namespace != PUSHY_APP, name)
    answer = await _of_channel(pusher.front, link.Query(namespace, "users", name))
    result = answer.get("users")
    if not isinstance(result, list):
        raise ApiError(500, "Query failed")
    return {"users": result}


async def terminate(pusher: Pusher, app: App, request: web.Request, body: bytes
                    ) -> dict[str, Any]:
    """POST /apps/{id}/users/{uid}/terminate_connections (and the Python SDK's
    /users/{uid}/terminate_connections): every front closes that user's signed-in
    connections with 4009."""
    front = pusher.front
    if front.config.namespace(app) == PUSHY_APP:
        raise ApiError(400, "Pushy connections do not sign in: there is no user to terminate")
    user_id = request.match_info["user_id"]
    if not user_id or len(user_id) > 200:
        raise ApiError(400, "Invalid user id")
    closed = pusher.terminate(app.id, user_id)
    relay: Relay | None = request.app.get(RELAY_KEY)
    if relay is not None:
        order = dumps({"app": app.id, "user": user_id})
        others = [i for i in range(front.config.fronts) if i != front.index]
        timeout = front.config.timeouts.query
        answers = await _gather(front, [relay.post(i, TERMINATE_PATH, order, timeout)
                                        for i in others])
        closed += sum(int(loads(answer).get("closed", 0)) for answer in answers)
    if front.config.cluster is not None:  # and every other instance, through Redis
        told = await _gather(front, [front.request(app_key(app.id, ""), link.Query(
            app.id, "terminate", name=user_id), front.config.timeouts.query)])
        if told[0].get("unavailable"):
            raise ApiError(503, "Redis unavailable, retry", retry_after=1)
    log.info("front %d: terminated %d connection(s) of user %r of app %s", front.index,
             closed, user_id[:60], app.id)
    return {}


def terminate_handler(pusher: Pusher) -> Any:
    """Another front's terminate order, on this front's private endpoint (404 on the
    public port)."""

    async def terminate_here(request: web.Request) -> web.Response:
        relay: Relay | None = request.app.get(RELAY_KEY)
        if relay is None or not relay.relayed(request):
            raise web.HTTPNotFound()
        order = loads(await request.read())
        closed = pusher.terminate(str(order["app"]), str(order["user"]))
        return web.Response(body=dumps({"closed": closed}), content_type="application/json")

    return terminate_here


# -- asking ------------------------------------------------------------------------------------


def _channel(pusher: Pusher, app: App, request: web.Request) -> tuple[str, str]:
    name = request.match_info["channel"]
    if not name or len(name) > 200:
        raise ApiError(400, "Invalid channel name")
    return pusher.front.config.namespace(app), name


async def _of_channel(front: Front, ask: link.Query) -> dict[str, Any]:
    key = app_key(ask.app, ask.name)
    (answer,) = await _gather(front, [front.request(key, ask, front.config.timeouts.query)])
    return answer


def _ask(front: Front, shard: int, ask: link.Query) -> asyncio.Future[Any]:
    assert front.links is not None
    return front.links.request(shard, ask, timeout=front.config.timeouts.query)


async def _gather(front: Front, asks: list[Any]) -> list[Any]:
    """Every answer within `timeouts.query`, else 503; a shard's refusal is its ApiError."""
    try:
        answers = await asyncio.wait_for(asyncio.gather(*asks), front.config.timeouts.query)
    except (TimeoutError, LinkUnavailable, ClientError, OSError) as exc:
        log.debug("front %d: a query went unanswered: %r", front.index, exc)
        raise ApiError(503, _UNAVAILABLE) from None
    for answer in answers:
        refused = answer.get("api_error") if isinstance(answer, dict) else None
        if isinstance(refused, list) and len(refused) == 2:
            raise ApiError(int(refused[0]), str(refused[1]))
    return answers
