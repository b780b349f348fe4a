"""Real processes on a free port, and a small Pushy client over the SockJS websocket transport.

`Cluster` runs `python -m pushy_shard CONFIG` (the supervisor, all shards and fronts) and
follows its log, so tests wait for log lines (events) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from pushy_shard.bench.ports import PORT_ATTEMPTS, PORT_TAKEN, free_port

SECRET = "secret"
PREFIX = "/pushy/socket"
TIMEOUT = 10.0


class PortTaken(AssertionError):
    """The server lost its port to another process before it could bind it."""


_T = TypeVar("_T")


def on_free_port(launch: Callable[[], _T]) -> _T:
    """`launch()` picks its ports anew each time and waits until the server serves; when it
    lost a port (PortTaken) it stops what it started and raises, and is tried again."""
    for _ in range(PORT_ATTEMPTS):
        try:
            return launch()
        except PortTaken:
            continue
    raise AssertionError(f"lost the port to another process {PORT_ATTEMPTS} times")


def write_config(directory: Path, **overrides: Any) -> Path:
    config: dict[str, Any] = {
        "port": free_port(),
        "host": "127.0.0.1",
        "secretKey": SECRET,
        "workers": 3,
        "fronts": 2,
        "sockjs": {"prefix": PREFIX, "heartbeat_delay": 25, "disconnect_delay": 5},
        # ipc paths must stay short (about 100 bytes): a folder of its own under /tmp
        "link": {"transport": "ipc", "directory": tempfile.mkdtemp(prefix="ps-", dir="/tmp")},
    }
    config.update(overrides)
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path


class LogFollower:
    """Collects a process's output lines; waiters block until a matching line appears."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<eof>")
            self._cond.notify_all()

    def wait_for(self, pattern: str, count: int = 1, start: int = 0,
                 timeout: float = TIMEOUT, fail: str | None = None) -> list[re.Match[str]]:
        """`count` lines matching `pattern` (from line `start`); a line matching `fail`
        first raises PortTaken when it is PORT_TAKEN, else AssertionError."""
        regex = re.compile(pattern)
        failure = re.compile(fail) if fail is not None else None
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for line in self.lines[start:] if (m := regex.search(line))]
                if len(found) >= count:
                    return found
                if failure is not None and any(map(failure.search, self.lines[start:])):
                    tail = "\n".join(self.lines[-20:])
                    error = PortTaken if fail == PORT_TAKEN else AssertionError
                    raise error(f"{fail!r} in log before {pattern!r}:\n{tail}")
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] == "<eof>"):
                    tail = "\n".join(self.lines[-40:])
                    raise TimeoutError(f"no {count}x {pattern!r} in log; last lines:\n{tail}")
                self._cond.wait(left)

    @property
    def mark(self) -> int:
        with self._cond:
            return len(self.lines)


