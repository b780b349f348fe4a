"""The all-in-one supervisor's guards."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pushy_shard.errors import EXIT_ADDRESS_IN_USE
from tests.integration.harness import Cluster, free_port, write_config


def test_second_server_on_the_same_port_refuses_to_start(cluster: Cluster) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pushy_shard", str(cluster.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 1
    assert f"port {cluster.port} is already in use" in result.stderr
    # the running server was not disturbed
    assert cluster.process.poll() is None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pushy_shard", *args],
                          capture_output=True, text=True, timeout=30)


def test_a_taken_link_port_stops_the_server_instead_of_restarting_in_a_loop(
        tmp_path: Path) -> None:
    """The supervisor checks the public port; a shard's tcp link port taken by another
    process fails that shard's bind: one clear line, and the server stops (status 1)."""
    first = free_port(1 + 1 + 2)  # a shard, a front's relay, the hooks process's two
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        link = {"transport": "tcp", "tcp_port": first,
                "directory": tempfile.mkdtemp(prefix="ps-", dir="/tmp")}
        config_path = write_config(tmp_path, workers=1, fronts=1, link=link)
        result = _run(str(config_path))
        shutil.rmtree(link["directory"], ignore_errors=True)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"shard 1/1: tcp://127.0.0.1:{first}: already in use by another process" in output
    assert "stopping: the address is taken by another process" in output
    assert "restarting" not in output


def test_a_front_alone_on_a_taken_port_exits_with_its_own_status(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        config_path = write_config(tmp_path, workers=1, fronts=1, port=port)
        result = _run("front", "--index", "0", str(config_path))
    assert result.returncode == EXIT_ADDRESS_IN_USE, result.stderr
    assert (f"front 1/1: port 127.0.0.1:{port}: already in use by another process"
            in result.stderr)
    assert "Traceback" not in result.stderr
