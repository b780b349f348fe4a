"""The report's ratio table: ours against the floor of the same run, and against a record
of the original server."""

from __future__ import annotations

from pushy_shard.bench.report import Result, ratios


def result(scenario: str, server: str, protocol: str, **values: object) -> Result:
    params: dict[str, object] = {"protocol": protocol}
    if server == "floor":
        params["reference"] = "floor"
    return Result(scenario=scenario, server=server, params=params, ok=True, check="ok",
                  **values)  # type: ignore[arg-type]


def test_ours_over_the_floor_and_over_the_original() -> None:
    ours = result("b channels", "pushy-shard", "pushy", triggers_per_s=4000.0,
                  cpu_us_per_delivery=12.0)
    ours_pusher = result("b channels", "pushy-shard pusher", "pusher", triggers_per_s=3000.0,
                         cpu_us_per_delivery=15.0)
    floor = result("b channels", "floor", "pushy", triggers_per_s=16000.0,
                   cpu_us_per_delivery=3.0)
    original = result("b channels", "node", "pushy", triggers_per_s=2000.0,
                      cpu_us_per_delivery=24.0)
    table = ratios([ours, floor, ours_pusher], [original]).splitlines()
    assert table[0].split() == ["scenario", "protocol", "metric", "ours", "floor",
                                "ours/floor", "original", "ours/original"]
    rows = [line.split() for line in table[2:]]
    assert ["pushy", "triggers/s", "4,000.0", "16,000.0", "0.25", "2,000.0", "2.00"] == \
        rows[0][2:]
    assert rows[1][-4:] == ["3.0", "4.00", "24.0", "0.50"]
    # the pusher run has no floor of its protocol: only the original's column
    assert rows[2][2:] == ["pusher", "triggers/s", "3,000.0", "-", "-", "2,000.0", "1.50"]


def test_a_rate_pairs_only_with_the_same_rate_and_nothing_without_references() -> None:
    at = {"latency_ms": {"p50": 1.0, "p99": 4.0}, "cpu_us_per_delivery": 5.0}
    ours = result("c latency", "pushy-shard", "pushy", offered_per_s=22.0, **at)
    other_rate = result("c latency", "floor", "pushy", offered_per_s=44.0, **at)
    assert ratios([ours, other_rate], []) == ""
    same = result("c latency", "floor", "pushy", offered_per_s=22.0,
                  latency_ms={"p50": 0.5, "p99": 2.0}, cpu_us_per_delivery=4.0)
    table = ratios([ours, other_rate, same], [])
    assert "p99 ms" in table and "2.00" in table and "1.25" in table
    assert ratios([ours], []) == ""
