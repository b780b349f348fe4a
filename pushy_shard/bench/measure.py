"""What every scenario shares: settings, the server-CPU span, and the fan-out run itself
(arm the subscribers, publish, wait, check)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pushy_shard.bench import procstat
from pushy_shard.bench.drivers import Published, Publisher, Subscribers, Tally
from pushy_shard.bench.report import Result
from pushy_shard.bench.target import Target

START_DELAY_NS = 400_000_000  # the publisher connects before its first trigger at t0
GRACE_S = 0.3  # after `done`, how long late or duplicate deliveries may still show up


@dataclass(frozen=True)
class Settings:
    exe: Path  # the compiled load generator
    clients: int  # subscriber processes
    pub_conns: int  # publisher keep-alive connections
    timeout: float  # seconds any one phase may take
    run_id: str  # makes channel names unique to this run
    nofile: int  # the open-files limit the load generator runs with
    nap_us: int  # subscribers' pause between busy polls while counting (see loadclient.c)


def open_subscribers(settings: Settings, target: Target, n: int) -> Subscribers:
    return Subscribers(settings.exe, target, n, settings.clients, settings.timeout,
                       settings.nap_us)


class Span:
    """Server CPU used between construction and `stop()`, summed over its processes, and the
    whole machine's CPU (to tell when something else disturbed the run)."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.pids = target.pids() if target.measurable else []
        self.start = procstat.cpu_ns(self.pids)
        self.vanished = False  # a server process exited during the span: CPU unknown
        self.machine_start = procstat.machine_cpu()
        self.machine_tasks_s = 0.0
        self.irq_s = 0.0
        self.steal_s = 0.0
        self.own_start = time.process_time()
        self.own_s = 0.0  # this orchestrator's CPU: neither server nor "other"
        # the cluster scenario's Redis, by its own figures (INFO): what the span cost it
        self.redis_start = target.redis.stats() if target.redis is not None else None
        self.redis: dict[str, float] | None = None

    def stop(self) -> float | None:
        """Seconds of server CPU, None when the server's processes are unknown."""
        machine = procstat.machine_cpu()
        self.machine_tasks_s = (machine.tasks_ns - self.machine_start.tasks_ns) / 1e9
        self.irq_s = (machine.irq_ns - self.machine_start.irq_ns) / 1e9
        self.steal_s = (machine.steal_ns - self.machine_start.steal_ns) / 1e9
        self.own_s = time.process_time() - self.own_start
        if self.redis_start is not None and self.target.redis is not None:
            end_stats = self.target.redis.stats()
            self.redis = {k: end_stats[k] - v for k, v in self.redis_start.items()}
        if not self.pids:
            return None
        # processes started during the span (a restarted child) count from zero
        end = procstat.cpu_ns(self.target.pids())
        if set(self.start) - set(end):
            self.vanished = True
            return None
        return sum(ns - self.start.get(pid, 0) for pid, ns in end.items()) / 1e9


def account(result: Result, span: Span, server_s: float | None, client_s: float) -> None:
    """Kernel network time, and a warning when processes other than the server and the load
    generator took CPU during the timed span."""
    result.softirq_s = span.irq_s
    if span.vanished:
        result.notes.append("a server process exited during the run: its CPU is not known")
    # a process's utime+stime includes the softirq work done while it ran (tick accounting
    # puts those ticks in /proc/stat's softirq column instead): compare with both together
    busy = span.machine_tasks_s + span.irq_s
    other = busy - (server_s or 0.0) - client_s - span.own_s
    if server_s is not None and other > max(0.05, 0.1 * result.seconds):
        result.notes.append(
            f"other processes used {other:.2f}s of CPU during the {result.seconds:.2f}s timed "
            "span: these figures are disturbed; rerun on a quiet machine")
    if span.steal_s > max(0.05, 0.05 * result.seconds):
        result.notes.append(f"the hypervisor took {span.steal_s:.2f}s of CPU (steal) during the "
                            "timed span: these figures are disturbed")


@dataclass
class FanOut:
    """The outcome of one publish run."""

    tally: Tally  # counts after the grace period (what the check is based on)
    published: Published
    t0_ns: int
    server_cpu_s: float | None
    span: Span

    @property
    def seconds(self) -> float:
        end = max(self.tally.last_ns, self.published.last_resp_ns)
        return max(end - self.t0_ns, 1) / 1e9


