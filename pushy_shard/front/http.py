"""The front's HTTP surface: SockJS greeting/info/iframe, the trigger API, the demo page.

PROTOCOL.md 1 and 4; the WebSocket transports live in `websocket.py`.
"""

from __future__ import annotations

import html
import json
import random
import time
from importlib import resources

from aiohttp import web

from pushy_shard.core.config import Config
from pushy_shard.core.protocol import MAX_CHANNEL_LENGTH
from pushy_shard.core.trigger import verify_trigger
from pushy_shard.errors import BodyTooLarge, InvalidBody, TriggerError
from pushy_shard.front import websocket
from pushy_shard.front.front import Front
from pushy_shard.front.hub import RAW_WS, SOCKJS_WS

MAX_TRIGGER_BODY = 64 * 1024
NO_CACHE = "no-store, no-cache, no-transform, must-revalidate, max-age=0"

FRONT_KEY = web.AppKey("front", Front)

IFRAME_TEMPLATE = """<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{sockjs_url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"""


def _cors(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    response.headers["Access-Control-Allow-Origin"] = origin if origin else "*"
    response.headers["Access-Control-Allow-Credentials"] = "true"
    return response


async def greeting(request: web.Request) -> web.Response:
    return web.Response(text="Welcome to SockJS!\n", content_type="text/plain", charset="UTF-8")


async def info(request: web.Request) -> web.StreamResponse:
    config: Config = request.app[FRONT_KEY].config
    body = {
        "websocket": config.sockjs.websocket,
        "origins": ["*:*"],
        "cookie_needed": config.sockjs.jsessionid,
        "entropy": random.randint(0, 2**32 - 1),
    }
    response = web.Response(text=json.dumps(body), content_type="application/json",
                            charset="UTF-8", headers={"Cache-Control": NO_CACHE})
    return _cors(request, response)


async def iframe(request: web.Request) -> web.Response:
    config: Config = request.app[FRONT_KEY].config
    page = IFRAME_TEMPLATE.format(sockjs_url=html.escape(config.sockjs.sockjs_url, quote=True))
    return web.Response(text=page, content_type="text/html", charset="UTF-8",
                        headers={"Cache-Control": "public, max-age=31536000"})


async def sockjs_websocket(request: web.Request) -> web.StreamResponse:
    front: Front = request.app[FRONT_KEY]
    if not front.config.sockjs.websocket:
        raise web.HTTPNotFound()
    return await websocket.serve(request, front, SOCKJS_WS)


async def raw_websocket(request: web.Request) -> web.StreamResponse:
    front: Front = request.app[FRONT_KEY]
    if not front.config.sockjs.websocket:
        raise web.HTTPNotFound()
    return await websocket.serve(request, front, RAW_WS)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def trigger(request: web.Request) -> web.Response:
    """POST /pushy/channel/<channel>/trigger (PROTOCOL.md 4.2, 4.3)."""
    front: Front = request.app[FRONT_KEY]
    try:
        body = await _read_limited(request, MAX_TRIGGER_BODY)
        channel = request.match_info["channel"]
        if len(channel) > MAX_CHANNEL_LENGTH:
            raise InvalidBody(f"Channel name longer than {MAX_CHANNEL_LENGTH} characters")
        verified = verify_trigger(
            channel=channel,
            query=request.query,
            body=body,
            content_type=request.headers.get("Content-Type"),
            secret=front.config.secret_key,
            now=time.time(),
            max_body=MAX_TRIGGER_BODY,
        )
        delivered = await front.trigger(verified)
    except TriggerError as exc:
        return web.json_response(exc.body(), status=exc.status)
    code = 201 if delivered else 200
    return web.json_response({"status": {"code": code, "message": "Ok"}}, status=code)


def demo_page(config: Config) -> str:
    """The bundled demo, with the prefix filled in (and the secret only if it is the demo's)."""
    page = resources.files("pushy_shard.front").joinpath("static/demo.html").read_text("utf-8")
    secret = config.secret_key if config.demo_secret else ""
    return page.replace("{{PREFIX}}", json.dumps(config.sockjs.prefix)).replace(
        "{{SECRET}}", json.dumps(secret)
    )


def build_app(front: Front) -> web.Application:
    app = web.Application(client_max_size=MAX_TRIGGER_BODY + 1)
    app[FRONT_KEY] = front
    prefix = front.config.sockjs.prefix
    routes = [
        web.get(prefix, greeting),
        web.get(prefix + "/", greeting),
        web.get(prefix + "/info", info),
        web.get(prefix + "/iframe.html", iframe),
        web.get(prefix + "/iframe{version:-[^/.]*}.html", iframe),
        web.get(prefix + "/websocket", raw_websocket),
        web.get(prefix + "/{server}/{session}/websocket", sockjs_websocket),
        web.post("/pushy/channel/{channel}/trigger", trigger),
    ]
    if front.config.demo:
        page = demo_page(front.config)

        async def demo(request: web.Request) -> web.Response:
            return web.Response(text=page, content_type="text/html", charset="UTF-8")

        routes.append(web.get("/", demo))
    app.add_routes(routes)
    return app
