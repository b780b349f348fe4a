"""End-to-end helpers: the real sockjs-client (and pusher-js, Laravel Echo: pusher_tools.py),
in Node and in headless Chromium.

- `unavailable(reason)`: the one place that decides skip-or-fail. A missing tool (Node, npm,
  Chromium) or a failed npm install skips the test on a developer machine, with a line saying
  how to enable it; under CI (`CI` set, as `.ci/run` runs) it fails instead: CI never skips.
- `node_modules()`: installs tests/e2e/package.json (+ package-lock.json, every version pinned)
  with `npm ci` into a cache folder, once per lock-file content: `$PUSHY_E2E_CACHE`, else
  `$XDG_CACHE_HOME/pushy-shard-e2e`, else `~/.cache/pushy-shard-e2e`.
- `LineClient`: a Node process (node_client.js, browser_driver.js; pusher_node.js and
  echo_driver.js through pusher_tools.Lines) speaking JSON lines: events out, commands in.
  Tests wait on its lines with timeouts, never sleep.
- `StaticServer`: serves the browser page, its script and sockjs-client's dist file on a
  loopback port of its own (another origin than the Pushy server); optionally POST routes
  (the Echo page's auth endpoint).
"""

from __future__ import annotations

import asyncio
import email.message
import fcntl
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.integration.harness import Cluster

HERE = Path(__file__).resolve().parent
NODE_MIN = 20  # playwright-core 1.65 needs Node >= 20 (sockjs-client alone: >= 12)
TIMEOUT = 15.0  # one step of a scenario (connect, a reply, an event)
# A polling or streaming session without a live request survives `disconnect_delay` (5 s in
# the test clusters): a disconnect is seen that much later, plus a poll period.
DISCONNECT_TIMEOUT = 25.0

