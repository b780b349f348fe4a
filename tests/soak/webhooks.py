"""Webhook soak: every occupancy and presence transition announced exactly once, while shards
and fronts are SIGKILLed on a schedule and the receiver refuses some posts.

Runs the real server (supervisor, shards, fronts, the hooks process) with one Pusher app whose
webhook points at a test receiver (tests/integration/webhook_receiver.py: every post checked
with the official Python SDK; every `--fail-every`th post answered 500, so retries happen).
For `--minutes`, each cycler owns channels of its own and repeats: connect to any front,
subscribe (a presence channel with a user of its own, or a public one), wait until the
receiver has the channel_occupied (and member_added), then leave, and wait until it has
the member_removed and channel_vacated. Every wait ends on the receiver's post, never on a
fixed time. A cycler whose front is killed reconnects; its channel still vacates (the
front's members leave with it) and the cycle goes on.

At the end every channel's announcements must be exactly what its cycles did: occupied,
vacated, occupied, vacated..., once each, and the same for each user; a transition that
never came is a miss, one that came twice a duplicate. The hooks process is never killed
(what it holds in memory is lost with it, by design: README, Webhooks).

    python -m tests.soak.webhooks --minutes 10        (make soak runs it after the soak)
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
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tests.integration.harness import Cluster
from tests.integration.pusher_client import PusherClient
from tests.integration.webhook_receiver import Receiver
from tests.soak.soak import FaultSchedule, render

KEY, SECRET, APP_ID = "soak-key", "soak-secret", "30"
EVENTS = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]
WAIT = 30.0  # seconds one announcement may take through a kill, its restart and a retry


@dataclass
class Options:
    seconds: float = 600.0
    kill_interval: float = 5.0
    seed: int = 1
    cyclers: int = 8
    workers: int = 3
    fronts: int = 2
    hold: float = 0.3  # webhook_delivery.hold (3 s in production)
    fail_every: int = 10  # the receiver answers 500 to every Nth post
    faults: int = 0  # at least this many kills: the run goes on past `seconds` until made


@dataclass
class Result:
    duration: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    transitions: int = 0  # expected announcements
    announced: int = 0  # the ones the receiver got (2xx posts)
    posts: int = 0
    refused_posts: int = 0  # answered 500 by the receiver
    retries: float = 0.0  # the server's count
    duplicates: int = 0
    misses: int = 0
    invalid: int = 0  # posts the SDK did not validate
    dropped_connections: int = 0  # cycler connections ended by a killed front
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.duplicates == 0 and self.misses == 0 and self.invalid == 0
                and self.transitions > 0 and self.announced == self.transitions)

    def table(self, options: Options) -> str:
        rows = [
            ("duration", f"{self.duration:.0f} s ({options.workers} shards, {options.fronts} "
                         f"fronts, {options.cyclers} cyclers, seed {options.seed})"),
            ("kills (SIGKILL)", f"{sum(self.kills.values())}: " + ", ".join(
                f"{role} {n}" for role, n in sorted(self.kills.items()))),
            ("cycles", str(self.cycles)),
            ("transitions expected / announced", f"{self.transitions} / {self.announced}"),
            ("posts / refused by the receiver (500) / retries",
             f"{self.posts} / {self.refused_posts} / {self.retries:.0f}"),
            ("duplicates / misses", f"{self.duplicates} / {self.misses}"),
            ("posts the SDK did not validate", str(self.invalid)),
            ("connections dropped by a killed front", str(self.dropped_connections)),
            ("result", "OK" if self.ok else "FAILED"),
        ]
        return render(rows, self.details[:20])


class WebhookSoak:
    def __init__(self, cluster: Cluster, receiver: Receiver, options: Options) -> None:
        self.cluster = cluster
        self.receiver = receiver
        self.options = options
        self.random = random.Random(options.seed)
        self.result = Result()
        self.expected: dict[tuple[str, str | None], list[str]] = {}  # (channel, user) -> names
        self.uncertain: list[tuple[str, str | None]] = []  # subscribes a killed front cut
        self.stop = asyncio.Event()

    def _announced(self, channel: str, user: str | None) -> list[str]:
        names = ("member_added", "member_removed") if user else ("channel_occupied",
                                                                  "channel_vacated")
        return [e["name"] for e in self.receiver.named(*names) if e["channel"] == channel
                and (user is None or e["user_id"] == user)]

    async def _until(self, channel: str, user: str | None, count: int) -> bool:
        try:
            await self.receiver.until(lambda r: len(self._announced(channel, user)) >= count,
                                      WAIT)
            return True
        except AssertionError:
            return False

    async def cycle(self, slot: int) -> None:
        """One channel per cycle (so each channel's expected story is one occupied and one
        vacated); a subscribe cut short by a killed front leaves a channel whose story may
        be nothing or the pair: it is checked for that."""
        n = 0
        while not self.stop.is_set():
            n += 1
            presence = n % 2 == 0
            channel = f"{'presence-' if presence else ''}soak-{slot}-{n}"
            user = f"u{slot}" if presence else None
            try:
                client = await PusherClient.open(self.cluster, key=KEY, secret=SECRET)
            except (ConnectionError, OSError, aiohttp.ClientError, TimeoutError):
                self.result.dropped_connections += 1
                continue
            try:
                answer = await client.subscribe(channel, {"user_id": user} if user else None)
            except (ConnectionError, OSError, aiohttp.ClientError, TimeoutError):
                self.result.dropped_connections += 1
                self.uncertain.append((channel, user))
                await client.close()
                continue
            if answer.get("event") != "pusher_internal:subscription_succeeded":
                self.result.details.append(f"{channel}: subscription answered {answer}")
                await client.close()
                continue
            self._expect(channel, None, "channel_occupied")
            if user:
                self._expect(channel, user, "member_added")
            await self._wait_all(channel, user)
            await client.close()
            if user:
                self._expect(channel, user, "member_removed")
            self._expect(channel, None, "channel_vacated")
            await self._wait_all(channel, user)
            self.result.cycles += 1

    def _expect(self, channel: str, user: str | None, name: str) -> None:
        self.expected.setdefault((channel, user), []).append(name)

    async def _wait_all(self, channel: str, user: str | None) -> None:
        await self._until(channel, None, len(self.expected[channel, None]))
        if user:
            await self._until(channel, user, len(self.expected[channel, user]))

    async def kill_one(self) -> None:
        fronts = list(range(1, self.options.fronts))  # front 0 stays: the port stays served
        role, index = ("front", self.random.choice(fronts)) if fronts and \
            self.random.random() < 0.3 else ("shard", self.random.randrange(self.options.workers))
        mark = self.cluster.kill(role, index)
        self.result.kills[role] += 1
        await asyncio.to_thread(self.cluster.wait_restarted, role, index, mark)

    async def run(self) -> Result:
        started = time.monotonic()
        cyclers = [asyncio.create_task(self.cycle(slot)) for slot in range(self.options.cyclers)]
        schedule = FaultSchedule(self.options.kill_interval, self.options.faults, self.stop)
        killer = asyncio.create_task(schedule.run(self.kill_one))
        await schedule.run_for(self.options.seconds)
        self.stop.set()
        await killer
        await asyncio.gather(*cyclers)
        self.result.duration = time.monotonic() - started
        await self._settle()
        self._count()
        return self.result

    async def _settle(self) -> None:
        """Every expected announcement had its wait; one more look at what came since."""
        for (channel, user), names in self.expected.items():
            await self._until(channel, user, len(names))

    def _count(self) -> None:
        result = self.result
        for (channel, user), names in sorted(self.expected.items(),
                                             key=lambda item: (item[0][0], item[0][1] or "")):
            got = self._announced(channel, user)
            result.transitions += len(names)
            result.announced += min(len(got), len(names))
            if got == names:
                continue
            if len(got) > len(names):
                result.duplicates += len(got) - len(names)
            else:
                result.misses += len(names) - len(got)
            result.details.append(f"{channel} {user or ''}: expected {names}, got {got}")
        for channel, user in self.uncertain:  # joined and left with its front, or never
            stories = [self._announced(channel, None)]
            if user:
                stories.append(self._announced(channel, user))
            for got in stories:
                if len(got) not in (0, 2) or (got and got[0] not in ("channel_occupied",
                                                                     "member_added")):
                    result.duplicates += 1
                    result.details.append(f"{channel} {user or ''} (cut short): got {got}")
        result.posts = len(self.receiver.posts)
        result.refused_posts = sum(post.status != 200 for post in self.receiver.posts)
        result.invalid = len(self.receiver.invalid)


async def _retries(cluster: Cluster) -> float:
    async with aiohttp.ClientSession() as http, http.get(cluster.base_url + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith("pushy_webhook_retries_total "):
                return float(line.split()[1])
    return 0.0


async def run_webhook_soak(directory: Path, options: Options) -> tuple[Result, Cluster]:
    receiver = Receiver({KEY: SECRET}, fail_every=options.fail_every)
    await receiver.start()
    app = {"id": APP_ID, "key": KEY, "secret": SECRET,
           "webhooks": [{"url": receiver.url, "events": EVENTS}]}
    cluster = Cluster(directory, workers=options.workers, fronts=options.fronts, apps=[app],
                      webhook_delivery={"hold": options.hold, "batch_delay": 0.05,
                                        "post_timeout": 2, "retry_for": 120},
                      timeouts={"shard_recovery": 1})
    try:
        result = await WebhookSoak(cluster, receiver, options).run()
        result.retries = await _retries(cluster)
    finally:
        cluster.stop()
        await receiver.stop()
    return result, cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument("--cyclers", type=int, default=8)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--fronts", type=int, default=2)
    args = parser.parse_args(argv)
    options = Options(seconds=args.minutes * 60, kill_interval=args.kill_interval,
                      seed=args.seed, cyclers=args.cyclers, workers=args.workers,
                      fronts=args.fronts)
    print(f"webhook soak: {args.minutes:g} min, a kill every {args.kill_interval:g} s, seed "
          f"{args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pushy-soak-") as directory:
        result, cluster = asyncio.run(run_webhook_soak(Path(directory), options))
    print(result.table(options))
    if not result.ok:
        print("\nlast server log lines:\n" + "\n".join(cluster.log.lines[-40:]))
    return 0 if result.ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
