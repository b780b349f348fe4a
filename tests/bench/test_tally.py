"""How a run's counts become its verdict and the latency figures (no processes)."""

from __future__ import annotations

from pushy_shard.bench.drivers import Tally
from pushy_shard.bench.stats import Histogram


def test_exact_counts_are_ok() -> None:
    tally = Tally(total=100, expected=100)
    assert not tally.lost
    assert tally.describe() == "ok: 100 delivered == 100 expected"


def test_short_connections_are_lost_with_counts() -> None:
    tally = Tally(total=98, expected=100, under=2, mismatch=[(3, 9, 10), (7, 9, 10)])
    assert tally.lost
    text = tally.describe()
    assert text.startswith("LOST: 98 delivered, 100 expected; 2 connections short")
    assert "conn 3: 9/10" in text


def test_duplicates_and_timeouts_are_lost_too() -> None:
    assert Tally(total=101, expected=100, over=1).lost
    assert Tally(total=100, expected=100, timeout=True).lost


def test_percentiles_from_merged_buckets() -> None:
    histogram = Histogram()
    histogram.merge({"n": 900, "max_us": 900, "sum_us": 90_000.0, "buckets": [[100, 900]]})
    histogram.merge({"n": 100, "max_us": 5_000, "sum_us": 300_000.0,
                     "buckets": [[2_000, 99], [5_000, 1]]})
    summary = histogram.summary()
    assert summary is not None
    assert summary["p50"] == 0.1
    assert summary["p99"] == 2.0
    assert summary["p99.9"] == 5.0
    assert summary["max"] == 5.0
    assert Histogram().summary() is None
