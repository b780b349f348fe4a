"""Graceful operations: SIGTERM stops within `shutdown_timeout` telling clients to reconnect,
SIGHUP reloads what may change live, one front restarts while the others serve (README,
Operations). Real processes; waits on log lines and client frames, not on sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pushy_shard.core.routing import shard_for
from pushy_shard.core.sockjs import SHUTTING_DOWN
from tests.integration.harness import (
    PORT_TAKEN,
    Cluster,
    LogFollower,
    PushyClient,
    channel_token,
    on_free_port,
    write_config,
)
from tests.integration.http_client import HttpPushyClient

CLOSE = SHUTTING_DOWN.decode()  # c[3000,"Server shutting down, please reconnect"]
REASON = "Server shutting down, please reconnect"
MARGIN = 1.0  # process start-up of Python and scheduling on a busy 2-core box
# The supervisor's own measure of a stop ("stop took 2.03s") against shutdown_timeout: it
# kills what is left at the timeout, then reaps it and checks every 0.1 s at most.
REAP = 0.5


def channel_on(shard: int, workers: int, prefix: str = "ch") -> str:
    return next(name for n in range(1000)
                if shard_for(name := f"{prefix}-{n}", workers) == shard)


async def closed_frame(client: PushyClient) -> str | None:
    """The SockJS close frame (the WebSocket close answered, see `until_closed`)."""
    return (await client.until_closed())[0]


def stop_took(cluster: Cluster) -> float:
    """The supervisor's own measure of its stop, in seconds."""
    return float(cluster.log.wait_for(r"stop took ([\d.]+)s")[-1].group(1))