def fan_out(settings: Settings, target: Target, subs: Subscribers, expected: list[int],
            records: list[bytes], count: int, rate: float = 0.0,
            seconds: float | None = None) -> FanOut:
    """Publish `count` triggers (records in turn) and count deliveries against `expected`.

    `rate` 0 sends as fast as the server answers; otherwise on a fixed schedule whose intended
    send times the latency is measured from. `seconds` bounds the whole run.
    """
    limit = seconds if seconds is not None else settings.timeout
    t0 = time.monotonic_ns() + START_DELAY_NS
    subs.arm(t0 if rate else 0, limit, expected)
    span = Span(target)
    publisher = Publisher(settings.exe, target, records, count, settings.pub_conns, t0, rate,
                          limit)
    try:
        done = subs.wait_done(limit)
        cpu = span.stop()
    except BaseException:
        publisher.kill()
        raise
    published = publisher.result()
    time.sleep(GRACE_S)
    tally = subs.check()
    tally.timeout = done.timeout
    tally.first_ns, tally.last_ns = done.first_ns, done.last_ns
    tally.latency = done.latency
    tally.client_cpu_ns = done.client_cpu_ns + published.cpu_ns
    tally.client_reads = done.client_reads
    return FanOut(tally, published, t0, cpu, span)


def fill(result: Result, run: FanOut) -> Result:
    """Rates, CPU per delivery and the check of one fan-out run into its result."""
    tally, published = run.tally, run.published
    result.ok = not tally.lost and published.ok
    result.check = tally.describe()
    if published.error:
        result.check = f"LOST: the publisher failed: {published.error}; {result.check}"
    elif not published.ok or set(published.status) - {"201"}:
        result.notes.append(
            f"publisher: {published.completed}/{published.count} answered, statuses "
            f"{published.status}, {published.failed} lost in flight"
            + (", timed out" if published.timeout else ""))
    result.delivered, result.expected = tally.total, tally.expected
    result.seconds = run.seconds
    last_delivery = max(tally.last_ns - run.t0_ns, 1) / 1e9
    result.deliveries_per_s = tally.total / last_delivery if tally.total else None
    answered = max(published.last_resp_ns - run.t0_ns, 1) / 1e9
    result.triggers_per_s = published.completed / answered if published.completed else None
    result.latency_ms = tally.latency.summary()
    result.client_cpu_s = tally.client_cpu_ns / 1e9
    if tally.client_reads:
        result.client_deliveries_per_read = tally.total / tally.client_reads
    account(result, run.span, run.server_cpu_s, result.client_cpu_s)
    redis = run.span.redis
    if redis is not None and redis["publishes"]:
        per = {"redis_publish_us": redis["publish_usec"] / redis["publishes"],
               "redis_command_us_per_publish": redis["command_usec"] / redis["publishes"],
               "redis_cpu_us_per_publish": redis["cpu_s"] * 1e6 / redis["publishes"],
               "redis_publishes": redis["publishes"]}
        result.params.update({k: round(v, 2) for k, v in per.items()})
        result.notes.append(
            f"Redis: {redis['publishes']:.0f} PUBLISH; per published message "
            f"{per['redis_publish_us']:.2f} us in PUBLISH, "
            f"{per['redis_command_us_per_publish']:.2f} us in all commands (commandstats), "
            f"{per['redis_cpu_us_per_publish']:.2f} us of its process CPU (I/O included)")
    if run.server_cpu_s is not None:
        result.server_cpu_s = run.server_cpu_s
        if tally.total:
            result.cpu_us_per_delivery = run.server_cpu_s * 1e6 / tally.total
        if published.completed:
            result.cpu_us_per_op = run.server_cpu_s * 1e6 / published.completed
    return result


def new_result(scenario: str, target: Target, params: dict[str, object]) -> Result:
    return Result(scenario=scenario, server=target.label, params=dict(params), ok=False,
                  check="not run")


def log_mark(target: Target) -> int:
    return len(target.problems())


def log_since(target: Target, mark: int) -> list[str]:
    return target.problems()[mark:]
