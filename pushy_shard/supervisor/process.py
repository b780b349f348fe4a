"""The all-in-one supervisor: spawns shards and fronts, restarts the dead, stops in order.

It carries no traffic (ARCHITECTURE.md 1). It waits for signals with `sigtimedwait`, so a
child's death (SIGCHLD), a stop request (SIGTERM/SIGINT) and a reload (SIGHUP) are handled
in one loop without polling or signal-handler races.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from pushy_shard.core.config import Config, load_config, runtime_directory
from pushy_shard.core.metrics import STATE_FILE, restarts_document
from pushy_shard.core.reload import plan_reload
from pushy_shard.core.stopping import stop_plan
from pushy_shard.errors import EXIT_ADDRESS_IN_USE, ConfigError
from pushy_shard.reloading import set_log_level

log = logging.getLogger(__name__)

WATCHED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
FAST_FAILURE = 1.0  # a child that dies sooner than this after starting is restarted later
MAX_BACKOFF = 5.0


@dataclass(slots=True)
class Child:
    role: str
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = 0.0
    due: float = 0.0  # when a pending restart should happen
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.role} {self.index}"


class Supervisor:
    def __init__(self, config: Config, config_path: str) -> None:
        self.config = config
        self.config_path = config_path
        # the hooks process and shards first so fronts find them at once; fronts stop
        # first, the hooks process last (see stop()).
        self.children = [Child("hooks", 0)]
        self.children += [Child("shard", j) for j in range(config.workers)]
        self.children += [Child("front", i) for i in range(config.fronts)]
        self.address_in_use = False  # a child could not bind: restarting it would loop

    def run(self) -> int:
        busy = port_in_use(self.config.host, self.config.port)
        if busy:
            # Fronts share the port with SO_REUSEPORT, so a second server on the same port
            # would silently take half the connections (and share the link sockets).
            log.error("port %d is already in use (%s); is another pushy-shard running?",
                      self.config.port, busy)
            return 1
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED)
        log.info("starting %d shards, %d fronts and the hooks process on port %d",
                 self.config.workers, self.config.fronts, self.config.port)
        for child in self.children:
            self._spawn(child)
        self._write_state()
        while True:
            timeout = self._next_timeout()
            info: signal.struct_siginfo | None
            if timeout is None:
                info = signal.sigwaitinfo(WATCHED)
            else:
                info = signal.sigtimedwait(WATCHED, timeout)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s, stopping", signal.Signals(info.si_signo).name)
                return self.stop()
            if info is not None and info.si_signo == signal.SIGHUP:
                self.reload()
            if self._reap():
                self._write_state()
            if self.address_in_use:
                log.error("stopping: the address is taken by another process")
                self.stop()
                return 1
            self._restart_due()

    def _spawn(self, child: Child) -> None:
        command = [sys.executable, "-m", "pushy_shard", child.role, "--index", str(child.index),
                   self.config_path]
        child.process = subprocess.Popen(command)
        child.started = time.monotonic()
        log.info("%s started (pid %d)", child.name, child.process.pid)

    def _write_state(self) -> None:
        """Restarts per role for the fronts' /metrics, in `supervisor.json` beside the link
        sockets; written whole (temporary file, then rename) so no reader sees half of it."""
        restarts: dict[str, int] = {}
        for child in self.children:
            restarts[child.role] = restarts.get(child.role, 0) + child.restarts
        directory = runtime_directory(self.config, os.environ)
        path = os.path.join(directory, STATE_FILE)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            with open(path + ".tmp", "wb") as f:
                f.write(restarts_document(os.getpid(), restarts))
            os.replace(path + ".tmp", path)
        except OSError as exc:  # metrics lose restart counts; serving goes on
            log.warning("cannot write %s: %s", path, exc)

    def _reap(self) -> bool:
        """Collect dead children and schedule their restarts; True if any had died."""
        now = time.monotonic()
        reaped = False
        for child in self.children:
            process = child.process
            if process is None or process.poll() is None:
                continue
            child.process = None
            reaped = True
            if process.returncode == EXIT_ADDRESS_IN_USE:
                self.address_in_use = True
                continue
            child.restarts += 1
            lived = now - child.started
            fast = lived < FAST_FAILURE
            child.backoff = min(MAX_BACKOFF, max(0.1, child.backoff * 2)) if fast else 0.0
            child.due = now + child.backoff
            # status 0: it was stopped on purpose (SIGTERM: a rolling restart)
            level = logging.INFO if process.returncode == 0 else logging.ERROR
            log.log(level, "%s (pid %d) exited with %s after %.1fs; restarting in %.1fs",
                    child.name, process.pid, _describe(process.returncode), lived,
                    child.backoff)
        return reaped

    def _restart_due(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is None and child.due <= now:
                self._spawn(child)

    def _next_timeout(self) -> float | None:
        waiting = [c.due for c in self.children if c.process is None]
        if not waiting:
            return None
        return max(0.0, min(waiting) - time.monotonic())

    def reload(self) -> None:
        """SIGHUP: a config file that loads is handed on (each child re-reads it and logs
        what it applies and refuses); one that does not changes nothing anywhere."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("SIGHUP: %s; nothing reloaded", exc)
            return
        self.config = plan_reload(self.config, new).config  # process counts stay as started
        set_log_level(self.config.log_level)
        running = [c.process for c in self.children if c.process is not None]
        log.info("SIGHUP: config is valid; reloading %d processes", len(running))
        for process in running:
            process.send_signal(signal.SIGHUP)

    def stop(self) -> int:
        """Fronts first (they tell clients to reconnect and finish requests in flight, which
        need the shards), then shards, then the hooks process (the shards' last transitions
        reach it), all within `shutdown_timeout` (core/stopping.py); a child past its
        deadline is killed. 0 when every child stopped by itself."""
        plan = stop_plan(self.config.shutdown_timeout)
        start = time.monotonic()
        clean = True
        for role, until in (("front", plan.fronts), ("shard", plan.total),
                            ("hooks", plan.total)):
            group = [c for c in self.children if c.role == role and c.process is not None]
            for child in group:
                assert child.process is not None
                child.process.send_signal(signal.SIGTERM)
            for child in group:
                assert child.process is not None
                try:
                    child.process.wait(timeout=max(0.0, start + until - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop within %.1fs; killing it", child.name, until)
                    child.process.kill()
                    child.process.wait()
                    clean = False
        log.info("stop took %.2fs", time.monotonic() - start)
        log.info("stopped")
        return 0 if clean else 1


def port_in_use(host: str, port: int) -> str | None:
    """Why `port` cannot be ours alone, or None: a bind without SO_REUSEPORT tells."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"
