"""A short cluster soak (tests/soak/cluster.py) in the default run: three instances on a
real redis-server, churn and presence, a fault (a shard, instance C or Redis) every 3 s for
20 s and on until 5 are made; no event to a stable member is lost outside a fault's gap, none
is duplicated or out of order, and every presence view is the list."""

from __future__ import annotations

from pathlib import Path

from tests.integration.redis_server import find_redis_server
from tests.soak.cluster import Options, run_soak


async def test_short_cluster_soak_with_faults(tmp_path: Path) -> None:
    find_redis_server()  # skips (fails under CI) without one
    options = Options(seconds=20, kill_interval=3, seed=5, churners=4, faults=5)
    result, servers = await run_soak(tmp_path, options)
    summary = result.table(options)
    print(summary)
    assert result.ok, summary + "\n" + "\n".join(servers[0].log.lines[-40:])
    assert sum(result.kills.values()) >= 5, summary
    assert result.churned > 10 and result.expected > 0, summary
