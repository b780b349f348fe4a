"""Handles on the C load generator's processes: subscribers (several processes sharing the
connections) and one publisher. The protocol they speak is described at the top of
`loadclient.c`.
"""

from __future__ import annotations

import collections
import json
import queue
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pushy_shard.bench.errors import BenchError
from pushy_shard.bench.stats import Histogram
from pushy_shard.bench.target import Target
from pushy_shard.bench.wire import write_records

CONNECT_CONCURRENCY = 100  # handshakes in flight per client process
SLACK_S = 15.0  # how much longer Python waits than a C process's own deadline


class ClientProc:
    """One loadclient process: commands to its stdin, JSON lines from its stdout."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.stash: list[dict[str, Any]] = []
        self.stderr: collections.deque[str] = collections.deque(maxlen=20)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()
        threading.Thread(target=self._errors, args=(self.proc.stderr,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                self.messages.put(json.loads(line))
            except ValueError:
                self.stderr.append(f"unparsable output: {line[:200]!r}")
        self.messages.put(None)

    def _errors(self, stream: IO[bytes]) -> None:
        for line in stream:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(text.encode())
            self.proc.stdin.flush()
        except BrokenPipeError as exc:
            raise BenchError(f"load client exited early: {self.why()}") from exc

    def why(self) -> str:
        code = self.proc.poll()
        tail = "; ".join(self.stderr) or "no error output"
        return f"exit status {code}: {tail}"

    def wait(self, kind: str, timeout: float) -> dict[str, Any]:
        """The next message of this type (others are kept for later waits)."""
        for i, message in enumerate(self.stash):
            if message.get("type") == kind:
                return self.stash.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                got = self.messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"load client sent no {kind!r} in {timeout:.0f}s") from None
            if got is None:
                self.messages.put(None)
                raise BenchError(f"load client exited before {kind!r}: {self.why()}")
            if got.get("type") == kind:
                return got
            self.stash.append(got)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit\n")
                self.proc.wait(timeout=5)
            except (BenchError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@dataclass
class Tally:
    """Deliveries counted by every subscriber process against what each connection expected."""

    total: int = 0
    expected: int = 0
    under: int = 0  # connections with fewer deliveries than expected
    over: int = 0  # connections with more (duplicates)
    closed: int = 0
    timeout: bool = False
    first_ns: int = 0
    last_ns: int = 0
    failures: int = 0
    first_failure: str = ""
    mismatch: list[tuple[int, int, int]] = field(default_factory=list)  # (conn, got, want)
    errors: dict[str, int] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)
    client_cpu_ns: int = 0
    client_reads: int = 0  # recv() calls of the subscriber processes while counting

    @property
    def lost(self) -> bool:
        return self.under > 0 or self.over > 0 or self.total != self.expected or self.timeout

    def describe(self) -> str:
        if not self.lost:
            return f"ok: {self.total} delivered == {self.expected} expected"
        text = (f"LOST: {self.total} delivered, {self.expected} expected; {self.under} "
                f"connections short, {self.over} over, {self.closed} closed")
        if self.timeout:
            text += "; timed out"
        if self.mismatch:
            text += "; e.g. " + ", ".join(f"conn {c}: {g}/{w}" for c, g, w in self.mismatch[:3])
        if self.errors:
            text += f"; errors {self.errors}"
        if self.first_failure:
            text += f"; first server message: {self.first_failure[:160]}"
        return text


def _merge(messages: list[dict[str, Any]], offsets: list[int],
           armed: list[dict[str, Any]]) -> Tally:
    tally = Tally()
    for message, offset, start in zip(messages, offsets, armed, strict=True):
        tally.total += message["total"]
        tally.expected += message["expected"]
        tally.under += message["under"]
        tally.over += message["over"]
        tally.closed += message["closed"]
        tally.timeout |= bool(message["timeout"])
        if message["first_ns"]:
            tally.first_ns = min(tally.first_ns or message["first_ns"], message["first_ns"])
        tally.last_ns = max(tally.last_ns, message["last_ns"])
        tally.failures += message["failures"]
        tally.first_failure = tally.first_failure or message["first_failure"]
        tally.mismatch += [(offset + c, g, w) for c, g, w in message["mismatch"]]
        for name, count in message["errors"].items():
            tally.errors[name] = tally.errors.get(name, 0) + count
        tally.latency.merge(message["latency"])
        tally.client_cpu_ns += message["cpu_ns"] - start["cpu_ns"]
        tally.client_reads += message["reads"] - start["reads"]
    return tally


@dataclass
class Connected:
    socket_ids: list[str]
    fronts: dict[str, int]  # connections per front (X-Pushy-Front), "?" where not told


class Subscribers:
    """`n` websocket sessions spread over `processes` loadclient processes."""

    def __init__(self, exe: Path, target: Target, n: int, processes: int,
                 timeout: float, nap_us: int = 0) -> None:
        self.n, self.timeout = n, timeout
        processes = max(1, min(processes, n))
        sizes = [n // processes + (1 if i < n % processes else 0) for i in range(processes)]
        self.offsets = [sum(sizes[:i]) for i in range(processes)]
        self.sizes = sizes
        self.procs = [
            ClientProc([str(exe), "sub", target.host, str(target.port_for(k)),
                        target.sockjs_path, str(size), str(CONNECT_CONCURRENCY),
                        str(int(timeout * 1000)), str(nap_us)])
            for k, size in enumerate(sizes)
        ]
        self._armed = [{"cpu_ns": 0, "reads": 0}] * processes

    def _all(self, kind: str, timeout: float) -> list[dict[str, Any]]:
        return [proc.wait(kind, timeout) for proc in self.procs]

    def connect(self) -> Connected:
        """Wait until every session is open; raises with the reasons if some are not."""
        messages = self._all("connected", self.timeout + SLACK_S)
        failed = sum(m["failed"] for m in messages)
        if failed:
            errors: dict[str, int] = {}
            for m in messages:
                for name, count in m["errors"].items():
                    errors[name] = errors.get(name, 0) + count
            hint = ""
            if "EMFILE" in errors or "ENFILE" in errors:
                hint = " (the file-descriptor limit bounds the connection count)"
            elif "EADDRNOTAVAIL" in errors:
                hint = " (out of local ports: net.ipv4.ip_local_port_range bounds it)"
            first = next((m["first_failure"] for m in messages if m["first_failure"]), "")
            raise BenchError(f"{failed} of {self.n} connections failed: {errors}{hint}"
                             + (f"; server said: {first[:200]}" if first else ""))
        fronts: dict[str, int] = {}
        for m in messages:
            for front, count in m["fronts"].items():
                fronts[front] = fronts.get(front, 0) + count
        return Connected([sid for m in messages for sid in m["sids"]], fronts)

    def subscribe(self, plan: list[str]) -> float:
        """Send each connection its plan line; seconds until every subscription succeeded."""
        assert len(plan) == self.n
        for proc, offset, size in zip(self.procs, self.offsets, self.sizes, strict=True):
            proc.send("plan\n" + "".join(line + "\n" for line in plan[offset:offset + size]))
        messages = self._all("subscribed", self.timeout + SLACK_S)
        bad = [m for m in messages if m["failed"] or m["pending"] or m["timeout"]]
        if bad:
            failed = sum(m["failed"] for m in messages)
            pending = sum(m["pending"] for m in messages)
            first = next((m["first_failure"] for m in messages if m["first_failure"]), "")
            raise BenchError(f"subscriptions not verified: {failed} failed, {pending} still "
                             f"pending after {self.timeout:.0f}s; server said: {first[:200]!r}")
        return max(m["ms"] for m in messages) / 1000.0

    def arm(self, t0_ns: int, seconds: float, counts: list[int]) -> None:
        """Reset the counters; from now on count towards `counts` (one per connection)."""
        assert len(counts) == self.n
        for proc, offset, size in zip(self.procs, self.offsets, self.sizes, strict=True):
            mine = counts[offset:offset + size]
            spec = str(mine[0]) if len(set(mine)) == 1 else " ".join(map(str, mine))
            proc.send(f"expect {t0_ns} {int(seconds * 1000)} {spec}\n")
        self._armed = self._all("armed", SLACK_S)

    def wait_done(self, seconds: float) -> Tally:
        return _merge(self._all("done", seconds + SLACK_S), self.offsets, self._armed)

    def check(self) -> Tally:
        """Counts now (late or duplicate deliveries since `done` show up here)."""
        for proc in self.procs:
            proc.send("check\n")
        return _merge(self._all("check", SLACK_S), self.offsets, self._armed)

    def churn(self, cycles: int, seconds: float) -> list[dict[str, Any]]:
        for proc in self.procs:
            proc.send(f"churn {cycles} {int(seconds * 1000)}\n")
        return self._all("churned", seconds + SLACK_S)

    def close(self) -> None:
        for proc in self.procs:
            proc.close()


@dataclass
class Published:
    count: int
    completed: int
    failed: int
    timeout: bool
    start_ns: int
    last_resp_ns: int
    status: dict[str, int]
    max_lag_us: int
    mean_lag_us: float
    cpu_ns: int
    response_us: dict[str, int]
    error: str = ""  # why the publisher stopped early, if it did

    @property
    def ok(self) -> bool:
        return (not self.error and not self.timeout and self.failed == 0
                and self.completed == self.count)


class Publisher:
    """The compiled publisher sending pre-signed triggers (started at once, reports at end)."""

    def __init__(self, exe: Path, target: Target, records: list[bytes], count: int,
                 conns: int, start_ns: int, rate: float, seconds: float, depth: int = 1) -> None:
        self.seconds = seconds
        self._folder = tempfile.TemporaryDirectory(prefix="psb-pub-")
        path = Path(self._folder.name) / "requests"
        write_records(path, records)
        self.proc = ClientProc([str(exe), "pub", target.host, str(target.port), str(path),
                                str(count), str(conns), str(start_ns), f"{rate:.3f}",
                                str(depth), str(int(seconds * 1000))])

    def kill(self) -> None:
        self.proc.proc.kill()
        self.proc.proc.wait()
        self._folder.cleanup()

    def result(self) -> Published:
        """What the publisher did; one that failed (server gone) is reported, not raised."""
        try:
            m = self.proc.wait("published", self.seconds + SLACK_S)
            self.proc.proc.wait(timeout=5)
        except BenchError as exc:
            return Published(0, 0, 0, False, 0, 0, {}, 0, 0.0, 0, {}, error=str(exc))
        finally:
            self.proc.close()
            self._folder.cleanup()
        return Published(m["count"], m["completed"], m["failed"], bool(m["timeout"]),
                         m["start_ns"], m["last_resp_ns"], m["status"], m["max_lag_us"],
                         m["mean_lag_us"], m["cpu_ns"], m["response_us"])
