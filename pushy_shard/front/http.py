"""The front's HTTP surface: SockJS greeting/info/iframe, the trigger API, the demo page.

PROTOCOL.md 1 and 4; the WebSocket transports live in `websocket.py`, the HTTP ones in
`transports.py` (their sessions in `sessions.py`).
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from pushy_shard.core import protocol
from pushy_shard.core.config import Config
from pushy_shard.core.frames import Kind
from pushy_shard.core.origins import origin_allowed
from pushy_shard.core.trigger import verify_trigger
from pushy_shard.errors import BodyTooLarge, TriggerError
from pushy_shard.front import observe, pusher_http, transports, websocket
from pushy_shard.front.front import Front
from pushy_shard.front.pusher import Pusher
from pushy_shard.front.pushy import Pushy
from pushy_shard.front.relay import Relay
from pushy_shard.front.sessions import Sessions
from pushy_shard.front.transports import (
    FRONT_KEY,
    NO_CACHE,
    RELAY_KEY,
    SESSIONS_KEY,
    cache_for_a_year,
    cors_headers,
    retry_after,
)

CLOSING_KEY = web.AppKey("closing", websocket.ClosingSockets)

_CREATED = (("status", "201"),)
_OK = (("status", "200"),)
_FROM_TRIGGER = (("source", "trigger"),)

# sockjs-protocol 0.3.3 IframePage: the page runs `_sockjs_onload` once the script named
# by `sockjs_url` loaded (sockjs-client 0.3 and 1.x both call it), so it works cross-origin.
IFRAME_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script>
    document.domain = document.domain;
    _sockjs_onload = function(){{SockJS.bootstrap_iframe();}};
  </script>
  <script src="{sockjs_url}"></script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


async def greeting(request: web.Request) -> web.Response:
    return web.Response(text="Welcome to SockJS!\n", content_type="text/plain", charset="UTF-8")


_entropy = random.SystemRandom()


async def info(request: web.Request) -> web.StreamResponse:
    """What clients read before choosing a transport (sockjs-protocol InfoTest)."""
    config: Config = request.app[FRONT_KEY].config
    origins = ["*:*"] if "*" in config.allowed_origins else list(config.allowed_origins)
    body = {
        "websocket": config.sockjs.websocket,
        "origins": origins,
        "cookie_needed": config.sockjs.jsessionid,
        "entropy": _entropy.randint(0, 2**32 - 1),  # seeds the browser's weak random
    }
    return web.Response(body=protocol.dumps(body), content_type="application/json",
                        charset="UTF-8", headers={"Cache-Control": NO_CACHE,
                                                  **cors_headers(request)})


def iframe_handler(config: Config) -> Callable[[web.Request], Awaitable[web.Response]]:
    """iframe.html (and any `iframe-<version>.html`): strongly cacheable, with an ETag that
    changes only with `sockjs_url`, and 304 for a matching If-None-Match."""
    page = IFRAME_TEMPLATE.format(sockjs_url=html.escape(config.sockjs.sockjs_url, quote=True))
    body = page.encode("utf-8")
    etag = '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'

    async def iframe(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304)
        return web.Response(body=body, content_type="text/html", charset="UTF-8",
                            headers={"ETag": etag, **cache_for_a_year()})

    return iframe


def trigger_handler(pushy: Pushy) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def trigger(request: web.Request) -> web.Response:
        """POST /pushy/channel/<channel>/trigger (PROTOCOL.md 4.2, 4.3), within
        config.limits: body size (413), channel name rules (400), replays (409, decided
        by the owning shard)."""
        front: Front = request.app[FRONT_KEY]
        try:
            body = await transports.read_bounded(request, front.config.limits.max_trigger_body)
        except BodyTooLarge as exc:
            front.breach("trigger_body", "refused a trigger body from "
                         f"{front.request_address(request)}")
            status, answer, headers = refused(front, exc)
        else:
            status, answer, headers = await trigger_answer(
                front, pushy, request.match_info["channel"], request.query, body,
                request.headers.get("Content-Type"))
        return transports.json_answer(answer, status, headers)

    return trigger


Answer = tuple[int, dict[str, Any], dict[str, str] | None]  # status, JSON body, headers


def refused(front: Front, exc: TriggerError) -> Answer:
    front.metrics.inc("pushy_triggers_total", (("status", str(exc.status)),))
    return exc.status, exc.body(), retry_after(exc)


async def trigger_answer(front: Front, pushy: Pushy, channel: str, query: Mapping[str, str],
                         body: bytes, content_type: str | None) -> Answer:
    """A Pushy trigger's answer, counted: the route's, and the front's own HTTP layer's
    (trigger_http.py)."""
    config = front.config
    try:
        pushy.check_trigger_channel(channel)
        verified = verify_trigger(
            channel=channel,
            query=query,
            body=body,
            content_type=content_type,
            secret=config.secret_key,
            now=time.time(),
            max_body=config.limits.max_trigger_body,
        )
        delivered = await pushy.trigger(verified)
    except TriggerError as exc:
        return refused(front, exc)
    code = 201 if delivered else 200
    front.metrics.inc("pushy_triggers_total", _CREATED if delivered else _OK)
    front.metrics.inc("pushy_bytes_in_total", _FROM_TRIGGER, len(body))
    return code, {"status": {"code": code, "message": "Ok"}}, None


def demo_page(config: Config) -> str:
    """The bundled demo, with the prefix filled in (and the secret only if it is the demo's)."""
    page = resources.files("pushy_shard.front").joinpath("static/demo.html").read_text("utf-8")
    secret = config.secret_key if config.demo_secret else ""
    return page.replace("{{PREFIX}}", json.dumps(config.sockjs.prefix)).replace(
        "{{SECRET}}", json.dumps(secret)
    )


def bare_405(prefix: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Under the SockJS prefix a wrong method gets 405 with `Allow` and no body or type
    (sockjs-protocol `verify405`)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[
            web.StreamResponse]]) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPMethodNotAllowed as exc:
            if not request.path.startswith(prefix):
                raise
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(
                exc.allowed_methods))})

    return middleware


