"""README, Observability: /metrics sums every process whichever front answers, /health
follows the shards, restarts are counted, JSON log lines carry the process role."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from pushy_shard.core.metrics import FAMILIES
from tests.integration.harness import Cluster

Values = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r'([a-z_]+)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-z_]+)="([^"]*)"')


@pytest.fixture(scope="module")
def json_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """3 shards, 2 fronts, logging JSON lines."""
    server = Cluster(tmp_path_factory.mktemp("obs"), log_format="json")
    yield server
    assert server.stop() == 0, "\n".join(server.log.lines[-30:])


def parse(text: str) -> Values:
    values: Values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        match = _SAMPLE.fullmatch(line)
        assert match is not None, line
        labels = frozenset(_LABEL.findall(match.group(2) or ""))
        values[(match.group(1), labels)] = float(match.group(3))
    return values


def value(values: Values, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


async def get(cluster: Cluster, path: str, front: int | None = None
              ) -> tuple[int, int, str]:
    """(status, answering front, body); with `front`, a new connection until it lands there."""
    for _ in range(200):
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)
                                         ) as http, http.get(cluster.base_url + path) as response:
            answered = int(response.headers["X-Pushy-Front"])
            if front is None or answered == front:
                return response.status, answered, await response.text()
    raise AssertionError(f"no answer from front {front}")


async def scrape(cluster: Cluster, front: int | None = None) -> Values:
    status, _, body = await get(cluster, "/metrics", front)
    assert status == 200
    return parse(body)


async def test_metrics_sum_real_activity_over_every_process(json_cluster: Cluster) -> None:
    cluster = json_cluster
    before = await scrape(cluster)
    a = await cluster.client(front=0)
    b = await cluster.client(front=1)
    c = await cluster.client(front=1)
    try:
        await a.subscribe("obs-room")
        await b.subscribe("obs-room")
        await c.subscribe("obs-other")
        assert (await cluster.trigger("obs-room", "ev", {"n": 1}))[0] == 201
        for member in (a, b):
            assert (await member.next())["event"] == "ev"
        assert (await cluster.trigger("obs-nobody", "ev", {"n": 2}))[0] == 200
        assert (await cluster.trigger("obs-room", "ev", {"n": 3}, key="0" * 64))[0] == 403
        async with aiohttp.ClientSession() as http, http.post(
                cluster.base_url + "/pushy/channel/obs-room/trigger") as response:
            assert response.status == 400

        deadline = time.monotonic() + 10
        for front in (0, 1):
            while True:  # connections the client helper closed may still be leaving
                after = await scrape(cluster, front)
                opened = value(after, "pushy_connections", transport="websocket",
                               protocol="pushy")
                if opened == value(before, "pushy_connections", transport="websocket",
                                   protocol="pushy") + 3:
                    break
                assert time.monotonic() < deadline, f"connections gauge stuck at {opened}"

            def delta(name: str, after: Values = after, **labels: str) -> float:
                return value(after, name, **labels) - value(before, name, **labels)

            for status, count in (("201", 1), ("200", 1), ("403", 1), ("400", 1)):
                assert delta("pushy_triggers_total", status=status) == count, status
            assert delta("pushy_channels") == 2
            assert delta("pushy_members") == 3
            assert delta("pushy_subscriptions_total") == 3
            assert delta("pushy_channels_created_total") == 2
            assert delta("pushy_shard_requests_total", op="command") == 3
            assert delta("pushy_shard_requests_total", op="trigger") == 2
            assert delta("pushy_events_published_total") == 1
            assert delta("pushy_link_deliveries_total") == 2  # one per front with members
            assert delta("pushy_messages_in_total") == 3
            assert delta("pushy_messages_out_total", kind="event") == 2
            assert delta("pushy_messages_out_total", kind="reply") >= 6  # connect + success
            assert delta("pushy_connections_opened_total", transport="websocket",
                         protocol="pushy") >= 3
            assert delta("pushy_bytes_out_total") > 0
            assert delta("pushy_bytes_in_total", source="trigger") == len('{"n":1}{"n":2}')
            assert delta("pushy_bytes_in_total", source="client") > 0
            for role, count in (("shard", 3), ("front", 2)):
                for index in range(count):
                    assert value(after, "pushy_scrape_up", role=role, index=str(index)) == 1
            for i in range(2):
                for j in range(3):
                    labels = {"front": str(i), "shard": str(j)}
                    assert value(after, "pushy_link_up", **labels) == 1
                    assert ("pushy_link_pending_requests", frozenset(labels.items())) in after
            assert value(after, "pushy_restarts_total", role="shard") == 0
    finally:
        for client in (a, b, c):
            await client.close()


async def test_every_metric_has_its_own_help_line(json_cluster: Cluster) -> None:
    status, _, body = await get(json_cluster, "/metrics")
    assert status == 200
    helps = dict(line[len("# HELP "):].split(" ", 1) for line in body.splitlines()
                 if line.startswith("# HELP "))
    assert "pushy_bad_requests_total" in helps
    generic = {name for name, text in helps.items() if name not in FAMILIES}
    assert not generic, f"metrics without a HELP line of their own: {sorted(generic)}"
    assert all(text == FAMILIES[name].help for name, text in helps.items())


async def test_internal_stats_are_not_public(json_cluster: Cluster) -> None:
    """Each front's own snapshot is served on its private relay socket only."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(10):  # new connections: both fronts get asked
            async with http.get(json_cluster.base_url + "/pushy-internal/stats") as response:
                assert response.status == 404


