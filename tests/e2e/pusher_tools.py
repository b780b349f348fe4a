"""Helpers of the Pusher end-to-end tests: pusher-js, Laravel Echo and the `pusher` SDKs.

- `Lines`: a `tools.LineClient` whose lines are read per stream: a stream is a line `type`,
  and for lines naming a channel, that type on that channel. The server orders what it
  sends on one channel, not across channels (they may live on different shards), so a test
  takes the lines of one stream strictly in order and lets the streams interleave freely.
- `PusherNode`: pusher_node.js, one pusher-js connection in Node with the npm `pusher` SDK as
  its app server (channel and user authorization in pusher-js's customHandler, triggers).
- `python_sdk`: the Python SDK (`pusher` on PyPI) for a cluster.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from typing import Any

import pusher

from tests.e2e import tools
from tests.e2e.conftest import NodeTools
from tests.integration.harness import Cluster
from tests.integration.pusher_client import APP_ID, KEY, SECRET, sign

TRANSPORTS = ["ws", "xhr_streaming", "xhr_polling"]

# Non-ASCII of every width, as tools.EVENT_DATA (U+2028 included: JSON allows it raw).
EVENT_DATA = tools.EVENT_DATA


def python_sdk(cluster: Cluster) -> pusher.Pusher:
    return pusher.Pusher(app_id=APP_ID, key=KEY, secret=SECRET, host="127.0.0.1",
                         port=cluster.port, ssl=False)


def channel_auth(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """PUSHER.md 3: `<key>:` + HMAC-SHA256(secret, `<socket_id>:<channel>[:<data>]`)."""
    text = f"{socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
    return f"{KEY}:{sign(SECRET, text)}"


def user_auth(socket_id: str, user_data: str) -> str:
    return f"{KEY}:{sign(SECRET, f'{socket_id}::user::{user_data}')}"


class Lines(tools.LineClient):
    """A LineClient read per stream (see the module docstring); "fatal" fails any wait."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._streams: dict[tuple[str, str | None], int] = {}

    def _next_of(self, kind: str, channel: str | None, timeout: float) -> dict[str, Any]:
        stream = (kind, channel)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(self._streams.get(stream, 0), len(self.events)):
                    line = self.events[index]
                    if line.get("type") == "fatal":
                        raise AssertionError(f"{self.name}: {line['error']}\n{self.report()}")
                    if line.get("type") == kind and (channel is None
                                                     or line.get("channel") == channel):
                        self._streams[stream] = index + 1
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(left)
        why = "exited" if self._eof else f"sent no {kind} line for {timeout:.0f} s"
        where = f" on {channel}" if channel else ""
        raise AssertionError(f"{self.name} {why}{where}\n{self.report()}")

    def take(self, kind: str, /, timeout: float = tools.TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next line of stream `kind` (on `channel=` if given): it must match `fields`."""
        line = self._next_of(kind, fields.get("channel"), timeout)
        for key, value in fields.items():
            assert line.get(key) == value, (
                f"{self.name}: {key} != {value!r} in {line}\n{self.report()}")
        return line

    def until(self, kind: str, /, timeout: float = tools.TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The first line of stream `kind` matching `fields`, skipping the others."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._next_of(kind, fields.get("channel"), max(0.0, deadline - time.monotonic()))
            if all(line.get(key) == value for key, value in fields.items()):
                return line

    def command(self, op: str, **args: Any) -> None:
        self._write({"op": op, **args})

    def exited(self, timeout: float = tools.TIMEOUT) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{self.name} did not exit\n{self.report()}") from exc


class PusherNode(Lines):
    """pusher_node.js: one pusher-js connection (Node build) and the npm SDK beside it."""

    _ids = itertools.count(1)

    def __init__(self, node_tools: NodeTools, cluster: Cluster, transport: str, name: str,
                 **config: Any) -> None:
        settings = {"port": cluster.port, "key": KEY, "secret": SECRET, "appId": APP_ID,
                    "transport": transport, **config}
        super().__init__([node_tools.node, str(tools.HERE / "pusher_node.js"),
                          json.dumps(settings)], node_tools.env(), name, cluster)
        self.transport = transport
        self.socket_id = ""
        self.front: int | None = None

    def connected(self, timeout: float = tools.TIMEOUT) -> str:
        """Waits for state "connected"; returns the socket id (front: `self.front`)."""
        state = self.until("state", timeout, current="connected")
        self.socket_id = state["socket_id"]
        self.front = state["front"]
        assert isinstance(self.front, int), f"no X-Pushy-Front seen: {state}\n{self.report()}"
        return self.socket_id

    def subscribe(self, channel: str) -> dict[str, Any]:
        """Subscribes; returns pusher:subscription_succeeded's data (presence: the members)."""
        self.command("subscribe", channel=channel)
        succeeded = self.take("event", channel=channel, event="pusher:subscription_succeeded")
        data: dict[str, Any] = succeeded["data"]
        return data

    def event(self, channel: str, event: str, timeout: float = tools.TIMEOUT) -> Any:
        """The next event on `channel` must be `event`: its data."""
        return self.take("event", timeout, channel=channel, event=event)["data"]

    def sdk(self, method: str, *args: Any) -> dict[str, Any]:
        """An npm SDK call made in the driver; its answer line."""
        call = next(self._ids)
        self.command("sdk", id=call, method=method, args=list(args))
        return self.take("sdk", id=call)

    def sdk_ok(self, method: str, *args: Any) -> Any:
        """An npm SDK HTTP call that must answer 200: its JSON body."""
        answer = self.sdk(method, *args)
        assert answer.get("status") == 200 and "error" not in answer, (
            f"{self.name}: {method} failed: {answer}\n{self.report()}")
        return answer["body"]

    def close(self, timeout: float = tools.TIMEOUT) -> dict[str, Any]:  # type: ignore[override]
        """pusher.disconnect(), then the process exits."""
        self.command("close")
        state = self.until("state", timeout, current="disconnected")
        assert self.exited(timeout) == 0, self.report()
        return state
