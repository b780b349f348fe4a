"""The server under test: one this tool starts (`python -m pushy_shard CONFIG`), the C
reference floor (floorserver.c), or any URL speaking the Pushy protocol (the original Node
server, another deployment).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import redis

from pushy_shard.bench import procstat
from pushy_shard.bench.errors import BenchError
from pushy_shard.bench.ports import PORT_ATTEMPTS, PORT_TAKEN, free_port

READY = re.compile(r"front \d+/\d+ ready")
PUSHER_APP = ("1", "bench-key")  # the Pusher app a started server serves: its id and key
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback")
WEBHOOK_EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed",
                  "client_event", "cache_miss", "subscription_count"]


class WebhookSink:
    """A webhook receiver that takes every post (200) and counts posts and events, so a
    run with webhooks measures the server's side of them, not a receiver's."""

    def __init__(self) -> None:
        sink = self
        self.posts = self.events = 0
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with sink._lock:
                    sink.posts += 1
                    sink.events += len(json.loads(body).get("events", []))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class LocalServer:
    """pushy-shard with `workers` shards and `fronts` fronts on a free loopback port.

    Its log is drained all the time (a full pipe would stall the server) and kept: warnings
    and errors are reported with the results. Call `stop()` when done.
    """

    def __init__(self, workers: int, fronts: int, secret: str, prefix: str,
                 start_timeout: float = 60.0, webhooks: bool = False,
                 cluster: dict[str, object] | None = None) -> None:
        self.workers, self.fronts = workers, fronts
        self.cluster = cluster  # config.json's `cluster`: one instance of several
        # with webhooks: every event of the Pusher app and the Pushy channels goes to a sink
        self.sink = WebhookSink() if webhooks else None
        for _ in range(PORT_ATTEMPTS):
            self._start(secret, prefix)
            try:
                self._wait_ready(start_timeout)
                return
            except BenchError:
                if not any(re.search(PORT_TAKEN, line) for line in self.lines):
                    raise
            except BaseException:  # SIGTERM or ^C while it starts: no server left behind
                self.stop()
                raise
        raise BenchError(f"lost the port to another process {PORT_ATTEMPTS} times")

    def _start(self, secret: str, prefix: str) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="psb-", dir="/tmp"))
        config = {
            "port": self.port, "host": "127.0.0.1", "secretKey": secret,
            "workers": self.workers, "fronts": self.fronts, "demo": False,
            "log_level": "info",
            "sockjs": {"prefix": prefix, "heartbeat_delay": 25, "disconnect_delay": 5},
            "link": {"transport": "ipc", "directory": str(self.folder / "l")},
            # the Pusher path: one app, signing with the same secret
            "apps": [{"id": PUSHER_APP[0], "key": PUSHER_APP[1], "secret": secret,
                      "max_presence_members": 1_000_000}],
            # (e) drives one connection at thousands of joins+leaves a second: the per-client
            # command rate limit (a production policy) would refuse it, so it is lifted here
            "limits": {"commands_per_second": 1_000_000, "commands_burst": 1_000_000},
        }
        if self.cluster is not None:
            config["cluster"] = self.cluster
        if self.sink is not None:
            hooks = [{"url": self.sink.url, "events": WEBHOOK_EVENTS}]
            config["apps"][0]["webhooks"] = hooks  # type: ignore[index]
            config["pushy_app"] = {"id": "2", "key": "bench-pushy-key", "webhooks": hooks}
        config_path = self.folder / "config.json"
        config_path.write_text(json.dumps(config))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in ("PORT", "PUSHY_WORKERS", "PUSHY_FRONTS"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pushy_shard", str(config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.lines: collections.deque[str] = collections.deque(maxlen=400)
        self.problems: list[str] = []
        self._ready = 0
        self._cond = threading.Condition()
        assert self.process.stdout is not None
        threading.Thread(target=self._drain, args=(self.process.stdout,), daemon=True).start()

    def _drain(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            with self._cond:
                self.lines.append(line)
                if READY.search(line):
                    self._ready += 1
                if PROBLEM.search(line) and len(self.problems) < 200:
                    self.problems.append(line)
                self._cond.notify_all()
        with self._cond:
            self._ready = -1
            self._cond.notify_all()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while 0 <= self._ready < self.fronts:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            ready = self._ready
        if ready < self.fronts:
            self.stop()
            tail = "\n".join(list(self.lines)[-30:])
            raise BenchError(f"the server did not become ready ({max(ready, 0)} of "
                             f"{self.fronts} fronts); its log:\n{tail}")

    def pids(self) -> list[int]:
        return procstat.descendants(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.sink is not None:
            self.sink.stop()


class FloorServer:
    """floorserver.c on a free loopback port with `writers` threads: what the hardware
    charges for the same load with nothing but one write per member (the report's floor)."""

    def __init__(self, exe: Path, writers: int, start_timeout: float = 10.0) -> None:
        self.writers = writers
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            self.process = subprocess.Popen([str(exe), str(self.port), str(writers)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            start_new_session=True)
            assert self.process.stdout is not None
            try:
                ready = _readline(self.process.stdout, start_timeout)
            except BaseException:
                self.stop()
                raise
            if ready.startswith("floor ready"):
                return
            self.stop()
            assert self.process.stderr is not None
            why = self.process.stderr.read().decode("utf-8", "replace").strip()
            if not re.search(PORT_TAKEN, why):
                raise BenchError(f"the floor server did not start: {why or ready or 'no output'}")
        raise BenchError(f"the floor server lost its port {PORT_ATTEMPTS} times")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _readline(stream: IO[bytes], timeout: float) -> str:
    """A line from `stream`, or "" when none comes within `timeout` s or the stream ends."""
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].decode("utf-8", "replace").strip() if lines else ""


@dataclass
class Target:
    """Where the load goes, and which processes to measure."""

    host: str
    port: int
    base_path: str  # prepended to the SockJS prefix and the trigger path
    prefix: str
    secret: str
    label: str
    server: LocalServer | None = None
    pid_list: list[int] = field(default_factory=list)
    pid_pattern: str | None = None
    protocol: str = "pushy"  # or "pusher": the app PUSHER_APP, signed with `secret`
    # several instances on one Redis (SCALEOUT.md): the others, subscribers spread over all
    others: list[LocalServer] = field(default_factory=list)
    redis: RedisProc | None = None
    floor: FloorServer | None = None

    def port_for(self, k: int) -> int:
        """The port subscriber process `k` connects to: the instances in turn."""
        ports = [self.port, *(other.port for other in self.others)]
        return ports[k % len(ports)]

    @property
    def sockjs_path(self) -> str:
        """What the load client connects to: the SockJS prefix, or "pusher:" and the
        Pusher app's WebSocket path."""
        if self.protocol == "pusher":
            return f"pusher:{self.base_path}/app/{PUSHER_APP[1]}"
        return self.base_path + self.prefix

    def pids(self) -> list[int]:
        """The server's processes now (a restarted child is picked up)."""
        if self.server is not None:
            return [*self.server.pids(), *(p for other in self.others for p in other.pids())]
        if self.floor is not None:
            return [self.floor.process.pid]  # its threads' CPU is in the process's figures
        if self.pid_pattern:
            return procstat.pids_matching(self.pid_pattern)
        return [pid for pid in self.pid_list if Path(f"/proc/{pid}").exists()]

    @property
    def measurable(self) -> bool:
        return (self.server is not None or self.floor is not None or bool(self.pid_list)
                or bool(self.pid_pattern))

    def problems(self) -> list[str]:
        servers = [self.server, *self.others] if self.server else []
        return [line for server in servers for line in server.problems]

    def stop(self) -> None:
        for server in ([self.server] if self.server else []) + self.others:
            server.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.floor is not None:
            self.floor.stop()


def local(workers: int, fronts: int, secret: str, prefix: str,
          protocol: str = "pushy", webhooks: bool = False) -> Target:
    server = LocalServer(workers, fronts, secret, prefix, webhooks=webhooks)
    label = f"pushy-shard w{workers} f{fronts}" + (" pusher" if protocol == "pusher" else "")
    label += " +webhooks" if webhooks else ""
    return Target("127.0.0.1", server.port, "", prefix, secret, label, server=server,
                  protocol=protocol)


def floor(exe: Path, writers: int, secret: str, prefix: str, protocol: str = "pushy") -> Target:
    """The reference floor with `writers` threads (as many as the fronts it stands beside)."""
    server = FloorServer(exe, writers)
    label = f"floor (C) x{writers}" + (" pusher" if protocol == "pusher" else "")
    return Target("127.0.0.1", server.port, "", prefix, secret, label, protocol=protocol,
                  floor=server)


class RedisProc:
    """Debian's redis-server on a free loopback port, for the cluster scenario; `stats` reads
    its own figures (INFO commandstats and cpu)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("the cluster scenario needs redis-server: apt-get install "
                             "redis-server")
        self.port = free_port()
        self.folder = tempfile.mkdtemp(prefix="psb-redis-")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.folder],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        deadline = time.monotonic() + 20
        try:
            while not self._answers():
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise BenchError("redis-server did not start")
                time.sleep(0.05)
        except BaseException:  # not ready in time, or SIGTERM or ^C while it starts
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stats(self) -> dict[str, float]:
        """PUBLISH calls (scripts' included), the microseconds PUBLISH and every command
        took (EVALSHA left out: the commands a script calls are counted on their own), and
        the process's CPU seconds."""
        commands = self.client.info("commandstats")
        cpu = self.client.info("cpu")
        publish = commands.get("cmdstat_publish", {})
        return {"publishes": float(publish.get("calls", 0)),
                "publish_usec": float(publish.get("usec", 0)),
                "command_usec": float(sum(c.get("usec", 0) for name, c in commands.items()
                                          if not name.startswith("cmdstat_eval"))),
                "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])}

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def cluster_pair(workers: int, fronts: int, secret: str, prefix: str,
                 protocol: str = "pushy") -> Target:
    """Two instances of `workers` shards and `fronts` fronts each on one Redis."""
    redis = RedisProc()
    servers: list[LocalServer] = []
    try:
        for node in ("bench-a", "bench-b"):
            servers.append(LocalServer(workers, fronts, secret, prefix,
                                       cluster={"redis": redis.url, "node": node}))
    except BaseException:
        for server in servers:
            server.stop()
        redis.stop()
        raise
    label = f"2 x pushy-shard w{workers} f{fronts} + redis" + (
        " pusher" if protocol == "pusher" else "")
    return Target("127.0.0.1", servers[0].port, "", prefix, secret, label, server=servers[0],
                  protocol=protocol, others=servers[1:], redis=redis)


def external(url: str, secret: str, prefix: str, pids: list[int], pattern: str | None,
             label: str | None) -> Target:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "ws") or not parts.hostname:
        raise BenchError(f"--url must be http://HOST:PORT[/path] (plain HTTP), not {url!r}")
    port = parts.port or 80
    return Target(parts.hostname, port, parts.path.rstrip("/"), prefix, secret,
                  label or f"{parts.hostname}:{port}", pid_list=pids, pid_pattern=pattern)
