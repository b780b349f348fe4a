"""Scenarios (a) burst to one big channel, (b) many small channels, (c) latency at fixed
offered rates."""

from __future__ import annotations

from pushy_shard.bench import wire
from pushy_shard.bench.measure import (
    Settings,
    fan_out,
    fill,
    log_mark,
    log_since,
    new_result,
    open_subscribers,
)
from pushy_shard.bench.report import Result
from pushy_shard.bench.target import Target


def _split(total: int, parts: int) -> list[int]:
    """How many of `total` round-robin items land on each of `parts` slots."""
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


def burst(settings: Settings, target: Target, subscribers: int, events: int,
          scenario: str = "a burst") -> Result:
    """(a) S subscribers on one channel, E triggers as fast as the server takes them."""
    result = new_result(scenario, target, {"subscribers": subscribers, "events": events})
    mark = log_mark(target)
    channel = f"bench-a-{settings.run_id}"
    subs = open_subscribers(settings, target, subscribers)
    try:
        result.connections_per_front = subs.connect().fronts
        subs.subscribe([f"1\t{wire.subscribe(target, channel)}"] * subscribers)
        records = wire.triggers(target, [(channel, {"msg": "burst", "n": k})
                                         for k in range(events)])
        run = fan_out(settings, target, subs, [events] * subscribers, records, events)
        fill(result, run)
    finally:
        subs.close()
    result.server_log_problems = log_since(target, mark)
    return result


def _channel_subscriptions(target: Target, prefix: str, channels: int, per_channel: int
                           ) -> list[str]:
    """Connection i joins channel i % channels: each channel's members span every process."""
    return [f"1\t{wire.subscribe(target, f'{prefix}-{i % channels}')}"
            for i in range(channels * per_channel)]


def channels(settings: Settings, target: Target, channels: int, per_channel: int,
             triggers: int, scenario: str = "b channels") -> Result:
    """(b) `channels` channels of `per_channel` subscribers; `triggers` spread round robin."""
    result = new_result(scenario, target, {"channels": channels, "per_channel": per_channel,
                                           "triggers": triggers})
    mark = log_mark(target)
    prefix = f"bench-b-{settings.run_id}"
    n = channels * per_channel
    subs = open_subscribers(settings, target, n)
    try:
        result.connections_per_front = subs.connect().fronts
        subs.subscribe(_channel_subscriptions(target, prefix, channels, per_channel))
        records = wire.triggers(target, [(f"{prefix}-{k % channels}", {"msg": "many", "n": k})
                                         for k in range(triggers)])
        per_channel_count = _split(triggers, channels)
        expected = [per_channel_count[i % channels] for i in range(n)]
        fill(result, fan_out(settings, target, subs, expected, records, triggers))
    finally:
        subs.close()
    result.server_log_problems = log_since(target, mark)
    return result


def latency(settings: Settings, target: Target, rates: list[float], duration: float,
            channels: int, per_channel: int) -> list[Result]:
    """(c) For each offered trigger rate: triggers on a fixed schedule for `duration` seconds;
    latency from each trigger's intended send time to its delivery (no coordinated omission).
    Stops after a rate the server could not deliver in time."""
    prefix = f"bench-c-{settings.run_id}"
    n = channels * per_channel
    results = []
    subs = open_subscribers(settings, target, n)
    try:
        fronts = subs.connect().fronts
        subs.subscribe(_channel_subscriptions(target, prefix, channels, per_channel))
        for rate in rates:
            mark = log_mark(target)
            count = max(1, int(rate * duration))
            result = new_result("c latency", target, {
                "rate": rate, "seconds": duration, "channels": channels,
                "per_channel": per_channel})
            result.offered_per_s = rate
            result.connections_per_front = fronts
            records = wire.triggers(target, [
                (f"{prefix}-{k % channels}", {"bt": round(k * 1e6 / rate)})
                for k in range(count)])
            per_channel_count = _split(count, channels)
            expected = [per_channel_count[i % channels] for i in range(n)]
            run = fan_out(settings, target, subs, expected, records, count, rate=rate,
                          seconds=duration + settings.timeout)
            fill(result, run)
            lag = run.published.max_lag_us / 1000
            if lag > 10:
                result.notes.append(
                    f"publisher sent up to {lag:.0f} ms behind schedule (its connections all "
                    "waiting for answers, or no CPU free); latency counts from the schedule")
            result.server_log_problems = log_since(target, mark)
            results.append(result)
            if run.tally.timeout:
                result.notes.append("not all delivered in time: higher rates skipped")
                break
    finally:
        subs.close()
    return results
