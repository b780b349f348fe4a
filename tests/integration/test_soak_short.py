"""A short soak (tests/soak/soak.py) in the default run: churn, presence and a kill every
3 s for 25 s, and on until 6 kills are made (a slow machine recovers slower); no event to a
stable member is lost and every presence view is the server's."""

from __future__ import annotations

from pathlib import Path

from tests.soak.soak import Options, run_soak


async def test_short_soak_with_kills(tmp_path: Path) -> None:
    options = Options(seconds=25, kill_interval=3, seed=7, stable=3, churners=4, faults=6)
    result, cluster = await run_soak(tmp_path, options)
    summary = result.table(options)
    print(summary)
    assert result.ok, summary + "\n" + "\n".join(cluster.log.lines[-40:])
    assert sum(result.kills.values()) >= 6, summary
    assert result.churned > 10 and result.expected > 0, summary