class Cluster:
    """The whole server as `pushy-shard config.json` runs it."""

    def __init__(self, directory: Path, **overrides: Any) -> None:
        def launch() -> None:
            self._launch(directory, overrides)
            try:
                self.wait_ready()
            except PortTaken:
                self.stop()
                if "port" in overrides:  # the test's own port: nothing to retry with
                    raise AssertionError(f"port {self.port} is taken") from None
                raise

        on_free_port(launch)

    def _launch(self, directory: Path, overrides: dict[str, Any]) -> None:
        """One attempt; an override may be a function, called anew for each attempt (link
        ports of their own, say)."""
        resolved = {k: v() if callable(v) else v for k, v in overrides.items()}
        self.config_path = write_config(directory, **resolved)
        self.config = json.loads(self.config_path.read_text())
        self.port = self.config["port"]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.secret = SECRET
        self.prefix = PREFIX
        self.fronts = self.config["fronts"]
        self.workers = self.config["workers"]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("PORT", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pushy_shard", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )
        self.log = LogFollower(self.process.stdout)

    def wait_ready(self, start: int = 0) -> None:
        self.log.wait_for(r"front \d+/\d+ ready", count=self.fronts, start=start,
                          fail=PORT_TAKEN)
        self.log.wait_for(r"hooks listening on", start=start, fail=PORT_TAKEN)

    def pid(self, role: str, index: int) -> int:
        """The current pid of a child, from the supervisor's log."""
        matches = self.log.wait_for(rf"{role} {index} started \(pid (\d+)\)")
        return int(matches[-1].group(1))

    def kill(self, role: str, index: int) -> int:
        """SIGKILL one child; returns the log mark to wait for its successor from."""
        mark = self.log.mark
        os.kill(self.pid(role, index), signal.SIGKILL)
        return mark

    def wait_restarted(self, role: str, index: int, mark: int) -> int:
        match = self.log.wait_for(rf"{role} {index} started \(pid (\d+)\)", start=mark)
        return int(match[0].group(1))

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:  # the supervisor itself kills what is left at shutdown_timeout
                self.process.wait(timeout=self.config.get("shutdown_timeout", 10) + 10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.config["link"]["directory"], ignore_errors=True)
        return self.process.returncode

    # -- clients ---------------------------------------------------------------------------

    def ws_url(self) -> str:
        server = f"{secrets.randbelow(1000):03d}"
        return f"ws://127.0.0.1:{self.port}{self.prefix}/{server}/{secrets.token_hex(4)}/websocket"

    async def client(self, front: int | None = None, session: aiohttp.ClientSession | None = None
                     ) -> PushyClient:
        """A connected client; with `front`, reconnect until the kernel puts it on that one."""
        for _ in range(200):
            client = await PushyClient.connect(self.ws_url(), session)
            if front is None or client.front == front:
                return client
            await client.close()
        raise AssertionError(f"could not land a connection on front {front}")

    async def trigger(self, channel: str, event: str, data: Any = None, *,
                      socket_id: str | None = None, form: str | None = None,
                      timestamp: int | None = None, key: str | None = None
                      ) -> tuple[int, Any]:
        """A signed trigger: JSON body `data`, or a form body `form` signed as `data`."""
        status, answer, _ = await self.trigger_full(channel, event, data, socket_id=socket_id,
                                                    form=form, timestamp=timestamp, key=key)
        return status, answer

    async def trigger_full(self, channel: str, event: str, data: Any = None, *,
                           socket_id: str | None = None, form: str | None = None,
                           timestamp: int | None = None, key: str | None = None
                           ) -> tuple[int, Any, dict[str, str]]:
        """`trigger`, with the answer's headers."""
        ts = int(time.time()) if timestamp is None else timestamp
        if form is not None:
            body, content_type = form.encode(), "application/x-www-form-urlencoded"
        else:
            body = json.dumps(data if data is not None else {}, ensure_ascii=False,
                              separators=(",", ":")).encode()
            content_type = "application/json"
        canon = json.dumps(data if data is not None else {}, ensure_ascii=False,
                           separators=(",", ":"))
        if key is None:
            key = sign(f"{channel.lower()}:{event}:{ts}:{canon}:{self.secret}")
        query = {"event": event, "timestamp": str(ts), "auth_key": key}
        if socket_id:
            query["socket_id"] = socket_id
        url = (f"{self.base_url}/pushy/channel/{urllib.parse.quote(channel, safe='')}/trigger?"
               + urllib.parse.urlencode(query))
        async with aiohttp.ClientSession() as http, http.post(
            url, data=body, headers={"Content-Type": content_type}
        ) as response:
            return (response.status, await response.json(content_type=None),
                    dict(response.headers))


def sign(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def channel_token(socket_id: str, channel: str, data: str | None = None) -> str:
    parts = [socket_id, channel.lower()]
    if data is not None:
        parts.append(json.dumps(data, ensure_ascii=False))
    return sign(":".join([*parts, SECRET]))


class PushyClient:
    """One SockJS websocket session speaking Pushy."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 own_session: bool) -> None:
        self.session = session
        self.ws = ws
        self.own_session = own_session
        self.front = int(ws._response.headers.get("X-Pushy-Front", "-1"))
        self.inbox: list[dict[str, Any]] = []
        self.socket_id = ""
        self.closed_with: str | None = None  # the SockJS close frame
        self.ws_closed: tuple[int | None, str] | None = None  # the WebSocket close

    @classmethod
    async def connect(cls, url: str, session: aiohttp.ClientSession | None = None
                      ) -> PushyClient:
        own = session is None
        http = session or aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, autoping=True)
        except BaseException:  # a server that is down (a killed instance in the soaks)
            if own:
                await http.close()
            raise
        client = cls(http, ws, own)
        opening = await client._frame()
        assert opening == "o", opening
        connect = await client.expect("pushy:connect")
        client.socket_id = connect["data"]["socketId"]
        assert connect["data"]["protocol"] == "websocket"
        return client

    async def _frame(self, timeout: float = TIMEOUT) -> str:
        msg = await self.ws.receive(timeout=timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            if self.ws_closed is None and msg.type in (aiohttp.WSMsgType.CLOSE,
                                                       aiohttp.WSMsgType.CLOSED):
                self.ws_closed = (self.ws.close_code, str(msg.extra or ""))
            raise ConnectionError(f"websocket closed: {msg.type} {msg.data!r}")
        return str(msg.data)

    async def until_closed(self) -> tuple[str | None, tuple[int | None, str]]:
        """Read until the server closes: its SockJS close frame (None if it sent none) and
        its WebSocket close code and reason. The close is answered as a browser answers it
        (aiohttp's client does so on reading it); the server waits a while for one that
        does not."""
        with contextlib.suppress(ConnectionError):
            while True:
                await self.next()
        while self.ws_closed is None:  # the SockJS close frame came first
            with contextlib.suppress(ConnectionError):
                await self._frame()
        return self.closed_with, self.ws_closed

    def send(self, command: str, data: Any = None, raw: str | None = None) -> Any:
        message = raw if raw is not None else json.dumps({"command": command, "data": data or {}})
        return self.ws.send_str(json.dumps([message]))

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next Pushy message (heartbeats skipped)."""
        while not self.inbox:
            frame = await self._frame(timeout)
            if frame.startswith("a"):
                self.inbox.extend(json.loads(text) for text in json.loads(frame[1:]))
            elif frame.startswith("c"):
                self.closed_with = frame
                raise ConnectionError(f"session closed: {frame}")
        return self.inbox.pop(0)

    async def expect(self, event: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next message must be `event` (with `fields` matching in its data)."""
        message = await self.next(timeout)
        assert message.get("event") == event, f"expected {event}, got {message}"
        for name, value in fields.items():
            assert message["data"].get(name) == value, f"{name}: {message}"
        return message

    async def call(self, command: str, data: Any, reply: str, **fields: Any) -> dict[str, Any]:
        await self.send(command, data)
        return await self.expect(reply, **fields)

    async def subscribe(self, channel: str, **extra: Any) -> dict[str, Any]:
        return await self.call("subscribe", {"channel": channel, **extra},
                               "pushy:subscription-success")

    async def nothing_pending(self) -> None:
        """Proves no message was queued before this point: an unknown command's reply is next."""
        await self.send("no-such-command", {})
        await self.expect("pushy:error", code="200")

    async def close(self) -> None:
        await self.ws.close()
        if self.own_session:
            await self.session.close()


def iter_children(cluster: Cluster) -> Iterator[tuple[str, int]]:
    yield "hooks", 0
    for j in range(cluster.workers):
        yield "shard", j
    for i in range(cluster.fronts):
        yield "front", i
