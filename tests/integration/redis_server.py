"""A real redis-server on a free port, for the tests of several instances (SCALEOUT.md).

Debian's `redis-server` (.ci/run installs it, as it installs chromium). Where it is missing
the tests skip with a line saying how to install it; under CI (CI=true) they fail instead.
Nothing is persisted: a restart is an empty Redis, as after a crash without persistence.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

import pytest
import redis

from pushy_shard.bench.ports import free_port
from tests.integration.harness import LogFollower

INSTALL_HINT = "install it with `apt-get install redis-server` (Debian's redis-server 7.0)"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def find_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        reason = f"redis-server not found: {INSTALL_HINT}"
        if in_ci():
            pytest.fail(f"{reason} [CI is set: the cluster tests must run, not skip]",
                        pytrace=False)
        pytest.skip(reason)
    return path


class RedisServer:
    """redis-server on 127.0.0.1:`port`; restartable on the same port."""

    def __init__(self) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.directory = tempfile.mkdtemp(prefix="ps-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory, "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.log = LogFollower(self.process.stdout)
        self.log.wait_for(r"Ready to accept connections")

    def kill(self) -> None:
        """SIGKILL: every connection drops, every key is gone."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def info(self, section: str) -> dict[str, Any]:
        with self.client() as client:
            return client.info(section)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
