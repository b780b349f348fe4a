"""The benchmark tool measures a real server end to end and its record says so.

A correctness check of the tool (tiny sizes, a started server), not a timing assertion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pushy_shard.bench import cli, native, procstat, target
from tests.integration.redis_server import find_redis_server

pytestmark = pytest.mark.skipif(
    native.find_compiler() is None,
    reason="no C compiler (cc, gcc or clang): the bench's load generator is C built at first use",
)


def run(tmp_path: Path, *args: str, clients: int = 1) -> dict[str, Any]:
    out = tmp_path / "record.json"
    status = cli.main([*args, "--workers", "2", "--fronts", "1", "--clients", str(clients),
                       "--timeout", "15", "--json", str(out)])
    record = json.loads(out.read_text())
    assert status == 0, record
    return record


def test_burst_delivers_everything_and_reports_rates(tmp_path: Path) -> None:
    # big enough that the server's CPU over the timed span is at least a few clock ticks
    # (10 ms each): coalesced fan-out costs about 1 us per delivery
    record = run(tmp_path, "burst", "--subscribers", "100", "--events", "200")
    assert record["all_ok"] is True
    assert record["machine"]["nproc"] >= 1
    assert record["machine"]["python"]
    assert [r["params"]["protocol"] for r in record["results"]] == ["pushy", "pusher"]
    for result in record["results"]:  # the same run over both protocols
        assert result["scenario"] == "a burst"
        assert result["params"] == {"subscribers": 100, "events": 200,
                                    "protocol": result["params"]["protocol"]}
        assert result["ok"] is True and result["check"].startswith("ok")
        assert result["delivered"] == result["expected"] == 100 * 200
        assert result["deliveries_per_s"] > 0 and result["triggers_per_s"] > 0
        assert result["server_cpu_s"] > 0 and result["cpu_us_per_delivery"] > 0
        assert sum(result["connections_per_front"].values()) == 100


def test_idle_connections_report_memory_and_stay_live(tmp_path: Path) -> None:
    record = run(tmp_path, "idle", "--connections", "50", "--settle", "0.2",
                 "--protocol", "pusher")
    (result,) = record["results"]
    assert result["scenario"] == "d idle" and result["params"]["protocol"] == "pusher"
    assert result["ok"] is True
    assert result["delivered"] == result["expected"] == 50
    memory = result["memory"]
    assert memory["rss_after"] > 0 and memory["rss_empty"] > 0
    assert memory["pss_after"] > 0
    assert "rss_per_conn" in memory and "pss_per_conn" in memory


def test_presence_churn_on_both_protocols(tmp_path: Path) -> None:
    record = run(tmp_path, "presence", "--presence-channels", "3", "--members", "4",
                 "--cycles", "10")
    for result in record["results"]:
        assert result["ok"] is True, result["check"]
        assert result["ops_per_s"] > 0
        assert result["delivered"] == result["expected"] == 3 * 4 * 2 * 10


@pytest.mark.parametrize("scenario", [
    ["burst", "--subscribers", "20", "--events", "50"],
    ["channels", "--channels", "5", "--per-channel", "4", "--triggers", "200"],
    ["presence", "--presence-channels", "3", "--members", "4", "--cycles", "10"],
    ["latency", "--channels", "2", "--per-channel", "5", "--rates", "50", "--duration", "0.5"],
])
def test_the_floor_serves_every_scenario_beside_ours(tmp_path: Path, scenario: list[str]
                                                     ) -> None:
    record = run(tmp_path, *scenario, "--floor")
    results = record["results"]
    floors = [r for r in results if r["params"].get("reference") == "floor"]
    assert [r["params"]["protocol"] for r in floors] == ["pushy", "pusher"]
    assert len(results) == 4  # ours, then the floor, per protocol
    for result in results:
        assert result["ok"] is True, result["check"]
        assert result["delivered"] == result["expected"] > 0
        assert result["server_cpu_s"] is not None
    assert all(r["server"].startswith("floor (C) x1") for r in floors)


def test_idle_connections_on_the_floor(tmp_path: Path) -> None:
    record = run(tmp_path, "idle", "--connections", "30", "--settle", "0.2", "--floor",
                 "--protocol", "pushy")
    ours, floor = record["results"]
    assert floor["params"]["reference"] == "floor" and floor["ok"] is True
    assert floor["delivered"] == floor["expected"] == 30
    assert floor["memory"]["rss_after"] > 0


def test_scaling_runs_both_measures_at_each_size(tmp_path: Path) -> None:
    record = run(tmp_path, "scaling", "--sizes", "1,2", "--subscribers", "20",
                 "--scale-events", "20", "--channels", "4", "--per-channel", "3",
                 "--scale-triggers", "40")
    results = record["results"]
    assert [(r["scenario"], r["params"]["fronts"], r["params"]["workers"]) for r in results] == [
        ("f burst", 1, 1), ("f channels", 1, 1), ("f burst", 2, 2), ("f channels", 2, 2)]
    for result in results:
        assert result["ok"] is True, result["check"]
        assert result["delivered"] == result["expected"] > 0
    assert sum(results[2]["connections_per_front"].values()) == 20


def test_cluster_pair_beside_one_instance(tmp_path: Path) -> None:
    find_redis_server()  # skips (fails under CI) without one
    # two load clients: subscribers on both instances, so half of them get events via Redis
    record = run(tmp_path, "cluster", "--protocol", "pushy", "--subscribers", "20",
                 "--events", "20", "--channels", "4", "--per-channel", "3", "--triggers", "40",
                 clients=2)
    results = record["results"]
    assert [(r["scenario"], r["params"]["instances"]) for r in results] == [
        ("g burst", 1), ("g channels", 1), ("g burst", 2), ("g channels", 2)]
    for result in results:
        assert result["ok"] is True, result["check"]
        assert result["delivered"] == result["expected"] > 0
    assert results[2]["server"].startswith("2 x pushy-shard w2 f1 + redis")
    assert results[2]["params"]["redis_publishes"] == 20  # each event of the burst, once


@pytest.mark.parametrize("when", ["starting", "measuring"])
def test_sigterm_stops_the_server_the_bench_started(when: str) -> None:
    """A bench ended by SIGTERM (`timeout`, a cancelled job) leaves no server behind, whether
    the signal comes while the server starts or while the load clients run."""
    bench = subprocess.Popen(
        [sys.executable, "-m", "pushy_shard.bench", "latency", "--protocol", "pushy",
         "--channels", "1", "--per-channel", "50", "--rates", "5", "--duration", "60",
         "--workers", "2", "--fronts", "1", "--clients", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        server: list[int] = []
        clients: list[int] = []
        while time.monotonic() < deadline:
            children = set(procstat.descendants(bench.pid))
            server = [pid for pid in procstat.pids_matching("^pushy-shard:") if pid in children]
            clients = [pid for pid in procstat.pids_matching("loadclient") if pid in children]
            if len(server) >= 4 and (when == "starting" or clients):  # supervisor, 2 shards, front
                break
            time.sleep(0.05)
        assert len(server) >= 4, "the bench's server did not start"
        assert when == "starting" or clients, "the bench's load client did not start"
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(timeout=30) == 128 + signal.SIGTERM
        left = [*server, *clients]
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in left if _alive(pid)]
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
            bench.wait()


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_redis_server_stopped_when_sigterm_comes_while_it_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster scenario's redis-server is not left running when the bench's SIGTERM
    (cli._terminated) arrives while it waits for the server's first PONG."""
    find_redis_server()  # skips (fails under CI) without one
    starting: list[target.RedisProc] = []

    def signalled_while_waiting(self: target.RedisProc) -> bool:
        starting.append(self)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
        return False

    monkeypatch.setattr(target.RedisProc, "_answers", signalled_while_waiting)
    previous = signal.signal(signal.SIGTERM, cli._terminated)
    try:
        with pytest.raises(SystemExit) as stopped:
            target.RedisProc()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    (redis,) = starting
    assert redis.process.returncode is not None  # terminated and reaped
    assert not Path(redis.folder).exists()
