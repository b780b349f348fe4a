"""An app server's webhook endpoint for the tests: every post is checked with the official
Python SDK's `validate_webhook` (signature, key, time_ms), and it can answer 500 a few
times, answer slowly, or be down, so retries, the post deadline and the queue bound show."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pusher
from aiohttp import web

from tests.integration.harness import TIMEOUT


@dataclass
class Post:
    """One post as it arrived: who signed it, what it said, what we answered."""

    key: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int
    raw: str  # the body as it came, for other checkers of the signature


@dataclass
class Receiver:
    """Secrets by app key; the next `fail` posts get a 500 (and with `fail_every` N, every
    Nth post too); each post waits `delay` seconds."""

    secrets: dict[str, str]
    fail: int = 0
    fail_every: int = 0
    delay: float = 0.0
    posts: list[Post] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (key, event) of 2xx
    invalid: list[str] = field(default_factory=list)
    port: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.post("/hooks", self._handle)])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        if not self.port:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Down: connections are refused until `start` again (same port)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        key = request.headers.get("X-Pusher-Key", "")
        secret = self.secrets.get(key)
        valid = None
        if secret is not None:
            client = pusher.Pusher(app_id="1", key=key, secret=secret)
            valid = client.validate_webhook(key, request.headers.get("X-Pusher-Signature", ""),
                                            raw.decode())
        if valid is None or request.headers.get("Content-Type") != "application/json":
            self.invalid.append(raw.decode(errors="replace"))
        if self.delay:
            await asyncio.sleep(self.delay)
        status = 200
        if self.fail > 0:
            self.fail -= 1
            status = 500
        elif self.fail_every and (len(self.posts) + 1) % self.fail_every == 0:
            status = 500
        body = json.loads(raw)
        self.posts.append(Post(key, body, dict(request.headers), status, raw.decode()))
        if status == 200:
            self.events += [(key, event) for event in body["events"]]
        self._changed.set()
        return web.Response(status=status, text="ok" if status == 200 else "no")

    async def until(self, done: Callable[[Receiver], bool], timeout: float = TIMEOUT) -> None:
        """Wait until `done(self)` holds (checked at every post)."""
        async def wait() -> None:
            while not done(self):
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"webhooks received: {self.events}") from None

    def named(self, *names: str) -> list[dict[str, Any]]:
        """The delivered events with these names, in order, without their key."""
        return [event for _, event in self.events if event["name"] in names]
