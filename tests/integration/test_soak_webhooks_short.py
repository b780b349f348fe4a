"""A short webhook soak (tests/soak/webhooks.py) in the default run: 25 s and at least 5
kills, a shard or front killed every 3 s, every 10th post refused: every transition announced
exactly once."""

from __future__ import annotations

from pathlib import Path

from tests.soak.webhooks import Options, run_webhook_soak


async def test_short_webhook_soak_with_kills(tmp_path: Path) -> None:
    options = Options(seconds=25, kill_interval=3, seed=7, cyclers=6, faults=5)
    result, cluster = await run_webhook_soak(tmp_path, options)
    summary = result.table(options)
    print(summary)
    assert result.ok, summary + "\n" + "\n".join(cluster.log.lines[-40:])
    assert sum(result.kills.values()) >= 5 and result.cycles > 20, summary
    assert result.refused_posts > 0 and result.retries > 0, summary
