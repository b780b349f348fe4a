"""Scenarios (d) memory of idle subscribed connections and (e) presence churn."""

from __future__ import annotations

import time

from pushy_shard.bench import procstat, wire
from pushy_shard.bench.measure import (
    GRACE_S,
    Settings,
    Span,
    account,
    fan_out,
    fill,
    log_mark,
    log_since,
    new_result,
    open_subscribers,
)
from pushy_shard.bench.report import Result
from pushy_shard.bench.target import Target


def _fd_notes(settings: Settings, target: Target, connections: int) -> list[str]:
    """Say where an open-files limit, ours or the server's, bounds the connection count."""
    notes = []
    per_process = -(-connections // max(1, min(settings.clients, connections)))
    if per_process + 64 > settings.nofile:
        notes.append(f"the load generator's open-files limit ({settings.nofile}) bounds the "
                     f"connections per client process ({per_process}); raise `ulimit -Hn`")
    limits = [lim for pid in target.pids() if (lim := procstat.open_files_limit(pid))]
    if limits and connections + 64 > min(limits):
        notes.append(f"a server process's open-files limit is {min(limits)}: with one front, "
                     f"{connections} connections may hit it")
    return notes


def idle(settings: Settings, target: Target, connections: int, settle: float) -> Result:
    """(d) C connections, each subscribed to a channel of its own, sitting idle: server memory
    above the empty server; then one trigger per channel proves every one is still live."""
    result = new_result("d idle", target, {"connections": connections})
    result.notes.extend(_fd_notes(settings, target, connections))
    mark = log_mark(target)
    prefix = f"bench-d-{settings.run_id}"
    time.sleep(settle)
    before = procstat.memory(target.pids()) if target.measurable else None
    subs = open_subscribers(settings, target, connections)
    try:
        result.connections_per_front = subs.connect().fronts
        subs.subscribe([f"1\t{wire.subscribe(target, f'{prefix}-{i}')}"
                        for i in range(connections)])
        time.sleep(settle)
        after = procstat.memory(target.pids()) if target.measurable else None
        records = wire.triggers(target, [(f"{prefix}-{i}", {"msg": "still there?"})
                                         for i in range(connections)])
        run = fan_out(settings, target, subs, [1] * connections, records, connections)
        fill(result, run)
    finally:
        subs.close()
    if before is not None and after is not None:
        result.memory = {
            "rss_empty": before.rss, "rss_after": after.rss,
            "pss_empty": before.pss, "pss_after": after.pss,
            "rss_per_conn": (after.rss - before.rss) / max(1, connections),
            "pss_per_conn": (after.pss - before.pss) / max(1, connections),
        }
    result.server_log_problems = log_since(target, mark)
    return result


def presence(settings: Settings, target: Target, channels: int, members: int,
             cycles: int) -> Result:
    """(e) `channels` presence channels of `members` members each; one more connection per
    channel joins and leaves it `cycles` times (closed loop). Every member must see each
    join and each leave exactly once."""
    result = new_result("e presence", target, {"channels": channels, "members": members,
                                               "cycles": cycles})
    mark = log_mark(target)
    prefix = wire.presence_channel(target, f"bench-e-{settings.run_id}")
    group = members + 1  # slot `members` of each group is the churner
    n = channels * group
    subs = open_subscribers(settings, target, n)
    try:
        connected = subs.connect()
        result.connections_per_front = connected.fronts
        plan = []
        for i, sid in enumerate(connected.socket_ids):
            channel, slot = f"{prefix}-{i // group}", i % group
            data = wire.presence_member(target, f"member-{slot}")
            token = wire.channel_token(target, sid, channel, data)
            join = wire.subscribe(target, channel, auth=token, presence=data)
            if slot == members:
                plan.append(f"C\t{join}\t{wire.unsubscribe(target, channel)}")
            else:
                plan.append(f"1\t{join}")
        subs.subscribe(plan)
        time.sleep(GRACE_S)  # presence-add of the members' own joins arrive before counting
        expected = [0 if i % group == members else 2 * cycles for i in range(n)]
        subs.arm(0, settings.timeout, expected)
        span = Span(target)
        churned = subs.churn(cycles, settings.timeout)
        done = subs.wait_done(settings.timeout)
        cpu = span.stop()
        time.sleep(GRACE_S)
        tally = subs.check()
        tally.timeout = done.timeout
    finally:
        subs.close()
    ops = 2 * sum(m["cycles"] for m in churned)
    active = [m for m in churned if m["churners"]]
    start = min(m["start_ns"] for m in active)
    end = max([m["end_ns"] for m in active] + [done.last_ns])
    seconds = max(end - start, 1) / 1e9
    failed = sum(m["failed"] for m in churned) or any(m["timeout"] for m in churned)
    result.ok = not tally.lost and not failed and ops == 2 * cycles * channels
    result.check = tally.describe()
    if failed or ops != 2 * cycles * channels:
        first = next((m["first_failure"] for m in churned if m["first_failure"]), "")
        result.check = (f"LOST: churners did {ops} of {2 * cycles * channels} joins+leaves"
                        f" ({first[:120]}); members: {result.check}")
    result.delivered, result.expected, result.seconds = tally.total, tally.expected, seconds
    result.ops_per_s = ops / seconds
    result.deliveries_per_s = tally.total / seconds
    result.client_cpu_s = done.client_cpu_ns / 1e9
    account(result, span, cpu, result.client_cpu_s)
    if cpu is not None:
        result.server_cpu_s = cpu
        result.cpu_us_per_delivery = cpu * 1e6 / tally.total if tally.total else None
        result.cpu_us_per_op = cpu * 1e6 / ops if ops else None
    result.server_log_problems = log_since(target, mark)
    return result
