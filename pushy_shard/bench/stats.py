"""Latency histograms merged from every subscriber process, and their percentiles.

Buckets come from loadclient.c: 1 µs wide below 100 ms, 100 µs to 10 s, 1 ms above;
a bucket is named by its lower bound. The maximum is exact.
"""

from __future__ import annotations

from typing import Any

PERCENTILES = {"p50": 0.50, "p99": 0.99, "p99.9": 0.999}


class Histogram:
    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.n = 0
        self.max_us = 0
        self.sum_us = 0.0

    def merge(self, record: dict[str, Any]) -> None:
        """Add a histogram as loadclient prints it ({"n", "max_us", "sum_us", "buckets"})."""
        for value, count in record["buckets"]:
            self.buckets[value] = self.buckets.get(value, 0) + count
        self.n += record["n"]
        self.max_us = max(self.max_us, record["max_us"])
        self.sum_us += record["sum_us"]

    def percentile(self, q: float) -> int:
        """The smallest bucket value with at least a fraction q of the samples at or below."""
        if not self.n:
            return 0
        rank = min(self.n - 1, int(q * self.n))
        seen = 0
        for value in sorted(self.buckets):
            seen += self.buckets[value]
            if seen > rank:
                return value
        return self.max_us

    def summary(self) -> dict[str, float] | None:
        """Latency in milliseconds: p50, p99, p99.9, max, mean; None without samples."""
        if not self.n:
            return None
        result = {name: self.percentile(q) / 1000.0 for name, q in PERCENTILES.items()}
        result["max"] = self.max_us / 1000.0
        result["mean"] = self.sum_us / self.n / 1000.0
        result["samples"] = float(self.n)
        return result
