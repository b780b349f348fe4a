"""The Pusher routes of the front (PUSHER.md 1, 8): the client WebSocket and HTTP fallbacks,
and the HTTP API an app server signs (triggering here; the query API in pusher_query.py).

Every route hangs below `pusher_path_prefix` (a proxy's prefix, "" without one), which is
stripped before a request's signature is checked, as the SDK signed the path without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from pushy_shard.core import link, metrics
from pushy_shard.core import pusher_api as api
from pushy_shard.core.config import App
from pushy_shard.core.frames import Kind
from pushy_shard.core.pusher_auth import SignedRequest, check_path_app, verify
from pushy_shard.core.pusher_names import Kind as ChannelKind
from pushy_shard.core.pusher_names import parse_channel
from pushy_shard.core.routing import PUSHY_APP, app_key
from pushy_shard.errors import ApiError, BodyTooLarge, LinkUnavailable, NotEncodable
from pushy_shard.front import transports, websocket
from pushy_shard.front.front import Front, shard_error
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.pusher_query import (
    TERMINATE_PATH,
    channel,
    channels,
    terminate,
    terminate_handler,
    users,
)
from pushy_shard.front.transports import FRONT_KEY, json_answer, retry_after

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_STATUS = "pushy_pusher_api_requests_total"
_FROM_TRIGGER = (("source", "trigger"),)


def routes(pusher: Pusher, prefix: str, closing: websocket.ClosingSockets
           ) -> list[web.RouteDef]:
    """The Pusher client routes (kept-alive WebSocket upgrades; the xhr_streaming and
    xhr_polling fallbacks of pusher-js under /pusher/app/<key>) and the HTTP API."""

    def adapter_for(request: web.Request) -> Any:
        return pusher.adapter_for(request.match_info["key"], request.query.get("protocol"))

    return [
        web.get(prefix + "/app/{key}", websocket.handler(pusher.front, Kind.RAW_WS, adapter_for,
                                                         closing, sockjs=False)),
        *transports.routes(prefix + "/pusher/app/{key}", adapter_for,
                           ("xhr", "xhr_streaming")),
        web.post(prefix + "/apps/{app_id}/events",
                 api_handler(pusher, prefix, lambda p, app, _, body: events(p, app, body))),
        web.post(prefix + "/apps/{app_id}/batch_events",
                 api_handler(pusher, prefix, lambda p, app, _, body: batch(p, app, body))),
        web.get(prefix + "/apps/{app_id}/channels", api_handler(pusher, prefix, channels,
                                                              query=True)),
        web.get(prefix + "/apps/{app_id}/channels/{channel}",
                api_handler(pusher, prefix, channel, query=True)),
        web.get(prefix + "/apps/{app_id}/channels/{channel}/users",
                api_handler(pusher, prefix, users, query=True)),
        web.post(prefix + "/apps/{app_id}/users/{user_id}/terminate_connections",
                 api_handler(pusher, prefix, terminate, query=True)),
        web.post(prefix + "/users/{user_id}/terminate_connections",
                 api_handler(pusher, prefix, terminate, query=True)),
        web.post(TERMINATE_PATH, terminate_handler(pusher)),
    ]


Answer = Callable[[Pusher, App, web.Request, bytes], Awaitable[dict[str, Any]]]


def api_handler(pusher: Pusher, prefix: str, answer: Answer, *, query: bool = False
                ) -> Handler:
    """A signed HTTP API request (PUSHER.md 8): the body (at most 256 KB), the signature
    of the app named by `auth_key` (and by the path's `{app_id}`), then `answer`'s JSON.
    Any refusal is `{"error": message}` with its status; nothing happened. A `query` is
    counted by status and timed (pushy_query_*), a trigger by status and body bytes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        front: Front = request.app[FRONT_KEY]
        if query:
            started = time.monotonic()
            response, _ = await _answered(request, front)
            front.metrics.inc("pushy_query_requests_total",
                              (("status", str(response.status)),))
            metrics.observe(front.metrics, "pushy_query_seconds", time.monotonic() - started)
            return response
        response, size = await _answered(request, front)
        count_trigger(front, response.status, size)
        return response

    async def _answered(request: web.Request, front: Front) -> tuple[web.Response, int]:
        """The answer, and the size of the body it answered."""
        body = b""
        try:
            try:
                body = await transports.read_bounded(request, api.MAX_BODY)
            except BodyTooLarge:
                front.breach("trigger_body", "refused a Pusher API body from "
                             f"{front.request_address(request)}")
                raise ApiError(413, "Request body too large") from None
            app = verified_app(pusher, prefix, request.method, request.path,
                               tuple(request.query.items()), request.match_info.get("app_id"),
                               body)
            result = await answer(pusher, app, request, body)
        except ApiError as exc:
            return json_answer(exc.body(), exc.status, retry_after(exc)), len(body)
        return json_answer(result), len(body)

    return handle


def count_trigger(front: Front, status: int, size: int) -> None:
    """A trigger request's answer in /metrics (and its body's bytes when it went out)."""
    front.metrics.inc(_STATUS, (("status", str(status)),))
    if status == 200:
        front.metrics.inc("pushy_bytes_in_total", _FROM_TRIGGER, size)


def verified_app(pusher: Pusher, prefix: str, method: str, path: str,
                 query: tuple[tuple[str, str], ...], app_id: str | None, body: bytes) -> App:
    """The app whose signature the request carries (`path` as received, with the prefix
    the SDK did not sign); `app_id` is the path's, when it names one."""
    path = path[len(prefix):] if prefix else path
    signed = SignedRequest(method, path, query, body)
    apps = {app.key: app for app in pusher.front.config.api_apps}
    app = verify(signed, apps, time.time())
    if app_id is not None:
        check_path_app(app, app_id)
    assert isinstance(app, App)
    return app


async def trigger_answer(pusher: Pusher, prefix: str, path: str,
                         query: tuple[tuple[str, str], ...], app_id: str, body: bytes,
                         is_batch: bool) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """POST .../events or .../batch_events served by the front's own HTTP layer
    (trigger_http.py): status, JSON body and extra headers, counted as the route's are."""
    try:
        app = verified_app(pusher, prefix, "POST", path, query, app_id, body)
        result = await (batch if is_batch else events)(pusher, app, body)
    except ApiError as exc:
        count_trigger(pusher.front, exc.status, len(body))
        return exc.status, exc.body(), retry_after(exc)
    count_trigger(pusher.front, 200, len(body))
    return 200, result, None


# -- triggering ---------------------------------------------------------------------------------


async def events(pusher: Pusher, app: App, body: bytes) -> dict[str, Any]:
    """POST /apps/{id}/events: `{}`, or with `info` the attributes of each channel."""
    _triggerable(pusher, app)
    event = api.parse_events(body)
    infos = await _trigger(pusher.front, app, event)
    if not event.info:
        return {}
    return {"channels": {name: info for name, info in zip(event.channels, infos, strict=True)}}


async def batch(pusher: Pusher, app: App, body: bytes) -> dict[str, Any]:
    """POST /apps/{id}/batch_events: `{}`, or with `info` on any event `{"batch": [...]}`
    by index. The batch was checked whole before any event of it went out."""
    _triggerable(pusher, app)
    events = api.parse_batch(body)
    results = await asyncio.gather(*(_trigger(pusher.front, app, event) for event in events))
    if not any(event.info for event in events):
        return {}
    return {"batch": [infos[0] if event.info else {}
                      for event, infos in zip(events, results, strict=True)]}


def _triggerable(pusher: Pusher, app: App) -> None:
    """The Pushy channels' app answers queries; its channels are triggered by Pushy's API."""
    if pusher.front.config.namespace(app) == PUSHY_APP:
        raise ApiError(400, "The Pushy channels are triggered at /pushy/channel/{name}/trigger")


async def _trigger(front: Front, app: App, event: api.Event) -> list[dict[str, int]]:
    """The event to each of its channels' shards; the `info` attributes that apply to each
    channel (user_count on presence channels) from the shards' answers. 503 when a shard
    does not answer in time."""
    futures = []
    for name in event.channels:
        key = app_key(app.id, name)
        request = link.Trigger(key, event.name, event.data, event.socket_id)
        try:
            futures.append(front.request(key, request, front.config.timeouts.trigger))
        except NotEncodable:  # the data is a string: cannot happen, but never half-send
            raise ApiError(400, "Invalid event") from None
    try:
        results = await asyncio.gather(*futures)
    except LinkUnavailable:
        raise ApiError(503, "Service temporarily unavailable") from None
    if any(result.get("unavailable") for result in results):
        raise ApiError(503, "Redis unavailable, retry", retry_after=1)
    infos = []
    for name, result in zip(event.channels, results, strict=True):
        if shard_error(result) is not None:
            raise ApiError(500, "Trigger failed")
        wanted = set(event.info)
        if parse_channel(name).kind is not ChannelKind.PRESENCE:
            wanted.discard("user_count")
        infos.append({attr: int(result.get(attr, 0)) for attr in sorted(wanted)
                      if attr in api.TRIGGER_INFO})
    return infos