async def test_json_log_lines_parse_and_carry_the_role(json_cluster: Cluster) -> None:
    lines = [line for line in json_cluster.log.lines if line != "<eof>"]
    records = [json.loads(line) for line in lines]
    assert {r["role"] for r in records} == {"supervisor", "front", "shard", "hooks"}
    ready = [r for r in records if re.match(r"front \d/2 ready", r["msg"])]
    assert sorted(r["index"] for r in ready) == [0, 1]
    assert all(r["level"] == "info" for r in ready)
    assert all(set(r) >= {"ts", "role", "pid", "level", "msg"} for r in records)


async def _health_until(cluster: Cluster, status: int, timeout: float = 15.0) -> dict:
    """Poll /health (a few times a second) until it answers `status`."""
    deadline = time.monotonic() + timeout
    while True:
        got, _, body = await get(cluster, "/health")
        if got == status:
            return json.loads(body)
        assert time.monotonic() < deadline, f"/health still {got}: {body}"
        await asyncio.sleep(0.2)


async def test_health_follows_a_stopped_shard_and_restarts_are_counted(tmp_path: Path) -> None:
    # the stopped shard must not give up on the fronts meanwhile (that is another test's)
    cluster = Cluster(tmp_path, timeouts={"front_silence": 60})
    try:
        healthy = await _health_until(cluster, 200)
        assert healthy["status"] == "ok" and healthy["shards"] == 3
        _, answered, raw = await get(cluster, "/health")  # compact, as every JSON answer
        assert raw == f'{{"status":"ok","front":{answered},"shards":3}}'

        pid = cluster.pid("shard", 1)
        os.kill(pid, signal.SIGSTOP)
        try:
            sick = await _health_until(cluster, 503)
            assert sick["status"] == "unavailable" and sick["missing_shards"] == [1]
            started = time.monotonic()
            values = await scrape(cluster)  # answers without the stopped shard, in time
            assert time.monotonic() - started < 5
            assert value(values, "pushy_scrape_up", role="shard", index="1") == 0
            assert value(values, "pushy_scrape_up", role="shard", index="0") == 1
        finally:
            os.kill(pid, signal.SIGCONT)
        await _health_until(cluster, 200)

        before = await scrape(cluster)
        assert value(before, "pushy_restarts_total", role="shard") == 0
        mark = cluster.kill("shard", 2)
        cluster.wait_restarted("shard", 2, mark)
        after = await scrape(cluster)
        assert value(after, "pushy_restarts_total", role="shard") == 1
        assert value(after, "pushy_restarts_total", role="front") == 0
        await _health_until(cluster, 200)
    finally:
        cluster.stop()
