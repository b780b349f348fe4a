"""The SockJS 0.3.3 HTTP transports: aiohttp handlers for the session URLs.

`<prefix>/<server>/<session>/` + receiving: `xhr`, `xhr_streaming`, `eventsource`,
`htmlfile`, `jsonp`; sending: `xhr_send`, `jsonp_send`; CORS preflight (OPTIONS) for the
xhr family. Headers follow sockjs-protocol-0.3.3.py exactly (its `verify_cors`,
`verify_not_cached`, `verify_options`). What a session answers is decided by the table in
`core/session.py`; these handlers only shape HTTP around it: headers, the prelude of a
streaming response, waiting for the receiver to be done, and the end of the response.
A request for a session another front holds is relayed there (front/relay.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import HttpVersion11, web

from pushy_shard.core import protocol
from pushy_shard.core.frames import Kind
from pushy_shard.core.sockjs import (
    EVENTSOURCE_PRELUDE,
    XHR_STREAMING_PRELUDE,
    callback_name,
    decode_jsonp_send,
    decode_send_payload,
    htmlfile_prelude,
)
from pushy_shard.errors import ApiError, BodyTooLarge, SockJSRequestError, TriggerError
from pushy_shard.front.front import ClientProtocol, Front
from pushy_shard.front.relay import Relay
from pushy_shard.front.sessions import (
    HttpSession,
    PollingReceiver,
    Receiver,
    Sessions,
    StreamingReceiver,
)
from pushy_shard.front.websocket import FRONT_HEADER

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_CACHE = "no-store, no-cache, must-revalidate, max-age=0"  # sockjs-protocol 0.3.3, exactly
CACHE_FOR = 365 * 24 * 3600  # OPTIONS answers and iframe.html: cacheable for a year

FRONT_KEY = web.AppKey("front", Front)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
RELAY_KEY = web.AppKey("relay", Relay)


@dataclass(frozen=True, slots=True)
class Receiving:
    """One receiving transport: its Pushy `protocol` name and what its responses look like."""

    name: str
    kind: int
    method: str
    content_type: str
    streaming: bool
    callback: bool = False  # needs `?c=` (htmlfile, jsonp)
    cors: bool = True  # XHR-based and EventSource requests may be cross-origin


RECEIVING = {
    "xhr": Receiving("xhr-polling", Kind.XHR, "POST", "application/javascript", streaming=False),
    "xhr_streaming": Receiving("xhr-streaming", Kind.XHR, "POST", "application/javascript",
                               streaming=True),
    "eventsource": Receiving("eventsource", Kind.EVENTSOURCE, "GET", "text/event-stream",
                             streaming=True),
    "htmlfile": Receiving("htmlfile", Kind.HTMLFILE, "GET", "text/html", streaming=True,
                          callback=True, cors=False),
    "jsonp": Receiving("jsonp-polling", Kind.FRAME, "GET", "application/javascript",
                       streaming=False, callback=True, cors=False),
}


# -- headers ---------------------------------------------------------------------------------


def cors_headers(request: web.Request) -> dict[str, str]:
    """The Origin echoed (`*` without one, or for `null`: file:// pages), credentials
    allowed, and requested headers allowed (sockjs-protocol `verify_cors`)."""
    origin = request.headers.get("Origin")
    headers = {
        "Access-Control-Allow-Origin": origin if origin and origin != "null" else "*",
        "Access-Control-Allow-Credentials": "true",
        "Vary": "Origin",
    }
    requested = request.headers.get("Access-Control-Request-Headers")
    if requested:
        headers["Access-Control-Allow-Headers"] = requested
    return headers


def cache_for_a_year() -> dict[str, str]:
    return {
        "Cache-Control": f"public, max-age={CACHE_FOR}",
        "Expires": formatdate(time.time() + CACHE_FOR, usegmt=True),
    }


def session_cookie(request: web.Request, headers: dict[str, str]) -> None:
    """With `sockjs.jsessionid`, every session URL sets JSESSIONID (echoed, or `dummy`) so
    load balancers that stick on it keep a session's requests together."""
    if request.app[FRONT_KEY].config.sockjs.jsessionid:
        value = request.cookies.get("JSESSIONID") or "dummy"
        headers["Set-Cookie"] = f"JSESSIONID={value}; path=/"


def _headers(request: web.Request, content_type: str | None, cors: bool) -> dict[str, str]:
    headers = {"Cache-Control": NO_CACHE, FRONT_HEADER: str(request.app[FRONT_KEY].index)}
    if content_type is not None:
        headers["Content-Type"] = content_type + "; charset=UTF-8"
    if cors:
        headers.update(cors_headers(request))
    session_cookie(request, headers)
    return headers


def _error(request: web.Request, exc: SockJSRequestError, cors: bool) -> web.Response:
    return web.Response(status=500, text=exc.message, headers=_headers(request, None, cors))


def options(methods: str) -> Handler:
    """A CORS preflight answer: 204, cacheable for a year (sockjs-protocol `verify_options`)."""

    async def preflight(request: web.Request) -> web.StreamResponse:
        headers = {**cors_headers(request), **cache_for_a_year(),
                   "Access-Control-Allow-Methods": methods,
                   "Access-Control-Max-Age": str(CACHE_FOR)}
        session_cookie(request, headers)
        return web.Response(status=204, headers=headers)

    return preflight


# -- receiving -------------------------------------------------------------------------------


AdapterFor = Callable[[web.Request], ClientProtocol]


def receiving(spec: Receiving, adapter_for: AdapterFor) -> Handler:
    async def receive(request: web.Request) -> web.StreamResponse:
        relayed = await _relay(request, b"")
        if relayed is not None:
            return relayed
        callback = None
        if spec.callback:
            try:
                callback = callback_name(request.query.get("c", request.query.get("callback")))
            except SockJSRequestError as exc:
                return _error(request, exc, spec.cors)
        headers = _headers(request, spec.content_type, spec.cors)
        if spec.kind == Kind.FRAME:
            headers["X-Content-Type-Options"] = "nosniff"  # a jsonp answer is only a script
        adapter = adapter_for(request)
        if spec.streaming:
            return await _stream(request, spec, adapter, headers, callback)
        return await _poll(request, spec, adapter, headers, callback)

    return receive


async def _poll(request: web.Request, spec: Receiving, adapter: ClientProtocol,
                headers: dict[str, str], callback: str | None) -> web.StreamResponse:
    """xhr / jsonp: answer with the first frame the session has (now, or when it comes)."""
    receiver = PollingReceiver(spec.kind, asyncio.get_running_loop().create_future(), callback)
    session = _sessions(request).open(request.match_info["session"], spec.name, spec.kind,
                                      adapter, _address(request))
    session.attach(receiver)
    await _until_done(session, receiver)
    return web.Response(body=receiver.body, headers=headers)


async def _stream(request: web.Request, spec: Receiving, adapter: ClientProtocol,
                  headers: dict[str, str], callback: str | None) -> web.StreamResponse:
    """xhr_streaming / eventsource / htmlfile: headers and prelude through aiohttp, then the
    session's frames straight to the socket until the response is full or the session ends.
    HTTP/1.1 gets chunked encoding; HTTP/1.0 gets neither chunks nor a length, and the
    connection closes at the end."""
    response = web.StreamResponse(headers=headers)
    chunked = request.version >= HttpVersion11
    if chunked:
        response.enable_chunked_encoding()
    else:
        response.force_close()  # HTTP/1.0: the body ends when the connection does
    await response.prepare(request)
    if spec.kind == Kind.XHR:
        await response.write(XHR_STREAMING_PRELUDE)
    elif spec.kind == Kind.EVENTSOURCE:
        await response.write(EVENTSOURCE_PRELUDE)
    else:
        assert callback is not None
        await response.write(htmlfile_prelude(callback))
    socket = request.transport
    if socket is None or socket.is_closing():
        return response
    front = request.app[FRONT_KEY]
    receiver = StreamingReceiver(spec.kind, asyncio.get_running_loop().create_future(), socket,
                                 chunked, front.config.sockjs.response_limit,
                                 front.config.limits.slow_consumer_bytes)
    session = _sessions(request).open(request.match_info["session"], spec.name, spec.kind,
                                      adapter, _address(request))
    session.attach(receiver)
    await _until_done(session, receiver)
    if not receiver.slow:
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


async def _until_done(session: HttpSession, receiver: Receiver) -> None:
    """Wait for the receiver to be done; a dropped connection (aiohttp cancels the handler,
    `handler_cancellation`) aborts the session."""
    if receiver.done.done():
        return
    try:
        await receiver.done
    except asyncio.CancelledError:
        session.aborted(receiver)
        raise


# -- sending ---------------------------------------------------------------------------------


async def xhr_send(request: web.Request) -> web.StreamResponse:
    """Messages as a JSON array of strings; 204 (sockjs-protocol XhrPolling)."""
    body = await _read_body(request)
    relayed = await _relay(request, body)
    if relayed is not None:
        return relayed
    try:
        messages = decode_send_payload(body)
    except SockJSRequestError as exc:
        return _error(request, exc, cors=True)
    session = _sessions(request).get(request.match_info["session"])
    if session is None:
        raise web.HTTPNotFound()
    session.receive(messages)
    # text/plain even on a 204: Firefox takes a response without a type for XML
    return web.Response(status=204, headers=_headers(request, "text/plain", cors=True))


async def jsonp_send(request: web.Request) -> web.StreamResponse:
    """Messages in form field `d` (or the raw body); answers `ok` (Konqueror mishandles 204)."""
    body = await _read_body(request)
    relayed = await _relay(request, body)
    if relayed is not None:
        return relayed
    form = request.content_type == "application/x-www-form-urlencoded"
    try:
        messages = decode_jsonp_send(body, form)
    except SockJSRequestError as exc:
        return _error(request, exc, cors=False)
    session = _sessions(request).get(request.match_info["session"])
    if session is None:
        raise web.HTTPNotFound()
    session.receive(messages)
    return web.Response(body=b"ok", headers=_headers(request, "text/plain", cors=False))


# -- plumbing --------------------------------------------------------------------------------


def _sessions(request: web.Request) -> Sessions:
    return request.app[SESSIONS_KEY]


async def _relay(request: web.Request, body: bytes) -> web.StreamResponse | None:
    """The owner front's answer when another front holds this session, else None."""
    relay = request.app.get(RELAY_KEY)
    if relay is None:
        return None
    owner = relay.owner(request.match_info["session"], request)
    if owner is None:
        return None
    return await relay.forward(request, owner, body, _address(request))


def _address(request: web.Request) -> str:
    """The client's address; for a relayed request, the one the relaying front saw."""
    relay = request.app.get(RELAY_KEY)
    relayed = relay.client_address(request) if relay is not None else None
    return relayed or request.app[FRONT_KEY].request_address(request)


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """A request body of at most `limit` bytes; past it BodyTooLarge, read no further."""
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


async def _read_body(request: web.Request) -> bytes:
    """An xhr_send / jsonp_send body, at most limits.max_frame_bytes (like a WebSocket
    frame); past it 413, counted."""
    front = request.app[FRONT_KEY]
    limit = front.config.limits.max_frame_bytes
    try:
        return await read_bounded(request, limit)
    except BodyTooLarge:
        front.breach("frame_bytes", f"refused a {request.path.rsplit('/', 1)[-1]} body "
                     f"of {_address(request)}")
        raise web.HTTPRequestEntityTooLarge(limit, request.content_length or limit + 1
                                            ) from None


def routes(prefix: str, adapter_for: AdapterFor,
           transports: tuple[str, ...] = tuple(RECEIVING)) -> list[web.RouteDef]:
    """The session URLs `<prefix>/<server>/<session>/<transport>` of `transports` (and
    their sends), each new session speaking the protocol `adapter_for` gives for its
    first request. Server and session ids are any non-empty path segments without dots
    (sockjs-protocol SessionURLs)."""
    base = prefix + "/{server:[^/.]+}/{session:[^/.]+}/"
    table: list[web.RouteDef] = []
    for name, spec in RECEIVING.items():
        if name not in transports:
            continue
        if spec.method == "GET":
            table.append(web.get(base + name, receiving(spec, adapter_for), allow_head=False))
        else:  # the xhr family: cross-origin POSTs, preflighted
            table.append(web.post(base + name, receiving(spec, adapter_for)))
            table.append(web.options(base + name, options("OPTIONS, POST")))
    table += [
        web.post(base + "xhr_send", xhr_send),
        web.options(base + "xhr_send", options("OPTIONS, POST")),
    ]
    if "jsonp" in transports:
        table.append(web.post(base + "jsonp_send", jsonp_send))
    return table


def json_answer(answer: object, status: int = 200,
                headers: dict[str, str] | None = None) -> web.Response:
    """An HTTP API answer in the bytes the front's own trigger path writes (trigger_http):
    compact JSON, as the original's JSON.stringify wrote it (PROTOCOL.md 4.3)."""
    return web.Response(body=protocol.dumps(answer), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


def retry_after(error: TriggerError | ApiError) -> dict[str, str] | None:
    """The Retry-After header of a refusal that says when to try again."""
    return None if error.retry_after is None else {"Retry-After": str(error.retry_after)}
