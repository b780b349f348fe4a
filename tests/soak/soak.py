"""Soak: connection and presence churn while shards and fronts are SIGKILLed on a schedule.

Runs the real server (`python -m pushy_shard CONFIG`: the supervisor and its children) on a
free port, and for `--minutes`:

- stable members (on front 0, which is never killed) sit in every public and presence
  channel and must receive every event the server accepted (HTTP 200/201), in order;
- churners connect to any front, join a presence channel, stay a moment, leave or drop,
  and start again (a churner whose front is killed reconnects);
- one publisher per channel sends sequence-numbered, signed triggers one after another;
- every `--kill-interval` seconds a random shard, or a front other than front 0, is SIGKILLed
  (pids from the supervisor's log) and the supervisor restarts it.

"Stable" means: connected to a front that is never killed, for the whole run. Members of a
killed front lose their connection by design (ARCHITECTURE.md 6), so they cannot be stable.

At the end kills and churn stop, the last restart is awaited, and each presence channel is
checked: a fresh client joins; once every surviving member has seen its presence-add (events
of a channel arrive in one order, so everything before it has arrived too), each member's
view (built from subscription-success, presence-add and presence-quit) must equal the
server's list. Exit status 1 on any lost, duplicated or reordered event to a stable member,
any inconsistent presence view, or a stable member that lost its connection.

    python -m tests.soak.soak --minutes 10        (make soak SOAK_ARGS="--minutes 2")
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from tests.integration.harness import Cluster, PushyClient, channel_token, sign

EVENT = "soak"
FRONT_NEVER_KILLED = 0


@dataclass
class Options:
    seconds: float = 600.0
    kill_interval: float = 5.0
    seed: int = 1
    stable: int = 4
    churners: int = 6
    public_channels: int = 3
    presence_channels: int = 2
    trigger_pause: float = 0.05  # between one publisher's triggers
    workers: int = 3
    fronts: int = 2
    faults: int = 0  # at least this many kills: the run goes on past `seconds` until made


class FaultSchedule:
    """A fault every `interval` s, counted from the last one's recovery, until `stop`.

    How many fit in a run's seconds depends on how fast the machine recovers, so a run that
    needs `at_least` of them lasts until they are made (`run_for`): a short soak on a slow
    machine gets the faults it asked for instead of failing its count."""

    def __init__(self, interval: float, at_least: int, stop: asyncio.Event) -> None:
        self.interval, self.at_least, self.stop = interval, at_least, stop
        self.made = 0
        self.enough = asyncio.Event()
        if at_least <= 0:
            self.enough.set()

    async def run(self, fault: Callable[[], Awaitable[None]]) -> None:
        """Call `fault` (which returns once its fault is recovered from) on the schedule."""
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), self.interval)
                return
            except TimeoutError:
                pass
            await fault()
            self.made += 1
            if self.made >= self.at_least:
                self.enough.set()

    async def run_for(self, seconds: float) -> None:
        """The run's length: `seconds`, then until `at_least` faults are made, for at most
        `seconds` more (past that, the caller's count of faults says it fell short)."""
        await asyncio.sleep(seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.enough.wait(), seconds)


def render(rows: list[tuple[str, str]], details: list[str]) -> str:
    """A soak's summary: one aligned row per figure, then the details indented."""
    width = max(len(name) for name, _ in rows)
    lines = [f"{name.ljust(width)}  {value}" for name, value in rows]
    return "\n".join(lines + [f"  {detail}" for detail in details])


@dataclass
class Result:
    duration: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    triggers_sent: int = 0
    triggers_accepted: int = 0
    triggers_refused: Counter[int] = field(default_factory=Counter)  # status -> count
    trigger_errors: int = 0  # no HTTP answer (connection reset by a dying front)
    expected: int = 0  # accepted events x stable members
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    refused_but_delivered: int = 0
    presence_passed: int = 0
    presence_failed: int = 0
    presence_details: list[str] = field(default_factory=list)
    churned: int = 0  # churner connections opened
    churner_drops: int = 0  # churner connections ended by a killed front
    churner_errors: Counter[str] = field(default_factory=Counter)
    stable_lost_connection: int = 0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0
                and self.presence_failed == 0 and self.presence_passed > 0
                and self.stable_lost_connection == 0 and self.triggers_accepted > 0)

    def table(self, options: Options) -> str:
        refused = ", ".join(f"{n}x {status}" for status, n in sorted(self.triggers_refused.items()))
        rows = [
            ("duration", f"{self.duration:.0f} s ({options.workers} shards, {options.fronts} "
                         f"fronts, seed {options.seed})"),
            ("stable members", f"{options.stable}, all on front {FRONT_NEVER_KILLED} (never "
                               "killed), in every channel for the whole run"),
            ("kills (SIGKILL)", f"{sum(self.kills.values())}: " + ", ".join(
                f"{role} {n}" for role, n in sorted(self.kills.items()))),
            ("triggers sent / accepted / refused / no answer",
             f"{self.triggers_sent} / {self.triggers_accepted} / "
             f"{sum(self.triggers_refused.values())} ({refused or 'none'}) / "
             f"{self.trigger_errors}"),
            ("events expected / delivered to stable members",
             f"{self.expected} / {self.delivered}"),
            ("lost / duplicated / out of order", f"{self.lost} / {self.duplicated} / "
                                                 f"{self.out_of_order}"),
            ("refused triggers delivered anyway", str(self.refused_but_delivered)),
            ("presence checks passed / failed", f"{self.presence_passed} / "
                                                f"{self.presence_failed}"),
            ("connections churned", f"{self.churned} ({self.churner_drops} dropped by a "
                                    "killed front)"),
            ("churner errors", ", ".join(f"{k}: {n}" for k, n in sorted(
                self.churner_errors.items())) or "none"),
            ("stable members that lost their connection", str(self.stable_lost_connection)),
            ("result", "OK" if self.ok else "FAILED"),
        ]
        return render(rows, self.presence_details)


