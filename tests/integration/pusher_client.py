"""A small Pusher protocol client over a WebSocket (aiohttp), speaking the frames of PUSHER.md
exactly, for the integration tests; and the apps the test clusters serve. The real clients
(pusher-js, Laravel Echo, the server SDKs) are driven by tests/e2e and the SDK tests."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp

from tests.integration.harness import TIMEOUT, Cluster

KEY, SECRET, APP_ID = "app-key", "app-secret", "10"
APPS: list[dict[str, Any]] = [
    {"id": APP_ID, "key": KEY, "secret": SECRET, "client_events": True},
    {"id": "11", "key": "strict-key", "secret": "strict-secret", "user_authentication": True},
    {"id": "12", "key": "quota-key", "secret": "quota-secret", "max_connections": 1},
    {"id": "13", "key": "count-key", "secret": "count-secret", "subscription_count": True,
     "max_presence_members": 2},
    {"id": "14", "key": "quiet-key", "secret": "quiet-secret", "activity_timeout": 1},
]


def sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def decode(frame: str) -> dict[str, Any]:
    """A server frame with its (double-encoded) data decoded."""
    message: dict[str, Any] = json.loads(frame)
    data = message.get("data")
    if isinstance(data, str):
        try:
            message["data"] = json.loads(data)
        except ValueError:
            pass  # a trigger's data that is a plain string
    return message


class PusherClient:
    """One Pusher connection."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 key: str, secret: str) -> None:
        self.http = http
        self.ws = ws
        self.key = key
        self.secret = secret
        self.front = int(ws._response.headers.get("X-Pushy-Front", "-1"))
        self.socket_id = ""
        self.close_code: int | None = None

    @classmethod
    async def open(cls, cluster: Cluster, key: str = KEY, secret: str = SECRET,
                   query: str = "protocol=7&client=js&version=8.6.0&flash=false",
                   established: bool = True) -> PusherClient:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"ws://127.0.0.1:{cluster.port}/app/{key}?{query}",
                                   autoping=True)
        client = cls(http, ws, key, secret)
        if established:
            hello = await client.expect("pusher:connection_established")
            client.socket_id = hello["data"]["socket_id"]
        return client

    @classmethod
    async def on_front(cls, cluster: Cluster, front: int, **kwargs: Any) -> PusherClient:
        """A connection the kernel gave to front `front` (reconnecting until it does)."""
        for _ in range(200):
            client = await cls.open(cluster, **kwargs)
            if client.front == front:
                return client
            await client.close()
        raise AssertionError(f"no connection landed on front {front}")

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        message: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
        if channel is not None:
            message["channel"] = channel
        await self.ws.send_str(json.dumps(message))

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            self.close_code = self.ws.close_code
            raise ConnectionError(f"closed: {msg.type} {self.ws.close_code} {msg.extra!r}")
        return decode(msg.data)

    async def expect(self, event: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        message = await self.next(timeout)
        assert message.get("event") == event, f"expected {event}, got {message}"
        return message

    async def closed(self, timeout: float = TIMEOUT) -> tuple[int | None, list[dict[str, Any]]]:
        """Read until the server closes: its close code, and what came before."""
        before = []
        while True:
            try:
                before.append(await self.next(timeout))
            except ConnectionError:
                return self.close_code, before

    def auth(self, channel: str, channel_data: str | None = None) -> str:
        text = f"{self.socket_id}:{channel}" + (f":{channel_data}" if channel_data else "")
        return f"{self.key}:{sign(self.secret, text)}"

    async def subscribe(self, channel: str, user: dict[str, Any] | None = None,
                        auth: str | None = None) -> dict[str, Any]:
        """Subscribe (signed unless public, `user` as presence channel_data); the answer."""
        data: dict[str, Any] = {"channel": channel}
        channel_data = json.dumps(user) if user is not None else None
        if channel_data is not None:
            data["channel_data"] = channel_data
        if channel.startswith(("private-", "presence-")) or auth is not None:
            data["auth"] = auth if auth is not None else self.auth(channel, channel_data)
        await self.send("pusher:subscribe", data)
        return await self.next()

    async def nothing_pending(self) -> None:
        """Proves nothing was queued before this point: a ping's pong comes next."""
        await self.send("pusher:ping")
        await self.expect("pusher:pong")

    async def close(self) -> None:
        await self.ws.close()
        await self.http.close()