NODE_HINT = "install Node.js >= 20 with npm to run the e2e tests (CI installs them in .ci/run)"
CHROMIUM_HINT = ("install Chromium (`apt-get install chromium`, or set PUSHY_E2E_CHROMIUM to "
                 "its path) to run the browser e2e tests (CI installs it in .ci/run)")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip (developer machine) or fail (CI) a test whose tools are missing."""
    if in_ci():
        pytest.fail(f"{reason} [CI is set: e2e tests must run, not skip]", pytrace=False)
    pytest.skip(reason)


# -- tools -------------------------------------------------------------------------------------


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable(f"node not found: {NODE_HINT}")
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable(f"`node --version` failed ({exc}): {NODE_HINT}")
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < NODE_MIN:
        unavailable(f"node {version} is too old: {NODE_HINT}")
    return node


def find_npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        unavailable(f"npm not found: {NODE_HINT}")
    return npm


def find_chromium() -> str:
    explicit = os.environ.get("PUSHY_E2E_CHROMIUM")
    if explicit:
        candidates = [explicit]
    else:
        candidates = ["/usr/bin/chromium", shutil.which("chromium") or "",
                      shutil.which("chromium-browser") or ""]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    unavailable(f"chromium not found: {CHROMIUM_HINT}")


def cache_dir() -> Path:
    explicit = os.environ.get("PUSHY_E2E_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pushy-shard-e2e"


def node_modules(npm: str) -> Path:
    """tests/e2e's pinned npm packages, installed into the cache folder (once per lock file)."""
    manifest = [HERE / "package.json", HERE / "package-lock.json"]
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in manifest)).hexdigest()
    root = cache_dir()
    modules = root / "node_modules"
    stamp = root / "installed.sha256"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs at once install once
        if stamp.exists() and stamp.read_text() == digest and modules.is_dir():
            return modules
        for path in manifest:
            shutil.copyfile(path, root / path.name)
        stamp.unlink(missing_ok=True)
        env = dict(os.environ, npm_config_update_notifier="false",
                   PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=root, env=env,
                capture_output=True, text=True, timeout=240,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            unavailable(f"npm ci in {root} failed ({exc}): the e2e tests need the npm registry "
                        "once, to fill that cache")
        if done.returncode != 0:
            tail = (done.stdout + done.stderr).strip()[-2000:]
            unavailable(f"npm ci in {root} failed (exit {done.returncode}): the e2e tests need "
                        f"the npm registry once, to fill that cache:\n{tail}")
        stamp.write_text(digest)
        return modules


# -- a Node process speaking JSON lines --------------------------------------------------------


class LineClient:
    """node_client.js or browser_driver.js: one SockJS connection of the real sockjs-client.

    Events (stdout): open, message, raw, close, fatal; diagnostics (console, pageerror, log)
    are kept apart for failure messages. Commands (stdin): send, close.
    """

    def __init__(self, argv: Sequence[str], env: dict[str, str], name: str,
                 cluster: Cluster | None = None) -> None:
        self.name = name
        self.cluster = cluster
        self.events: list[dict[str, Any]] = []
        self.diagnostics: list[str] = []
        self.stderr: list[str] = []
        self._cursor = 0
        self._cond = threading.Condition()
        self._eof = False
        self.process = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=HERE,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                event = {"type": "log", "text": line}
            with self._cond:
                if event.get("type") in ("console", "pageerror", "log", "request"):
                    self.diagnostics.append(json.dumps(event, ensure_ascii=False))
                else:
                    self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._cond:
                self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def report(self) -> str:
        with self._cond:
            parts = [f"--- {self.name}: events", *map(str, self.events[-30:]),
                     f"--- {self.name}: diagnostics", *self.diagnostics[-40:],
                     f"--- {self.name}: stderr", *self.stderr[-40:]]
        if self.cluster is not None:
            parts += ["--- server log", *self.cluster.log.lines[-30:]]
        return "\n".join(parts)

    def next_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next event, in order (each is returned once)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._cursor >= len(self.events):
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    break
                self._cond.wait(left)
            else:
                event = self.events[self._cursor]
                self._cursor += 1
                return event
        why = "exited" if self._eof else f"sent nothing for {timeout:.0f} s"
        raise AssertionError(f"{self.name} {why}\n{self.report()}")

    def expect_open(self, transport: str, timeout: float = TIMEOUT) -> None:
        event = self.next_event(timeout)
        assert event == {"type": "open", "transport": transport}, (
            f"{self.name}: expected open over {transport}, got {event}\n{self.report()}")

    def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next Pushy message."""
        event = self.next_event(timeout)
        assert event.get("type") == "message", (
            f"{self.name}: expected a message, got {event}\n{self.report()}")
        message: dict[str, Any] = event["data"]
        return message

    def expect(self, event: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next Pushy message must be `event` (with `fields` matching in its data)."""
        message = self.next(timeout)
        assert message.get("event") == event, (
            f"{self.name}: expected {event}, got {message}\n{self.report()}")
        for key, value in fields.items():
            assert message["data"].get(key) == value, (
                f"{self.name}: {key} != {value!r} in {message}\n{self.report()}")
        return message

    def send(self, command: str, data: dict[str, Any]) -> None:
        self._write({"op": "send", "message": {"command": command, "data": data}})

    def _write(self, obj: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(obj).encode() + b"\n")
        self.process.stdin.flush()

    def close(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Close the session from the client side; returns the close event."""
        self._write({"op": "close"})
        event = self.next_event(timeout)
        assert event.get("type") == "close", (
            f"{self.name}: expected close, got {event}\n{self.report()}")
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{self.name} did not exit\n{self.report()}") from exc
        return event

    def stop(self) -> None:
        """Teardown: end the process whatever state it is in."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


# -- Pushy steps shared by the Node and browser tests ------------------------------------------

# Non-ASCII of every width: Latin-1, BMP symbols, CJK, an astral emoji (a surrogate pair in
# JavaScript strings), and U+2028, which SockJS escapes and old JSONP/htmlfile code chokes on.
EVENT_DATA: dict[str, Any] = {
    "text": "héllo wörld ✓ 😀",
    "more": ["日本語", "Ελληνικά", "line\u2028separator", "quote \" and \\ and slash /"],
    "n": 42,
}


def protocol_name(transport: str) -> str:
    """The transport the server sees: an iframe-X transport runs X inside the iframe."""
    return transport.removeprefix("iframe-")


def trigger(cluster: Cluster, channel: str, event: str, data: Any) -> tuple[int, Any]:
    return asyncio.run(cluster.trigger(channel, event, data))


def connect(client: LineClient, transport: str, timeout: float = TIMEOUT) -> str:
    """Open, pushy:connect over the expected transport; returns the socket id."""
    client.expect_open(transport, timeout)
    connected = client.expect("pushy:connect", protocol=protocol_name(transport))
    socket_id = connected["data"]["socketId"]
    assert isinstance(socket_id, str) and socket_id, connected
    return socket_id


def pubsub_round_trip(cluster: Cluster, client: LineClient, transport: str, channel: str,
                      data: Any = None) -> None:
    """connect, subscribe, a triggered event (non-ASCII `EVENT_DATA` unless `data` is given)
    that must arrive intact, unsubscribe, close."""
    data = EVENT_DATA if data is None else data
    connect(client, transport)
    client.send("subscribe", {"channel": channel})
    client.expect("pushy:subscription-success", channel=channel)

    status, body = trigger(cluster, channel, "e2e-event", data)
    assert (status, body) == (201, {"status": {"code": 201, "message": "Ok"}}), body
    message = client.next()
    assert message == {"event": "e2e-event", "channel": channel, "data": data}, (
        f"{message}\n{client.report()}")

    client.send("unsubscribe", {"channel": channel})
    client.expect("pushy:subscription-end", channel=channel)
    # the channel is gone on the server: a trigger now reaches nobody
    status, body = trigger(cluster, channel, "e2e-event", {"late": True})
    assert status == 200, body

    closed = client.close()
    assert closed["code"] == 1000, closed


# -- the browser page's static server ----------------------------------------------------------


# A POST route of the static server: (request body, request headers) -> (status, content
# type, response body).
PostHandler = Callable[[bytes, email.message.Message], tuple[int, str, bytes]]


class StaticServer:
    """A few fixed files over HTTP on 127.0.0.1, in a thread; `posts`, POST routes (the
    app's auth endpoint of the Echo tests), same origin as the page."""

    def __init__(self, files: dict[str, tuple[Path, str]],
                 posts: dict[str, PostHandler] | None = None) -> None:
        self.files = files
        self.posts = posts or {}
        self.requests: list[str] = []
        handler = self._handler()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{name}"

    def _handler(self) -> Callable[..., http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].lstrip("/")
                server.requests.append(path)
                if path not in server.files:
                    self.send_error(404)
                    return
                file, content_type = server.files[path]
                body = file.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0].lstrip("/")
                server.requests.append("POST " + path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if path not in server.posts:
                    self.send_error(404)
                    return
                status, content_type, answer = server.posts[path](body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