class Member:
    """A client whose reader task sorts what arrives: events, presence changes, replies."""

    def __init__(self, client: PushyClient, name: str) -> None:
        self.client = client
        self.name = name
        self.received: dict[str, list[int]] = {}
        self.views: dict[str, dict[str, str]] = {}  # channel -> memberId -> name
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.changed = asyncio.Condition()
        self.closed: str | None = None
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, cluster: Cluster, name: str, front: int | None = None) -> Member:
        return cls(await cluster.client(front=front), name)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.client.next(timeout=3600)
                self._take(message)
                async with self.changed:
                    self.changed.notify_all()
        except (ConnectionError, TimeoutError, aiohttp.ClientError) as exc:
            self.closed = repr(exc)
            async with self.changed:
                self.changed.notify_all()
            await self.replies.put({"event": "closed"})

    def _take(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        channel = message.get("channel", "")
        data = message.get("data") or {}
        if event == EVENT:
            self.received.setdefault(channel, []).append(data["n"])
        elif event == "pushy:presence-add":
            member = data["member"]
            self.views.setdefault(channel, {})[member["memberId"]] = member.get("name", "")
        elif event == "pushy:presence-quit":
            self.views.setdefault(channel, {}).pop(data["member"]["memberId"], None)
        else:
            if event == "pushy:subscription-success" and "presence" in data:
                self.views[data["channel"]] = {r["memberId"]: r.get("name", "")
                                               for r in data["presence"]}
            elif event == "pushy:subscription-end":
                self.views.pop(data["channel"], None)
            self.replies.put_nowait(message)

    async def request(self, command: str, data: dict[str, Any]) -> dict[str, Any]:
        """The reply to one command, or `{"event": "closed"}` once the connection is gone."""
        try:
            await self.client.send(command, data)
        except (ConnectionError, aiohttp.ClientError):
            return {"event": "closed"}
        return await asyncio.wait_for(self.replies.get(), 30)

    async def join(self, channel: str) -> dict[str, Any]:
        if not channel.startswith("private-"):
            return await self.request("subscribe", {"channel": channel})
        data = json.dumps({"name": self.name})
        auth = channel_token(self.client.socket_id, channel, data)
        return await self.request("subscribe", {"channel": channel, "auth": auth, "data": data})

    async def wait_until(self, predicate: Any, timeout: float) -> bool:
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(
                    lambda: predicate() or self.closed is not None), timeout)
            except TimeoutError:
                return False
        return bool(predicate())

    async def close(self) -> None:
        self.reader.cancel()
        try:
            await self.client.close()
        except (ConnectionError, aiohttp.ClientError):
            pass


class PresenceTally(Protocol):
    presence_passed: int
    presence_failed: int
    presence_details: list[str]


async def check_presence(result: PresenceTally, channels: list[str], members: list[Member],
                         checker: Callable[[str], Awaitable[Member]],
                         trace: list[str] | None = None) -> None:
    """A fresh client (`checker`) joins each presence channel; once every member inside has
    seen its presence-add (events of a channel arrive in one order, so everything before it
    has arrived too), each member's view must equal the list the checker got, and the list
    must be exactly the connected members."""
    for channel in channels:
        check = await checker(f"checker-{channel}")
        try:
            reply = await check.join(channel)
            assert reply["event"] == "pushy:subscription-success", reply
            server = {r["memberId"]: r.get("name", "") for r in reply["data"]["presence"]}
            mine = reply["data"]["memberId"]
            inside = [m for m in members if channel in m.views and m.closed is None]
            for member in inside:
                await member.wait_until(
                    lambda v=member.views, c=channel, i=mine: i in v.get(c, {}), 15)
                view = member.views.get(channel, {})
                if view == server:
                    result.presence_passed += 1
                    continue
                result.presence_failed += 1
                ghosts = sorted(set(view) ^ set(server))
                result.presence_details.append(
                    f"{channel}: {member.name} sees {sorted(view.values())}, the list is "
                    f"{sorted(server.values())}; differing member ids {ghosts}")
                for ghost in ghosts:
                    result.presence_details += [f"    {line}" for line in trace or ()
                                                if ghost in line]
            expected = Counter(m.name for m in inside) + Counter([check.name])
            if Counter(server.values()) == expected:
                result.presence_passed += 1
            else:
                result.presence_failed += 1
                result.presence_details.append(
                    f"{channel}: the list is {sorted(server.values())}, the connected "
                    f"members are {sorted(expected.elements())}")
            await check.request("unsubscribe", {"channel": channel})
        finally:
            await check.close()


