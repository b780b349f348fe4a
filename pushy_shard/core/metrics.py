"""Counters of one process, in a form every process can ship to the front that answers
`/metrics` (README, Observability). Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterator

Labels = tuple[tuple[str, str], ...]


class Metrics:
    """Monotonic counters keyed by name and labels. `inc` is cheap enough for per-message
    paths; per-delivery paths should count once per batch."""

    __slots__ = ("_counters",)

    def __init__(self) -> None:
        self._counters: dict[tuple[str, Labels], float] = {}

    def inc(self, name: str, labels: Labels = (), amount: float = 1) -> None:
        key = (name, labels)
        self._counters[key] = self._counters.get(key, 0) + amount

    def value(self, name: str, labels: Labels = ()) -> float:
        return self._counters.get((name, labels), 0)

    def __iter__(self) -> Iterator[tuple[str, Labels, float]]:
        for (name, labels), value in self._counters.items():
            yield name, labels, value
