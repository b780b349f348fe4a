"""Soak of several instances: three on one redis-server, with channel and presence churn,
while shards, a whole instance and Redis itself are SIGKILLed on a schedule (SCALEOUT.md).

- instances A, B and C (`--workers` shards, one front each); A and B are never killed whole
  (their shards are), C is, and is started again under its node name;
- stable members on A and on B sit in every public and presence channel for the whole run;
  churners join presence channels on any instance, stay a moment, leave or drop, and start
  again;
- one publisher per channel sends sequence-numbered triggers through A and B in turn, one
  after another (so Redis's order is their order);
- every `--kill-interval` seconds: a random shard of any instance, instance C, or Redis
  (restarted empty).

Checks: every event accepted (201/200) reaches every stable member once and in order,
except those in flight while a fault was open for that member: Redis restarting (until
every running instance wrote its state again and resubscribed), or the member's own shard
of that channel restarting (until it resubscribed). Those are gaps by design (SCALEOUT.md:
at most once between instances) and are counted apart; a loss outside them fails the run.
At the end, a fresh client joins each presence channel on A, and every surviving member's
view (its list, then the events it got) must equal the list it gets.

    python -m tests.soak.cluster --minutes 5        (make soak SOAK_ARGS="--minutes 2")
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from pushy_shard.core.routing import shard_for
from tests.integration.harness import Cluster
from tests.integration.redis_server import RedisServer
from tests.soak.soak import EVENT, FaultSchedule, Member, check_presence, render
from tests.soak.soak import Result as SoakResult

NODES = ("soak-a", "soak-b", "soak-c")
KILLABLE = 2  # the index of the instance that is killed whole
LEASE = 3.0


@dataclass
class Options:
    seconds: float = 300.0
    kill_interval: float = 5.0
    seed: int = 1
    stable: int = 2  # per instance A and B
    churners: int = 6
    public_channels: int = 3
    presence_channels: int = 2
    trigger_pause: float = 0.05
    workers: int = 2
    faults: int = 0  # at least this many: the run goes on past `seconds` until made


@dataclass
class Result(SoakResult):
    """The single-host soak's counts (`kills` holds the faults by kind), and the events a
    member missed inside a fault window of its own: by design, counted, not a failure."""

    gap_lost: int = 0

    def table(self, options: Options) -> str:
        refused = ", ".join(f"{n}x {status}" for status, n in sorted(self.triggers_refused.items()))
        rows = [
            ("duration", f"{self.duration:.0f} s (3 instances of {options.workers} shards and "
                         f"1 front, one Redis; seed {options.seed})"),
            ("stable members", f"{options.stable} on each of A and B, in every channel"),
            ("faults (SIGKILL)", f"{sum(self.kills.values())}: " + ", ".join(
                f"{what} {n}" for what, n in sorted(self.kills.items()))),
            ("triggers sent / accepted / refused / no answer",
             f"{self.triggers_sent} / {self.triggers_accepted} / "
             f"{sum(self.triggers_refused.values())} ({refused or 'none'}) / "
             f"{self.trigger_errors}"),
            ("events expected / delivered to stable members",
             f"{self.expected} / {self.delivered}"),
            ("lost (outside faults) / lost in a fault's gap", f"{self.lost} / {self.gap_lost}"),
            ("duplicated / out of order", f"{self.duplicated} / {self.out_of_order}"),
            ("presence checks passed / failed", f"{self.presence_passed} / "
                                                f"{self.presence_failed}"),
            ("connections churned", f"{self.churned} ({self.churner_drops} dropped)"),
            ("churner errors", ", ".join(f"{k}: {n}" for k, n in sorted(
                self.churner_errors.items())) or "none"),
            ("stable members that lost their connection", str(self.stable_lost_connection)),
            ("result", "OK" if self.ok else "FAILED"),
        ]
        return render(rows, self.presence_details)


@dataclass
class Window:
    """A fault open from `start` to `end` (monotonic): for members of `instance` (None:
    every instance) and channels owned there by `shard` (None: every channel)."""

    start: float
    end: float
    instance: int | None
    shard: int | None


def instance(directory: Path, redis: RedisServer, node: str, workers: int) -> Cluster:
    directory.mkdir(parents=True, exist_ok=True)
    server = Cluster(directory, workers=workers, fronts=1,
                     cluster={"redis": redis.url, "node": node, "lease_seconds": LEASE})
    server.log.wait_for(r"in the cluster as", count=workers)
    return server


class ClusterSoak:
    def __init__(self, directory: Path, redis: RedisServer, servers: list[Cluster],
                 options: Options) -> None:
        self.directory = directory
        self.redis = redis
        self.servers = servers
        self.options = options
        self.rng = random.Random(options.seed)
        self.result = Result()
        self.public = [f"csoak-pub-{n}" for n in range(options.public_channels)]
        self.presence = [f"private-csoak-{n}" for n in range(options.presence_channels)]
        self.channels = self.public + self.presence
        # channel -> (n, sent, answered) of the accepted triggers
        self.accepted: dict[str, list[tuple[int, float, float]]] = {c: [] for c in self.channels}
        self.windows: list[Window] = []
        self.stop_load = asyncio.Event()
        self.stop_churn = asyncio.Event()
        self.churners: list[Member | None] = [None] * options.churners
        self.restarts = 0

    # -- load ---------------------------------------------------------------------------------

    async def publish(self, channel: str) -> None:
        n = 0
        while not self.stop_load.is_set():
            server = self.servers[n % 2]  # A and B in turn
            self.result.triggers_sent += 1
            sent = time.monotonic()
            try:
                status, _ = await server.trigger(channel, EVENT, {"n": n})
            except (aiohttp.ClientError, TimeoutError):
                self.result.trigger_errors += 1
            else:
                if status in (200, 201):
                    self.result.triggers_accepted += 1
                    self.accepted[channel].append((n, sent, time.monotonic()))
                else:
                    self.result.triggers_refused[status] += 1
            n += 1
            await asyncio.sleep(self.options.trigger_pause)  # a rate, not a wait

    async def churn(self, slot: int) -> None:
        rng = random.Random(self.rng.getrandbits(32))
        while not self.stop_churn.is_set():
            server = self.servers[rng.randrange(3)]
            try:
                member = await Member.connect(server, f"churner-{slot}")
            except (ConnectionError, aiohttp.ClientError, TimeoutError, AssertionError,
                    OSError) as exc:
                self.result.churner_errors[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)  # instance C may be down
                continue
            self.result.churned += 1
            self.churners[slot] = member
            try:
                while not self.stop_churn.is_set() and member.closed is None:
                    channel = rng.choice(self.presence)
                    reply = await member.join(channel)
                    if reply["event"] == "closed":
                        break
                    if reply["event"] != "pushy:subscription-success":
                        self.result.churner_errors[str(reply.get("data"))[:70]] += 1
                        await asyncio.sleep(0.2)  # Redis down: retry later
                        continue
                    await asyncio.sleep(rng.uniform(0.1, 1.5))  # dwell time
                    if self.stop_churn.is_set():
                        break
                    if rng.random() < 0.5:
                        await member.request("unsubscribe", {"channel": channel})
                    else:
                        break
            except TimeoutError:
                self.result.churner_errors["no reply in 30 s"] += 1
            if member.closed is not None:
                self.result.churner_drops += 1
            if member.closed is not None or not self.stop_churn.is_set():
                self.churners[slot] = None
                await member.close()

    # -- faults -------------------------------------------------------------------------------

    async def fault(self) -> None:
        roll = self.rng.random()
        if roll < 0.6:
            await self.kill_shard(self.rng.randrange(3), self.rng.randrange(
                self.options.workers))
        elif roll < 0.8:
            await self.kill_instance()
        else:
            await self.restart_redis()

    async def kill_shard(self, which: int, shard: int) -> None:
        server = self.servers[which]
        start = time.monotonic()
        mark = server.kill("shard", shard)
        self.result.kills["shard"] += 1
        await asyncio.to_thread(server.wait_restarted, "shard", shard, mark)
        await asyncio.to_thread(server.log.wait_for,
                                rf"shard {shard}: every replayed channel subscribed", 1, mark)
        self.windows.append(Window(start, time.monotonic(), which, shard))

    async def kill_instance(self) -> None:
        """Instance C, SIGKILLed whole, then started again under its node name."""
        old = self.servers[KILLABLE]
        os.killpg(old.process.pid, signal.SIGKILL)
        old.process.wait()
        self.result.kills["instance"] += 1
        self.restarts += 1
        self.servers[KILLABLE] = await asyncio.to_thread(
            instance, self.directory / f"c{self.restarts}", self.redis, NODES[KILLABLE],
            self.options.workers)

    async def restart_redis(self) -> None:
        start = time.monotonic()
        marks = [server.log.mark for server in self.servers]
        self.redis.restart()
        self.result.kills["redis"] += 1
        for server, mark in zip(self.servers, marks, strict=True):
            for line in (r"registered in Redis again \(", r"every resubscribed channel"):
                await asyncio.to_thread(server.log.wait_for, line, self.options.workers,
                                        mark, 30)
        self.windows.append(Window(start, time.monotonic(), None, None))

    # -- checks -------------------------------------------------------------------------------

    def excused(self, channel: str, where: int, sent: float, answered: float) -> bool:
        owner = shard_for(channel, self.options.workers)
        return any(w.start <= answered and sent <= w.end
                   and w.instance in (None, where) and w.shard in (None, owner)
                   for w in self.windows)

    def count(self, stable: list[tuple[int, Member]]) -> None:
        for where, member in stable:
            for channel, accepted in self.accepted.items():
                got = member.received.get(channel, [])
                seen = Counter(got)
                self.result.expected += len(accepted)
                for n, sent, answered in accepted:
                    if seen[n]:
                        self.result.delivered += 1
                    elif self.excused(channel, where, sent, answered):
                        self.result.gap_lost += 1
                    else:
                        self.result.lost += 1
                self.result.duplicated += sum(c - 1 for c in seen.values() if c > 1)
                self.result.out_of_order += sum(1 for a, b in zip(got, got[1:], strict=False)
                                                if b <= a)

    async def run(self) -> Result:
        options = self.options
        started = time.monotonic()
        stable = [(where, await Member.connect(self.servers[where], f"stable-{where}-{n}"))
                  for where in (0, 1) for n in range(options.stable)]
        try:
            for _, member in stable:
                for channel in self.channels:
                    reply = await member.join(channel)
                    assert reply["event"] == "pushy:subscription-success", reply
            publishers = [asyncio.create_task(self.publish(c)) for c in self.channels]
            churners = [asyncio.create_task(self.churn(s)) for s in range(options.churners)]
            schedule = FaultSchedule(options.kill_interval, options.faults, self.stop_load)
            faults = asyncio.create_task(schedule.run(self.fault))
            await schedule.run_for(options.seconds)
            self.stop_load.set()
            await faults
            await asyncio.gather(*publishers)
            self.stop_churn.set()
            await asyncio.gather(*churners)
            self.result.duration = time.monotonic() - started
            for _, member in stable:  # each channel's last accepted event has arrived
                await member.wait_until(lambda m=member: all(
                    not acc or acc[-1][0] in m.received.get(c, [])
                    for c, acc in self.accepted.items()), 20)
            self.result.stable_lost_connection = sum(m.closed is not None for _, m in stable)
            self.count(stable)
            survivors = [m for _, m in stable] + [m for m in self.churners if m is not None]
            await check_presence(self.result, self.presence, survivors,
                                 lambda name: Member.connect(self.servers[0], name))
        finally:
            for member in [m for _, m in stable] + [m for m in self.churners if m]:
                await member.close()
        return self.result


async def run_soak(directory: Path, options: Options) -> tuple[Result, list[Cluster]]:
    redis = RedisServer()
    servers: list[Cluster] = []
    try:
        for node in NODES:
            servers.append(await asyncio.to_thread(instance, directory / node, redis, node,
                                                   options.workers))
        soak = ClusterSoak(directory, redis, servers, options)
        result = await soak.run()
        servers = soak.servers
    finally:
        for server in servers:
            server.stop()
        redis.stop()
    return result, servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--kill-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument("--churners", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    options = Options(seconds=args.minutes * 60, kill_interval=args.kill_interval,
                      seed=args.seed, churners=args.churners, workers=args.workers)
    print(f"cluster soak: {args.minutes:g} min, a fault every {args.kill_interval:g} s, seed "
          f"{args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pushy-csoak-") as directory:
        result, servers = asyncio.run(run_soak(Path(directory), options))
    print(result.table(options))
    if not result.ok:
        for node, server in zip(NODES, servers, strict=True):
            print(f"\nlast log lines of {node}:\n" + "\n".join(server.log.lines[-25:]))
    return 0 if result.ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