class Soak:
    def __init__(self, cluster: Cluster, options: Options) -> None:
        self.cluster = cluster
        self.options = options
        self.rng = random.Random(options.seed)
        self.result = Result()
        self.public = [f"soak-pub-{n}" for n in range(options.public_channels)]
        self.presence = [f"private-soak-{n}" for n in range(options.presence_channels)]
        self.accepted: dict[str, list[int]] = {c: [] for c in self.public + self.presence}
        self.refused: dict[str, set[int]] = {c: set() for c in self.public + self.presence}
        self.stop_load = asyncio.Event()
        self.stop_churn = asyncio.Event()
        self.churn_parked = 0
        self.churners: list[Member | None] = [None] * options.churners
        self.started = time.monotonic()
        self.trace: list[str] = []  # kills and churner memberships, for failure reports

    def note(self, text: str) -> None:
        self.trace.append(f"{time.monotonic() - self.started:8.3f}s {text}")

    # -- load ---------------------------------------------------------------------------------

    async def publish(self, channel: str, http: aiohttp.ClientSession) -> None:
        n = 0
        while not self.stop_load.is_set():
            data = {"n": n}
            ts = int(time.time())
            canon = json.dumps(data, separators=(",", ":"))
            key = sign(f"{channel}:{EVENT}:{ts}:{canon}:{self.cluster.secret}")
            query = urllib.parse.urlencode({"event": EVENT, "timestamp": ts, "auth_key": key})
            url = f"{self.cluster.base_url}/pushy/channel/{channel}/trigger?{query}"
            self.result.triggers_sent += 1
            try:
                async with http.post(url, json=data) as response:
                    await response.read()
                    if response.status in (200, 201):
                        self.result.triggers_accepted += 1
                        self.accepted[channel].append(n)
                    else:
                        self.result.triggers_refused[response.status] += 1
                        self.refused[channel].add(n)
            except (aiohttp.ClientError, TimeoutError):
                self.result.trigger_errors += 1
                self.refused[channel].add(n)
            n += 1
            await asyncio.sleep(self.options.trigger_pause)  # a rate, not a wait for an event

    async def churn(self, slot: int) -> None:
        rng = random.Random(self.rng.getrandbits(32))
        while not self.stop_churn.is_set():
            try:
                member = await Member.connect(self.cluster, f"churner-{slot}")
            except (ConnectionError, aiohttp.ClientError, TimeoutError, AssertionError) as exc:
                self.result.churner_errors[f"connect: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.2)  # the kernel may still route to a dying front
                continue
            self.result.churned += 1
            self.churners[slot] = member
            try:
                while not self.stop_churn.is_set() and member.closed is None:
                    channel = rng.choice(self.presence)
                    reply = await member.join(channel)
                    if reply["event"] == "closed":
                        break
                    member_id = reply.get("data", {}).get("memberId")
                    self.note(f"{member.name} front {member.client.front} joined {channel} "
                              f"as {member_id}: {reply['event']}")
                    if reply["event"] != "pushy:subscription-success":
                        self.result.churner_errors[f"join: {reply}"[:80]] += 1
                        continue
                    await asyncio.sleep(rng.uniform(0.1, 1.5))  # dwell time: load shape
                    if self.stop_churn.is_set():
                        break  # stay joined: survivors are checked at the end
                    if rng.random() < 0.5:
                        self.note(f"{member.name} {member_id} unsubscribes")
                        reply = await member.request("unsubscribe", {"channel": channel})
                        self.note(f"{member.name} {member_id} unsubscribe: {reply['event']}")
                        if reply["event"] not in ("pushy:subscription-end", "closed"):
                            self.result.churner_errors[f"leave: {reply}"[:80]] += 1
                    else:
                        self.note(f"{member.name} {member_id} closes its connection")
                        break  # drop the connection while joined
            except TimeoutError:
                self.result.churner_errors["no reply in 30 s"] += 1
            if member.closed is not None:
                self.note(f"{member.name} front {member.client.front} dropped: {member.closed}")
                self.result.churner_drops += 1
                self.churners[slot] = None
                await member.close()
            elif not self.stop_churn.is_set():
                self.churners[slot] = None
                await member.close()

    async def kill_one(self) -> None:
        children = [("shard", j) for j in range(self.options.workers)]
        children += [("front", i) for i in range(self.options.fronts) if i != FRONT_NEVER_KILLED]
        role, index = self.rng.choice(children)
        mark = self.cluster.kill(role, index)
        self.note(f"KILL {role} {index}")
        self.result.kills[role] += 1
        await asyncio.to_thread(self.cluster.wait_restarted, role, index, mark)
        self.note(f"restarted {role} {index}")
        if role == "front":
            await asyncio.to_thread(self.cluster.log.wait_for,
                                    rf"front {index + 1}/\d+ ready", 1, mark)

    # -- checks -------------------------------------------------------------------------------

    def count_deliveries(self, stable: list[Member]) -> None:
        for member in stable:
            for channel, accepted in self.accepted.items():
                got = member.received.get(channel, [])
                seen = Counter(got)
                self.result.expected += len(accepted)
                self.result.delivered += sum(1 for n in accepted if seen[n])
                self.result.lost += sum(1 for n in accepted if not seen[n])
                self.result.duplicated += sum(c - 1 for c in seen.values() if c > 1)
                wanted = set(accepted)
                order = [n for n in got if n in wanted]
                self.result.out_of_order += sum(1 for a, b in zip(order, order[1:], strict=False)
                                                if b <= a)
                self.result.refused_but_delivered += sum(
                    1 for n in set(got) if n in self.refused[channel])

    async def check_presence(self, members: list[Member]) -> None:
        await check_presence(self.result, self.presence, members, lambda name: Member.connect(
            self.cluster, name, front=FRONT_NEVER_KILLED), self.trace)

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> Result:
        options = self.options
        started = time.monotonic()
        stable = [await Member.connect(self.cluster, f"stable-{n}", front=FRONT_NEVER_KILLED)
                  for n in range(options.stable)]
        try:
            for member in stable:
                for channel in self.public + self.presence:
                    reply = await member.join(channel)
                    assert reply["event"] == "pushy:subscription-success", reply
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
                publishers = [asyncio.create_task(self.publish(c, http))
                              for c in self.public + self.presence]
                churners = [asyncio.create_task(self.churn(slot))
                            for slot in range(options.churners)]
                schedule = FaultSchedule(options.kill_interval, options.faults, self.stop_load)
                killer = asyncio.create_task(schedule.run(self.kill_one))
                await schedule.run_for(options.seconds)
                self.stop_load.set()
                await killer  # the last kill's restart is awaited
                await asyncio.gather(*publishers)
                self.stop_churn.set()
                await asyncio.gather(*churners)
            self.result.duration = time.monotonic() - started
            # every accepted event reaches every stable member (they are in one order)
            for member in stable:
                await member.wait_until(lambda m=member: all(
                    not acc or acc[-1] in m.received.get(c, []) for c, acc in
                    self.accepted.items()), 20)
            self.result.stable_lost_connection = sum(m.closed is not None for m in stable)
            self.count_deliveries(stable)
            survivors = stable + [m for m in self.churners if m is not None]
            await self.check_presence(survivors)
            if self.result.presence_failed:
                self.result.presence_details += ["kills:"] + [
                    f"    {line}" for line in self.trace if "KILL" in line or "restarted" in line]
        finally:
            for member in stable + [m for m in self.churners if m is not None]:
                await member.close()
        return self.result


async def run_soak(directory: Path, options: Options) -> tuple[Result, Cluster]:
    cluster = Cluster(directory, workers=options.workers, fronts=options.fronts)
    try:
        result = await Soak(cluster, options).run()
    finally:
        cluster.stop()
    return result, cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--kill-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", "1")))
    parser.add_argument("--stable", type=int, default=4)
    parser.add_argument("--churners", type=int, default=6)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--fronts", type=int, default=2)
    args = parser.parse_args(argv)
    if args.fronts < 2:
        parser.error("--fronts must be at least 2: front 0 is never killed")
    options = Options(seconds=args.minutes * 60, kill_interval=args.kill_interval,
                      seed=args.seed, stable=args.stable, churners=args.churners,
                      workers=args.workers, fronts=args.fronts)
    print(f"soak: {args.minutes:g} min, a kill every {args.kill_interval:g} s, seed "
          f"{args.seed}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pushy-soak-") as directory:
        result, cluster = asyncio.run(run_soak(Path(directory), options))
    print(result.table(options))
    if not result.ok:
        print("\nlast server log lines:\n" + "\n".join(cluster.log.lines[-40:]))
    return 0 if result.ok else 1


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
