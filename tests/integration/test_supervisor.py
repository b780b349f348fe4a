"""The all-in-one supervisor's guards."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.harness import Cluster


def test_second_server_on_the_same_port_refuses_to_start(cluster: Cluster) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pushy_shard", str(cluster.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert f"port {cluster.port} is already in use" in result.stderr
    # the running server was not disturbed
    assert cluster.process.poll() is None
