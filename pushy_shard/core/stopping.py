"""How one `shutdown_timeout` is shared by a graceful stop (SIGTERM), as plain numbers.

Fronts stop first: they tell clients to reconnect and wait for requests still in flight,
which need the shards alive to be answered. Shards stop after them and only flush what
they hold, so they get a short reserve at the end. Every process computes the same plan
from the same config, so a front alone (under supervisord) keeps to the same bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StopPlan", "stop_plan"]


@dataclass(frozen=True, slots=True)
class StopPlan:
    """Seconds after the stop began (all three at most `total`)."""

    drain: float  # a front stops waiting for in-flight requests and closes what is left
    fronts: float  # the supervisor kills fronts still running
    total: float  # the supervisor kills shards still running; the stop is over


def stop_plan(timeout: float) -> StopPlan:
    """Split `timeout`: the shards' reserve (at most 1 s) comes off the end, then a front's
    margin (at most 0.5 s) to close its sockets and exit after draining."""
    reserve = min(1.0, timeout * 0.2)
    margin = min(0.5, timeout * 0.1)
    fronts = timeout - reserve
    return StopPlan(drain=fronts - margin, fronts=fronts, total=timeout)
