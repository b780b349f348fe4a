"""Session affinity across fronts: a session request that reached the wrong front is relayed.

The kernel spreads TCP connections over the fronts by address (SO_REUSEPORT), not by URL,
so the requests of one SockJS HTTP session (its receiving request, its xhr_sends on other
connections, the stream it reopens) reach different fronts. Each session belongs to one
front, `owner_front(session_id)`; every other front passes the request on to the owner's
private endpoint (a unix socket beside the shard sockets, or a loopback port when
`link.transport` is tcp) and relays the answer back as it comes, streams included. A
request that arrived on a private endpoint is never relayed again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from pushy_shard.core.config import Config, link_endpoints
from pushy_shard.core.session import owner_front

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
CLIENT_HEADER = "X-Pushy-Client"  # the client's address, from the front that relayed it
# per-connection headers (RFC 9110 7.6.1), and what aiohttp recomputes on each side
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host",
    "content-length", "accept-encoding", "date", "server",
})


def private_endpoint(config: Config, index: int, directory: str) -> str | tuple[str, int]:
    """Where front `index` takes relayed requests: `front-<index>.sock` beside the shard
    sockets, or with `link.transport` tcp the loopback port right after the shard ports
    (parse_config already checked the whole range)."""
    return link_endpoints(config, directory).relays[index]


def _end_to_end(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The headers a relay passes on (every value of a repeated one, like Set-Cookie)."""
    return CIMultiDict(
        (name, value) for name, value in headers.items() if name.lower() not in _HOP_BY_HOP
    )


class Relay:
    """This front's private endpoint and its clients to the other fronts' endpoints."""

    def __init__(self, config: Config, index: int, directory: str) -> None:
        self.index = index
        self.fronts = config.fronts
        self.endpoints = list(link_endpoints(config, directory).relays)
        self._clients: dict[int, aiohttp.ClientSession] = {}
        self._site: web.BaseSite | None = None

    def owner(self, session_id: str, request: web.Request) -> int | None:
        """The front to relay this session request to, or None to serve it here."""
        owner = owner_front(session_id, self.fronts)
        if owner == self.index or self.relayed(request):
            return None
        return owner

    def client_address(self, request: web.Request) -> str | None:
        """The client address the relaying front sent, for a request that came in on this
        front's private endpoint; None for any other request."""
        return request.headers.get(CLIENT_HEADER) if self.relayed(request) else None

    def relayed(self, request: web.Request) -> bool:
        """True when the request came in on this front's private endpoint."""
        transport = request.transport
        if transport is None:
            return False
        sockname = transport.get_extra_info("sockname")
        own = self.endpoints[self.index]
        if isinstance(own, str):
            return isinstance(sockname, str) and sockname == own
        return isinstance(sockname, tuple) and tuple(sockname[:2]) == own

    async def start(self, runner: web.AppRunner) -> None:
        """Listen on the private endpoint (a stale socket file of an earlier run is removed)."""
        own = self.endpoints[self.index]
        if isinstance(own, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(own)
            self._site = web.UnixSite(runner, own)
        else:
            self._site = web.TCPSite(runner, own[0], own[1], reuse_address=True)
        await self._site.start()

    async def close(self) -> None:
        """After the runner stopped every site: close the clients, remove the socket file."""
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        own = self.endpoints[self.index]
        if isinstance(own, str):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(own)

    def _client(self, owner: int) -> aiohttp.ClientSession:
        client = self._clients.get(owner)
        if client is None:
            target = self.endpoints[owner]
            connector: aiohttp.BaseConnector
            if isinstance(target, str):
                connector = aiohttp.UnixConnector(path=target, limit=0)
            else:
                connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
            client = self._clients[owner] = aiohttp.ClientSession(
                connector=connector, timeout=timeout, auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
        return client

    def _url(self, owner: int, raw_path: str) -> URL:
        target = self.endpoints[owner]
        authority = f"front-{owner}" if isinstance(target, str) else f"{target[0]}:{target[1]}"
        return URL(f"http://{authority}{raw_path}", encoded=True)

    async def get(self, front: int, path: str, timeout: float) -> bytes:
        """GET `path` from another front's private endpoint (its /metrics snapshot); raises
        TimeoutError, aiohttp.ClientError or OSError when it does not answer 200 in time."""
        return await self._call("GET", front, path, None, timeout)

    async def post(self, front: int, path: str, body: bytes, timeout: float) -> bytes:
        """POST `body` to `path` of another front's private endpoint (a terminate order);
        raises as `get` does."""
        return await self._call("POST", front, path, body, timeout)

    async def _call(self, method: str, front: int, path: str, body: bytes | None,
                    timeout: float) -> bytes:
        url = self._url(front, path)
        async with self._client(front).request(
                method, url, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            response.raise_for_status()
            return await response.read()

    async def forward(self, request: web.Request, owner: int, body: bytes,
                      client: str | None = None) -> web.StreamResponse:
        """Send `request` (with its already read `body`) to front `owner`; relay the answer.
        `client` (the client's address) travels in CLIENT_HEADER, believed only on the
        private endpoint (`client_address`)."""
        headers = _end_to_end(request.headers)
        headers.popall(CLIENT_HEADER, None)
        if client is not None:
            headers[CLIENT_HEADER] = client
        try:
            upstream = await self._client(owner).request(
                request.method, self._url(owner, request.raw_path), headers=headers,
                data=body or None, allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("front %d: cannot relay to front %d: %s", self.index, owner, exc)
            return web.Response(status=503, text="Front unavailable, try again.")
        try:
            headers = _end_to_end(upstream.headers)
            if "Content-Length" in upstream.headers or upstream.status in (204, 304):
                data = await upstream.read()
                return web.Response(status=upstream.status, body=data or None, headers=headers)
            response = web.StreamResponse(status=upstream.status, headers=headers)
            if request.version >= aiohttp.HttpVersion11:
                response.enable_chunked_encoding()
            else:
                response.force_close()  # HTTP/1.0: the body ends when the connection does
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except ConnectionError:  # the client went away: drop the owner's side too
                upstream.close()
            return response
        except BaseException:
            upstream.close()  # the owner sees this connection drop, as the client's did
            raise
        finally:
            upstream.release()