async def ws_close(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Read until the WebSocket closes; its close code and reason."""
    while True:
        msg = await ws.receive(timeout=10)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, str(msg.extra or "")


async def join_presence(client: PushyClient, channel: str, name: str) -> dict[str, Any]:
    data = json.dumps({"name": name})
    return await client.subscribe(channel, auth=channel_token(client.socket_id, channel, data),
                                  data=data)


@pytest.fixture
def stoppable(tmp_path: Path) -> Iterator[list[Cluster]]:
    """Clusters a test stops itself; whatever is left is stopped (and SIGCONTed) after."""
    clusters: list[Cluster] = []
    yield clusters
    for cluster in clusters:
        print("\n".join(cluster.log.lines[-60:]))  # shown when the test failed
        with contextlib.suppress(ProcessLookupError):
            os.killpg(cluster.process.pid, signal.SIGCONT)
        cluster.stop()


async def test_sigterm_closes_clients_and_answers_a_trigger_in_flight(
        tmp_path: Path, stoppable: list[Cluster]) -> None:
    cluster = Cluster(tmp_path, workers=2, fronts=1, log_level="debug", shutdown_timeout=5)
    stoppable.append(cluster)
    sockjs_ws = await cluster.client()
    raw_http = aiohttp.ClientSession()
    raw = await raw_http.ws_connect(f"ws://127.0.0.1:{cluster.port}{cluster.prefix}/websocket")
    streaming = await HttpPushyClient.connect(cluster, "xhr-streaming")
    try:
        assert json.loads((await raw.receive(timeout=10)).data)["event"] == "pushy:connect"
        await sockjs_ws.subscribe("news")
        await streaming.subscribe("news")

        # a trigger waits for a stopped shard when SIGTERM comes
        shard = 1
        stalled = cluster.pid("shard", shard)
        os.kill(stalled, signal.SIGSTOP)
        mark = cluster.log.mark
        in_flight = asyncio.ensure_future(cluster.trigger(channel_on(shard, 2), "late", {}))
        await asyncio.to_thread(cluster.log.wait_for, rf"trigger to shard {shard} in flight",
                                1, mark)
        cluster.process.send_signal(signal.SIGTERM)

        assert await sockjs_ws.until_closed() == (CLOSE, (1001, REASON))
        assert await ws_close(raw) == (1001, REASON)
        with pytest.raises(ConnectionError):
            while True:
                await streaming.next()
        assert streaming.closed_with == CLOSE

        await asyncio.to_thread(cluster.log.wait_for, r"front 1/1: told 3 clients to reconnect; "
                                r"\d+ requests in flight", 1, mark)
        os.kill(stalled, signal.SIGCONT)
        assert await in_flight == (200, {"status": {"code": 200, "message": "Ok"}})
        assert await asyncio.to_thread(cluster.process.wait, 15) == 0
        assert stop_took(cluster) < 5 + REAP
        assert not [line for line in cluster.log.lines if "did not stop" in line]
    finally:
        await sockjs_ws.close()
        await raw_http.close()
        await streaming.close()


async def test_stop_is_bounded_by_shutdown_timeout_with_a_stalled_shard(
        tmp_path: Path, stoppable: list[Cluster]) -> None:
    cluster = Cluster(tmp_path, workers=2, fronts=1, shutdown_timeout=2)
    stoppable.append(cluster)
    client = await cluster.client()
    try:
        await client.subscribe(channel_on(1, 2))  # its LEAVE goes to the stopped shard
        stalled = cluster.pid("shard", 1)
        os.kill(stalled, signal.SIGSTOP)
        cluster.process.send_signal(signal.SIGTERM)
        assert await closed_frame(client) == CLOSE
        code = await asyncio.to_thread(cluster.process.wait, 15)
        assert code == 1  # a child had to be killed
        assert stop_took(cluster) < 2 + REAP
        cluster.log.wait_for(r"shard 1 did not stop within 2\.0s; killing it")
        cluster.log.wait_for(r"front 1/1: 1 requests unanswered")
        with pytest.raises(ProcessLookupError):
            os.kill(stalled, 0)
    finally:
        await client.close()


def _edit_config(cluster: Cluster, **changes: Any) -> None:
    config = json.loads(cluster.config_path.read_text())
    config.update(changes)
    cluster.config_path.write_text(json.dumps(config))


async def test_sighup_applies_live_settings_and_refuses_the_rest(
        tmp_path: Path, stoppable: list[Cluster]) -> None:
    cluster = Cluster(tmp_path, workers=2, fronts=1)
    stoppable.append(cluster)
    client = await cluster.client()
    try:
        await client.subscribe("news")
        old_port = cluster.port

        # live: the heartbeat interval, the log level and the secret, all at once
        _edit_config(cluster, secretKey="rotated", log_level="debug",
                     sockjs={"prefix": cluster.prefix, "heartbeat_delay": 0.2})
        mark = cluster.log.mark
        cluster.process.send_signal(signal.SIGHUP)
        cluster.log.wait_for(r"SIGHUP: config is valid; reloading 4 processes", start=mark)
        cluster.log.wait_for(r"reload: applied .*secretKey", count=4, start=mark)
        frame = await client._frame(timeout=5)  # the new heartbeat interval
        assert frame == "h", frame
        status, _ = await cluster.trigger("news", "old-secret", {})
        assert status == 403
        cluster.secret = "rotated"
        mark = cluster.log.mark
        status, _ = await cluster.trigger("news", "new-secret", {"n": 1})
        assert status == 201
        cluster.log.wait_for(r"trigger to shard \d in flight", start=mark)  # debug is on
        assert await client.next() == {"event": "new-secret", "channel": "news",
                                       "data": {"n": 1}}

        # fixed: a new port is refused, one line per process, and the old one keeps serving
        _edit_config(cluster, port=old_port + 1, log_level="info")
        mark = cluster.log.mark
        cluster.process.send_signal(signal.SIGHUP)
        cluster.log.wait_for(r"reload: port cannot change while running; keeping the old value",
                             count=3, start=mark)
        cluster.log.wait_for(r"reload: applied log_level", count=3, start=mark)
        status, _ = await cluster.trigger("news", "still-here", {})
        assert status == 201

        # invalid JSON: one line, nothing reloaded, still serving
        cluster.config_path.write_text("{not json")
        mark = cluster.log.mark
        cluster.process.send_signal(signal.SIGHUP)
        cluster.log.wait_for(r"supervisor ERROR SIGHUP: config: .*invalid JSON at line 1 "
                             r"column 2.*; nothing reloaded", start=mark)
        status, _ = await cluster.trigger("news", "after-bad-json", {})
        assert status == 201
        messages = [await client.next() for _ in range(2)]
        assert [m["event"] for m in messages] == ["still-here", "after-bad-json"]
        assert cluster.process.poll() is None
        assert not [line for line in cluster.log.lines[mark:] if "reload: applied" in line]
    finally:
        await client.close()
    assert cluster.stop() == 0


async def test_rolling_restart_of_one_front(tmp_path: Path, stoppable: list[Cluster]) -> None:
    """SIGTERM to one front (as `supervisorctl restart` sends): its clients get the
    reconnect close and reconnect to the other front; the other front's clients keep
    receiving throughout; the supervisor restarts the front and it serves again."""
    cluster = Cluster(tmp_path, workers=2, fronts=2)
    stoppable.append(cluster)
    room = "private-room"
    survivor = await cluster.client(front=0)
    leaving = await cluster.client(front=1)
    try:
        await join_presence(survivor, room, "ann")
        await join_presence(leaving, room, "bob")
        await survivor.expect("pushy:presence-add")
        mark = cluster.log.mark
        os.kill(cluster.pid("front", 1), signal.SIGTERM)

        assert await closed_frame(leaving) == CLOSE
        quit_ = await survivor.expect("pushy:presence-quit")
        assert quit_["data"]["member"]["name"] == "bob"
        # while front 1 is away (or already back), events keep reaching the survivor
        status, _ = await cluster.trigger(room, "during", {"n": 1})
        assert status == 201
        assert (await survivor.next())["event"] == "during"

        # the left client reconnects (the kernel gives it a serving front) and resubscribes
        again = await cluster.client()
        try:
            await join_presence(again, room, "bob")
            add = await survivor.expect("pushy:presence-add")
            assert add["data"]["member"]["name"] == "bob"
            status, _ = await cluster.trigger(room, "after", {"n": 2})
            assert status == 201
            for client in (survivor, again):
                assert (await client.next())["event"] == "after"
        finally:
            await again.close()

        cluster.log.wait_for(r"front 1 \(pid \d+\) exited with status 0", start=mark)
        cluster.log.wait_for(r"front 2/2 ready", start=mark)
        back = await cluster.client(front=1)
        try:
            await back.subscribe("plain")
        finally:
            await back.close()
    finally:
        await survivor.close()
        await leaving.close()
    assert cluster.stop() == 0


async def test_roles_alone_reload_and_stop(tmp_path: Path) -> None:
    """Each role run alone (as under supervisord) reloads on SIGHUP, and a front stopped
    for good takes its members out at once: presence-quit comes well before the shards'
    5 s liveness timeout."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("PORT", None)

    def start(config_path: Path, role: str, index: int
              ) -> tuple[subprocess.Popen[bytes], LogFollower]:
        process = subprocess.Popen(
            [sys.executable, "-m", "pushy_shard", role, "--index", str(index), str(config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        return process, LogFollower(process.stdout)

    def launch() -> tuple[Path, dict[str, Any], list[tuple[subprocess.Popen[bytes],
                                                           LogFollower]]]:
        config_path = write_config(tmp_path, workers=1, fronts=2)
        config = json.loads(config_path.read_text())
        procs = [start(config_path, "shard", 0), start(config_path, "front", 0),
                 start(config_path, "front", 1)]
        try:
            for _, log in procs[1:]:
                log.wait_for(r"front \d/2 ready", fail=PORT_TAKEN)
        except BaseException:
            for process, _ in procs:
                process.kill()
                process.wait()
            shutil.rmtree(config["link"]["directory"], ignore_errors=True)
            raise
        return config_path, config, procs

    config_path, config, procs = on_free_port(launch)
    try:
        shard, front0, front1 = procs
        url = f"ws://127.0.0.1:{config['port']}/pushy/socket"

        async def client_on(front: int) -> PushyClient:
            for n in range(200):
                client = await PushyClient.connect(f"{url}/000/s{front}x{n}/websocket")
                if client.front == front:
                    return client
                await client.close()
            raise AssertionError(f"no connection landed on front {front}")

        ann = await client_on(0)
        bob = await client_on(1)
        try:
            await join_presence(ann, "private-alone", "ann")
            await join_presence(bob, "private-alone", "bob")
            await ann.expect("pushy:presence-add")

            config_path.write_text(json.dumps({**config, "host": "0.0.0.0",
                                               "shutdown_timeout": 3}))
            for process, _ in procs:
                process.send_signal(signal.SIGHUP)
            for _, log in procs:
                await asyncio.to_thread(log.wait_for, r"reload: host cannot change while running")
                log.wait_for(r"reload: applied shutdown_timeout")

            started = time.monotonic()
            front1[0].send_signal(signal.SIGTERM)
            assert await closed_frame(bob) == CLOSE
            quit_ = await ann.expect("pushy:presence-quit", timeout=3)
            assert quit_["data"]["member"]["name"] == "bob"
            assert await asyncio.to_thread(front1[0].wait, 10) == 0
            assert time.monotonic() - started < 3 + MARGIN
            await ann.nothing_pending()
        finally:
            await ann.close()
            await bob.close()
        for process, _ in (front0, shard):
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        for process, _ in procs:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(config["link"]["directory"], ignore_errors=True)