def check_origin(front: Front, prefixes: tuple[str, ...]
                 ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Under the SockJS prefix (every transport, /info, iframe.html, both WebSocket paths)
    and the Pusher client routes, a browser Origin outside `allowed_origins` gets 403;
    same-origin requests (the page the server itself serves, the iframe transports) always
    pass. Counted as limit `origin`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[
            web.StreamResponse]]) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if (origin is not None and request.path.startswith(prefixes)
                and not origin_allowed(origin, front.config.allowed_origins)
                and not _same_origin(origin, request.host)):
            front.breach("origin", f"refused Origin {origin[:100]!r} from "
                         f"{front.request_address(request)}")
            return web.Response(status=403, text="Origin not allowed",
                                headers={"Cache-Control": NO_CACHE})
        return await handler(request)

    return middleware


def _same_origin(origin: str, host: str) -> bool:
    """`Origin: scheme://host[:port]` names the very host the request was sent to."""
    _, sep, rest = origin.strip().lower().partition("://")
    return bool(sep) and rest.rstrip("/") == host.lower()


def build_app(front: Front, pushy: Pushy, pusher: Pusher | None = None,
              sessions: Sessions | None = None, relay: Relay | None = None,
              closing: websocket.ClosingSockets | None = None) -> web.Application:
    """The front's routes: the SockJS service and the trigger API speak `pushy`, the Pusher
    routes `pusher`'s apps. `relay` (several fronts) sends session requests to their
    owner; `closing` is the port's registry of closing WebSockets (the Listener's)."""
    prefix = front.config.sockjs.prefix
    pusher = pusher if pusher is not None else Pusher(front)
    pusher_prefix = front.config.pusher_path_prefix
    browsers = (prefix, f"{pusher_prefix}/app/", f"{pusher_prefix}/pusher/")
    # bodies are read through request.content with the configured limits; this only bounds
    # aiohttp's own readers
    app = web.Application(client_max_size=front.config.limits.max_trigger_body + 1,
                          middlewares=[bare_405(prefix), check_origin(front, browsers)])
    app[FRONT_KEY] = front
    app[SESSIONS_KEY] = sessions if sessions is not None else Sessions(front, front.config.sockjs)
    closing = app[CLOSING_KEY] = closing if closing is not None else websocket.ClosingSockets()
    if relay is not None:
        app[RELAY_KEY] = relay
    iframe = iframe_handler(front.config)
    routes = [
        web.get(prefix, greeting),
        web.get(prefix + "/", greeting),
        web.get(prefix + "/info", info),
        web.options(prefix + "/info", transports.options("OPTIONS, GET")),
        web.get(prefix + "/iframe{version:[-0-9a-z_.]*}.html", iframe),
        web.get(prefix + "/websocket",
                websocket.handler(front, Kind.RAW_WS, lambda _: pushy, closing)),
        web.get(prefix + "/{server}/{session}/websocket",
                websocket.handler(front, Kind.SOCKJS_WS, lambda _: pushy, closing)),
        *transports.routes(prefix, lambda _: pushy),
        web.post("/pushy/channel/{channel}/trigger", trigger_handler(pushy)),
        *pusher_http.routes(pusher, pusher_prefix, closing),
        *observe.routes(),  # /metrics, /health (README, Observability)
    ]
    if front.config.demo:
        page = demo_page(front.config)

        async def demo(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html", charset="UTF-8")

        routes.append(web.get("/", demo))
    app.add_routes(routes)
    return app
